package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/interop"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// Backfill then tail, against the Medplum FHIR router seeded with two
// corpus Synthea bundles: `ehrbridge backfill` loads the patients and
// encounters with progress lines, the daemon sends them to the CRM sandbox
// through the Health Cloud FHIR mappings, and a Patient created afterwards
// reaches the CRM within a poll interval; running the backfill again adds
// nothing.
func TestFHIRBackfillThenTail(t *testing.T) {
	bin := ehrbridgeBinary(t)
	peer := interop.Start(t, interop.NodeDir(t), "node", "--experimental-websocket", "medplum_fhir_server.mjs")
	port := strings.TrimPrefix(peer.WaitFor(t, "LISTENING ", 60*time.Second), "LISTENING ")
	fhirBase := "http://127.0.0.1:" + port + "/fhir/R4"
	post := func(path string, body []byte) {
		t.Helper()
		resp, err := http.Post(fhirBase+path, "application/fhir+json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
	}
	synthea := shared.Path(t, "corpus", "fhir-r4", "smart-on-fhir-synthea-R4")
	wantPatients, wantEncounters := 0, 0
	for _, f := range []string{"Luigi_Wiegand_e27d88b0-c5e5-4042-ad49-184f6a900ee3.json", "Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json"} {
		data, err := os.ReadFile(filepath.Join(synthea, f))
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Entry []struct {
				Resource struct {
					ResourceType string `json:"resourceType"`
				} `json:"resource"`
			} `json:"entry"`
		}
		_ = json.Unmarshal(data, &b)
		for _, e := range b.Entry {
			switch e.Resource.ResourceType {
			case "Patient":
				wantPatients++
			case "Encounter":
				wantEncounters++
			}
		}
		post("", data) // the transaction bundle
	}

	dir := t.TempDir()
	c := writeFHIRConfig(t, dir, "", fhirBase, `
schedule: "@every 1s"
page_size: 5`)
	cfgFile, adminAddr, sandboxAddr := c.file, c.adminAddr, c.sandboxAddr
	out, errOut, code := runBin(t, bin, "backfill", "--config", cfgFile, "--source", "ehrfhir")
	// "read" counts a page boundary the router makes us read twice; "new" is what was stored.
	if code != 0 || !regexp.MustCompile(fmt.Sprintf(`(?m)^Patient: \d+ read, %d new in`, wantPatients)).MatchString(out) ||
		!regexp.MustCompile(fmt.Sprintf(`(?m)^Encounter: \d+ read, %d new in`, wantEncounters)).MatchString(out) {
		t.Fatalf("backfill: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, _ := runBin(t, bin, "backfill", "--config", cfgFile, "--source", "ehrfhir"); !strings.Contains(out, "done: 0 resources stored") {
		t.Errorf("a second backfill stored something:\n%s", out)
	}

	logs := startCrashDaemon(t, bin, cfgFile, c.yaml, adminAddr).logs
	objects := func(name string) []map[string]any { return objects(sandboxAddr, name) }
	waitFor(t, 30*time.Second, "the backfilled patients and encounters in the CRM", func() bool {
		return len(objects("Account")) == wantPatients && len(objects("ClinicalEncounter")) == wantEncounters
	})
	// Patients are keyed by their MR identifier (system|value), and every
	// encounter's subject reference was resolved to its patient's account.
	accountIDs := map[any]bool{}
	for _, a := range objects("Account") {
		if !strings.HasPrefix(fmt.Sprint(a["EHR_Patient_Key__c"]), "http://hospital.smarthealthit.org|") {
			t.Errorf("account keyed %v, want the MR identifier", a["EHR_Patient_Key__c"])
		}
		accountIDs[a["Id"]] = true
	}
	for _, e := range objects("ClinicalEncounter") {
		if !accountIDs[e["PatientId"]] {
			t.Errorf("encounter %v refers to %v, not to a synced account", e["EHR_Encounter_Key__c"], e["PatientId"])
		}
	}
	// Tailing: a patient created now arrives within a poll interval or so.
	post("/Patient", []byte(`{"resourceType":"Patient","name":[{"family":"Tailing","given":["Newly"]}],"gender":"female","birthDate":"1990-02-03"}`))
	created := time.Now()
	waitFor(t, 15*time.Second, "the new patient in the CRM", func() bool { return len(objects("Account")) == wantPatients+1 })
	t.Logf("backfill: %d patients, %d encounters; a new patient reached the CRM %v after it was created", wantPatients, wantEncounters, time.Since(created).Round(10*time.Millisecond))
	if strings.Contains(logs.String(), "Tailing") {
		t.Errorf("the daemon's log holds patient data:\n%s", logs)
	}
}

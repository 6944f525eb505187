package tests

import (
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/fhirtest"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// A backfill through Bulk Data $export, SIGKILLed at random moments at
// least 3 times: it resumes the one export it kicked off, every resource
// is stored once, the daemon sends them all (patients keyed by MRN,
// encounters linked to them), and tailing picks up a patient created after
// the export.
func TestFHIRBulkBackfillCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("bulk crash test skipped in -short mode")
	}
	bin := ehrbridgeBinary(t)
	dir := t.TempDir()
	const patients = 100
	fake := fhirtest.New()
	fake.Bulk, fake.BulkPolls, fake.BulkLineDelay = true, 2, 3*time.Millisecond
	t0 := time.Now().Add(-time.Hour)
	mrn := func(id string) []any {
		return []any{map[string]any{"type": map[string]any{"coding": []any{map[string]any{"code": "MR"}}},
			"system": "urn:oid:2.16.840.1.113883.19.5", "value": "M-" + id}}
	}
	for i := range patients {
		id := fmt.Sprintf("p%03d", i)
		fake.Add("Patient", id, t0.Add(time.Duration(i)*time.Second), map[string]any{"identifier": mrn(id),
			"name": []any{map[string]any{"family": "BULK", "given": []any{id}}}})
		fake.Add("Encounter", fmt.Sprintf("e%03d", i), t0.Add(time.Duration(i)*time.Second+time.Millisecond),
			map[string]any{"status": "finished", "class": map[string]any{"code": "AMB"}, "subject": map[string]any{"reference": "Patient/" + id}})
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()

	c := writeFHIRConfig(t, dir, "", srv.URL+"/fhir/R4", `schedule: "@every 1s"`)
	cfgFile, cfg, adminAddr, sandboxAddr := c.file, c.yaml, c.adminAddr, c.sandboxAddr
	rng := rand.New(rand.NewPCG(31, 31))
	kills := 0
	var out *syncbuf.Buffer
	for {
		cmd := exec.Command(bin, "backfill", "--config", cfgFile, "--source", "ehrfhir")
		out = &syncbuf.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		limit := time.Duration(60+rng.IntN(400)) * time.Millisecond
		if kills >= 3 {
			limit = time.Minute
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("backfill: %v\n%s", err, out)
			}
		case <-time.After(limit):
			_ = cmd.Process.Kill()
			<-done
			kills++
			continue
		}
		break
	}
	if !strings.Contains(out.String(), "Bulk Data") || !strings.Contains(out.String(), "export of ehrfhir") {
		t.Errorf("the backfill did not export:\n%s", out)
	}
	// Each run resumes the export it finds in the log. A kill between the
	// server's 202 and the commit of its status URL loses that URL (Bulk
	// Data has no idempotent kick-off), so the next run starts another
	// export: duplicate work, never a duplicate record (checked below).
	// More than one such kill in a run of four is not expected.
	if n := fake.Exports(); n < 1 || n > 2 {
		t.Errorf("%d exports were kicked off over %d runs, want 1 (each run resumes it; 2 if a kill fell between a kick-off and its commit)", n, kills+1)
	}
	stats, _, _ := runBin(t, bin, "log", "stats", "--json", "--config", cfgFile)
	if n := totalRecords(t, stats); n != 2*patients {
		t.Errorf("%d records after the backfill, want %d (each resource once)", n, 2*patients)
	}

	d := startCrashDaemon(t, bin, cfgFile, cfg, adminAddr)
	defer d.stop(t)
	waitFor(t, 60*time.Second, "the exported patients and encounters in the CRM", func() bool {
		return len(objects(sandboxAddr, "Account")) == patients && len(objects(sandboxAddr, "ClinicalEncounter")) == patients
	})
	accounts := map[any]bool{}
	for _, a := range objects(sandboxAddr, "Account") {
		if !strings.HasPrefix(fmt.Sprint(a["EHR_Patient_Key__c"]), "HOSP|M-p") {
			t.Errorf("account keyed %v, want HOSP|M-...", a["EHR_Patient_Key__c"])
		}
		accounts[a["Id"]] = true
	}
	for _, e := range objects(sandboxAddr, "ClinicalEncounter") {
		if !accounts[e["PatientId"]] {
			t.Errorf("encounter %v is not linked to an exported patient", e["EHR_Encounter_Key__c"])
		}
	}
	fake.Add("Patient", "p999", time.Now(), map[string]any{"identifier": mrn("p999"), "name": []any{map[string]any{"family": "AFTER"}}})
	waitFor(t, 15*time.Second, "the patient created after the export", func() bool { return len(objects(sandboxAddr, "Account")) == patients+1 })
	t.Logf("bulk backfill: %d resources, %d kills, 1 export; %d FHIR requests", 2*patients, kills, fake.Requests())
}

package tests

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
	"github.com/ehrbridge/ehrbridge/internal/interop"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/testcerts"
)

// Subscription-style fetches against the Medplum FHIR router, which wants
// SMART Backend Services tokens: the daemon's poll at start loads a corpus
// Synthea bundle; polls are an hour apart after that, so what follows
// reaches the CRM through notifications only. An id-only R5 notification
// makes the daemon read the named Patient; an empty R4 ping makes it
// search, picking up a new Patient and an Encounter of that patient, which
// refers to the patient's account.
func TestFHIRSubscriptionMedplum(t *testing.T) {
	bin := ehrbridgeBinary(t)
	dir := t.TempDir()
	key, _ := testcerts.RSASigning(t)
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubFile, keyFile := filepath.Join(dir, "client.pub.pem"), filepath.Join(dir, "client.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	peer := interop.Start(t, interop.NodeDir(t), "node", "--experimental-websocket", "medplum_fhir_server.mjs",
		"--smart-key", pubFile, "--client-id", "ehrbridge-test")
	root := "http://127.0.0.1:" + strings.TrimPrefix(peer.WaitFor(t, "LISTENING ", 60*time.Second), "LISTENING ")
	fhirBase := root + "/fhir/R4"
	// The test writes to the EHR's server with a token of its own.
	ehr := &fhirhttp.Client{Base: fhirBase, Auth: &fhirhttp.BackendServices{TokenURL: root + "/auth/token", ClientID: "ehrbridge-test", Key: key}}
	post := func(path string, body any) string {
		t.Helper()
		status, out, err := ehr.Do(context.Background(), http.MethodPost, path, body, nil)
		if err != nil || status >= 300 {
			t.Fatalf("POST %s: %d %v %s", path, status, err, out)
		}
		var res struct{ ID string }
		_ = json.Unmarshal(out, &res)
		return res.ID
	}
	data, err := os.ReadFile(filepath.Join(shared.Path(t, "corpus", "fhir-r4", "smart-on-fhir-synthea-R4"), "Luigi_Wiegand_e27d88b0-c5e5-4042-ad49-184f6a900ee3.json"))
	if err != nil {
		t.Fatal(err)
	}
	var seed map[string]any
	if err := json.Unmarshal(data, &seed); err != nil {
		t.Fatal(err)
	}
	wantEncounters := 0
	for _, e := range seed["entry"].([]any) {
		if e.(map[string]any)["resource"].(map[string]any)["resourceType"] == "Encounter" {
			wantEncounters++
		}
	}
	post("", seed)

	notifyAddr := freeAddr(t)
	c := writeFHIRConfig(t, dir, "", fhirBase, fmt.Sprintf(`
schedule: "@every 1h"
smart_token_url: %s/auth/token
smart_client_id: ehrbridge-test
smart_key_file: %s
subscription:
  listen: %s
  secret_env: EHRBRIDGE_TEST_NOTIFY_SECRET`, root, keyFile, notifyAddr))
	adminAddr, sandboxAddr := c.adminAddr, c.sandboxAddr
	const secret = "medplum-notify-secret"
	t.Setenv("EHRBRIDGE_TEST_NOTIFY_SECRET", secret)
	logs := startCrashDaemon(t, bin, c.file, c.yaml, adminAddr).logs
	lastNames := func() map[string]string {
		out := map[string]string{}
		for _, a := range objects(sandboxAddr, "Account") {
			out[fmt.Sprint(a["LastName"])] = fmt.Sprint(a["Id"])
		}
		return out
	}

	// The poll at start loads what the server holds.
	waitFor(t, 30*time.Second, "the seeded patient and encounters in the CRM", func() bool {
		return len(objects(sandboxAddr, "Account")) == 1 && len(objects(sandboxAddr, "ClinicalEncounter")) == wantEncounters
	})

	notify := func(body []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+notifyAddr+"/fhir/notify", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("notification: HTTP %d", resp.StatusCode)
		}
	}

	// An id-only notification: the daemon reads the Patient from Medplum.
	readID := post("/Patient", map[string]any{"resourceType": "Patient", "name": []any{map[string]any{"family": "Readbyid"}}, "gender": "male"})
	notify(fmt.Appendf(nil, `{"resourceType":"Bundle","type":"subscription-notification","entry":[
	  {"fullUrl":"urn:uuid:5c1d","resource":{"resourceType":"SubscriptionStatus","status":"active","type":"event-notification","eventsSinceSubscriptionStart":"1"}},
	  {"fullUrl":"%s/Patient/%s"}]}`, fhirBase, readID))
	waitFor(t, 15*time.Second, "the patient named by an id-only notification in the CRM", func() bool { return lastNames()["Readbyid"] != "" })

	// A ping: the daemon searches Medplum for what changed.
	pingID := post("/Patient", map[string]any{"resourceType": "Patient", "name": []any{map[string]any{"family": "Foundbysearch"}},
		"identifier": []any{map[string]any{"type": map[string]any{"coding": []any{map[string]any{"code": "MR"}}},
			"system": "http://hospital.smarthealthit.org", "value": "MP-777"}}})
	post("/Encounter", map[string]any{"resourceType": "Encounter", "status": "finished", "class": map[string]any{"code": "AMB"},
		"subject": map[string]any{"reference": "Patient/" + pingID}, "period": map[string]any{"start": "2026-11-01T09:00:00Z"}})
	notify(nil)
	waitFor(t, 15*time.Second, "the patient and encounter found by a ping's search in the CRM", func() bool {
		return lastNames()["Foundbysearch"] != "" && len(objects(sandboxAddr, "ClinicalEncounter")) == wantEncounters+1
	})
	account := lastNames()["Foundbysearch"]
	linked := 0
	for _, e := range objects(sandboxAddr, "ClinicalEncounter") {
		if e["PatientId"] == account {
			linked++
		}
	}
	if linked != 1 {
		t.Errorf("%d encounters refer to the searched patient's account, want 1", linked)
	}
	if a := objects(sandboxAddr, "Account"); len(a) != 3 {
		t.Errorf("%d accounts, want 3 (each patient once)", len(a))
	}

	// A refused notification is counted and logged (reason and sender,
	// never the body); /status and /metrics show the source's figures.
	req, _ := http.NewRequest(http.MethodPost, "http://"+notifyAddr+"/fhir/notify", strings.NewReader(`{"resourceType":"Patient","id":"x","name":[{"family":"Refusedname"}]}`))
	req.Header.Set("Authorization", "Bearer not-the-secret")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong secret: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	waitFor(t, 5*time.Second, "the refusal in the log", func() bool { return strings.Contains(logs.String(), "subscription notification refused") })
	var status struct {
		FHIR []struct {
			Name                 string               `json:"name"`
			Subscription         string               `json:"subscription"`
			LastPollOK           *time.Time           `json:"last_poll_ok"`
			LastError            string               `json:"last_error"`
			Polls                int64                `json:"polls"`
			Stored               int64                `json:"stored"`
			Notifications        int64                `json:"notifications"`
			NotificationsRefused int64                `json:"notifications_refused"`
			Watermarks           map[string]time.Time `json:"watermarks"`
		} `json:"fhir_sources"`
	}
	resp, err := http.Get("http://" + adminAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&status)
	resp.Body.Close()
	if err != nil || len(status.FHIR) != 1 {
		t.Fatalf("/status fhir_sources: %v %+v", err, status)
	}
	fs := status.FHIR[0]
	// Stored: the seed bundle's patient and encounters, then three more resources.
	if fs.Name != "ehrfhir" || fs.Subscription != notifyAddr || fs.LastPollOK == nil || fs.LastError != "" || fs.Polls < 2 ||
		fs.Stored != int64(wantEncounters)+4 || fs.Notifications != 2 || fs.NotificationsRefused != 1 ||
		fs.Watermarks["Patient"].IsZero() || fs.Watermarks["Encounter"].IsZero() {
		t.Errorf("/status fhir_sources[0] = %+v", fs)
	}
	resp, err = http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf(`ehrbridge_fhir_resources_total{outcome="stored",source="ehrfhir"} %d`, wantEncounters+4),
		`ehrbridge_fhir_notifications_total{result="refused",source="ehrfhir"} 1`,
		`ehrbridge_fhir_polls_total{result="failed",source="ehrfhir"} 0`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
	}
	resp, err = http.Get("http://" + adminAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "<h2>FHIR sources</h2>") || !strings.Contains(string(page), "<td>ehrfhir</td>") {
		t.Errorf("the admin page does not show the FHIR source:\n%s", page)
	}
	for _, name := range []string{"Readbyid", "Foundbysearch", "MP-777", "Refusedname"} {
		if strings.Contains(logs.String(), name) {
			t.Errorf("the daemon's log holds patient data (%s):\n%s", name, logs)
		}
	}
}

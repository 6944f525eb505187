package tests

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/fhirtest"
	"github.com/ehrbridge/ehrbridge/internal/testcerts"
)

// The subscription endpoint of the real daemon, over mutual TLS with a
// header secret, in front of a FHIR server that wants SMART Backend
// Services tokens. Polls are an hour apart, so everything that reaches the
// CRM came through notifications: a full-resource R4 rest-hook, an empty
// ping (answered by a search with a SMART token), and an id-only R5
// notification Bundle (the resource read from the server). A notification
// sent twice is stored once; an Encounter whose Patient is not on the
// server yet waits, then refers to the account keyed by the Patient's MRN;
// deletes, from the history and from a notification, cancel the encounter;
// a wrong secret is refused and stores nothing;
// a client without a certificate does not get through the handshake.
func TestFHIRSubscriptionEndpoint(t *testing.T) {
	bin := ehrbridgeBinary(t)
	dir := t.TempDir()
	certs := testcerts.New(t)
	signing, _ := testcerts.RSASigning(t)
	keyFile := filepath.Join(dir, "smart.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(signing)}), 0o600); err != nil {
		t.Fatal(err)
	}
	fake := fhirtest.New()
	fake.SMARTKey = &signing.PublicKey
	fhirSrv := httptest.NewServer(fake)
	defer fhirSrv.Close()

	notifyAddr := freeAddr(t)
	c := writeFHIRConfig(t, dir, "", fhirSrv.URL+"/fhir/R4", fmt.Sprintf(`
schedule: "@every 1h"
deletes: inactivate
smart_token_url: %s/fhir/R4/auth/token
smart_client_id: ehrbridge-test
smart_key_file: %s
subscription:
  listen: %s
  secret_env: EHRBRIDGE_TEST_NOTIFY_SECRET
  tls:
    cert_file: %s
    key_file: %s
    client_ca_file: %s`, fhirSrv.URL, keyFile, notifyAddr, certs.ServerCert, certs.ServerKey, certs.CAFile))
	cfgFile, adminAddr, sandboxAddr := c.file, c.adminAddr, c.sandboxAddr
	const secret = "s3cret-notify-value"
	t.Setenv("EHRBRIDGE_TEST_NOTIFY_SECRET", secret)
	logs := startCrashDaemon(t, bin, cfgFile, c.yaml, adminAddr).logs

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: certs.ClientConfig(true)}}
	notify := func(auth string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "https://"+notifyAddr+"/fhir/notify", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	accounts := func() map[string]string {
		resp, err := http.Get("http://" + sandboxAddr + "/sandbox/v1/objects/Account")
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var recs []map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&recs)
		out := map[string]string{}
		for _, r := range recs {
			out[fmt.Sprint(r["EHR_Patient_Key__c"])] = fmt.Sprint(r["LastName"])
		}
		return out
	}
	records := func() int64 {
		out, errOut, code := runBin(t, bin, "log", "stats", "--json", "--config", cfgFile)
		if code != 0 {
			t.Fatalf("log stats: exit %d: %s", code, errOut)
		}
		return totalRecords(t, out)
	}

	// 1. R4 rest-hook, full resource; a wrong secret first.
	pushed := []byte(`{"resourceType":"Patient","id":"sub-1","meta":{"versionId":"1","lastUpdated":"2026-11-01T10:00:00Z"},"name":[{"family":"Pushedname","given":["Ada"]}],"gender":"female"}`)
	if code, _ := notify("Bearer wrong", pushed); code != http.StatusUnauthorized {
		t.Fatalf("a wrong secret: HTTP %d, want 401", code)
	}
	if code, body := notify("Bearer "+secret, pushed); code != http.StatusOK {
		t.Fatalf("full-resource notification: HTTP %d %s", code, body)
	}
	if n := records(); n != 1 {
		t.Fatalf("after the first acknowledged notification the log holds %d records, want 1 (acknowledged means stored)", n)
	}
	if code, _ := notify("Bearer "+secret, pushed); code != http.StatusOK {
		t.Fatalf("the same notification again: HTTP %d", code)
	}
	waitFor(t, 15*time.Second, "the pushed patient in the CRM", func() bool { return accounts()["sub-1"] == "Pushedname" })

	// 2. A ping: the daemon searches (with a SMART token) at once.
	fake.Add("Patient", "sub-2", time.Now(), map[string]any{"name": []any{map[string]any{"family": "Pingedname"}}})
	if code, body := notify("Bearer "+secret, nil); code != http.StatusOK {
		t.Fatalf("ping: HTTP %d %s", code, body)
	}
	waitFor(t, 15*time.Second, "the pinged patient in the CRM", func() bool { return accounts()["sub-2"] == "Pingedname" })

	// 3. R5 id-only notification Bundle: the daemon reads Patient/sub-3.
	fake.Add("Patient", "sub-3", time.Now(), map[string]any{"name": []any{map[string]any{"family": "Idonlyname"}}})
	bundle := fmt.Sprintf(`{"resourceType":"Bundle","type":"subscription-notification","entry":[
	  {"fullUrl":"urn:uuid:9f1e","resource":{"resourceType":"SubscriptionStatus","id":"st","status":"active","type":"event-notification","eventsSinceSubscriptionStart":"3"}},
	  {"fullUrl":"%s/fhir/R4/Patient/sub-3"}]}`, fhirSrv.URL)
	if code, body := notify("Bearer "+secret, []byte(bundle)); code != http.StatusOK {
		t.Fatalf("id-only notification: HTTP %d %s", code, body)
	}
	waitFor(t, 15*time.Second, "the id-only patient in the CRM", func() bool { return accounts()["sub-3"] == "Idonlyname" })

	// 4. An Encounter whose patient is not on the server yet waits
	// (retrying) and writes nothing; once the Patient exists (keyed by its
	// MR identifier) the encounter refers to that account.
	encounter := []byte(`{"resourceType":"Encounter","id":"enc-4","meta":{"versionId":"1","lastUpdated":"2026-11-01T11:00:00Z"},"status":"in-progress","class":{"code":"EMER"},"subject":{"reference":"Patient/sub-4"}}`)
	if code, body := notify("Bearer "+secret, encounter); code != http.StatusOK {
		t.Fatalf("encounter notification: HTTP %d %s", code, body)
	}
	waitFor(t, 15*time.Second, "the encounter retrying, waiting for its patient", func() bool {
		out, _, _ := runBin(t, bin, "log", "list", "--state", "retrying", "--config", cfgFile)
		return strings.Contains(out, "not on the FHIR server")
	})
	if n := len(objects(sandboxAddr, "ClinicalEncounter")); n != 0 {
		t.Fatalf("%d encounters written before their patient could be resolved", n)
	}
	fake.Add("Patient", "sub-4", time.Now(), map[string]any{"name": []any{map[string]any{"family": "Mrnname"}},
		"identifier": []any{map[string]any{"type": map[string]any{"coding": []any{map[string]any{"code": "MR"}}},
			"system": "urn:oid:2.16.840.1.113883.19.5", "value": "M4444"}}})
	if code, _ := notify("Bearer "+secret, nil); code != http.StatusOK {
		t.Fatalf("ping: HTTP %d", code)
	}
	waitFor(t, 30*time.Second, "the encounter linked to the MRN-keyed account", func() bool {
		var accountID string
		for _, a := range objects(sandboxAddr, "Account") {
			if a["EHR_Patient_Key__c"] == "HOSP|M4444" {
				accountID = fmt.Sprint(a["Id"])
			}
		}
		encs := objects(sandboxAddr, "ClinicalEncounter")
		return accountID != "" && len(encs) == 1 && encs[0]["PatientId"] == accountID
	})

	// 5. Deletes (deletes: inactivate): one read from the type's history
	// after a ping, one carried by a notification; each cancels its
	// ClinicalEncounter (61_fhir_encounter's on_delete).
	fake.Add("Encounter", "enc-5", time.Now(), map[string]any{"status": "in-progress", "class": map[string]any{"code": "EMER"}, "subject": map[string]any{"reference": "Patient/sub-4"}})
	if code, _ := notify("Bearer "+secret, nil); code != http.StatusOK {
		t.Fatalf("ping: HTTP %d", code)
	}
	status := func(key string) string {
		for _, e := range objects(sandboxAddr, "ClinicalEncounter") {
			if e["EHR_Encounter_Key__c"] == key {
				return fmt.Sprint(e["Status"])
			}
		}
		return ""
	}
	waitFor(t, 15*time.Second, "encounter enc-5 in the CRM", func() bool { return status("enc-5") == "In Progress" })
	fake.Delete("Encounter", "enc-5", time.Now())
	if code, _ := notify("Bearer "+secret, nil); code != http.StatusOK {
		t.Fatalf("ping: HTTP %d", code)
	}
	waitFor(t, 15*time.Second, "the deleted encounter enc-5 cancelled", func() bool { return status("enc-5") == "Cancelled" })
	deleteNote := []byte(`{"resourceType":"Bundle","type":"subscription-notification","entry":[
	  {"fullUrl":"urn:uuid:9f1f","resource":{"resourceType":"SubscriptionStatus","id":"st","status":"active","type":"event-notification"}},
	  {"request":{"method":"DELETE","url":"Encounter/enc-4"},"response":{"status":"410 Gone","etag":"W/\"2\""}}]}`)
	if code, body := notify("Bearer "+secret, deleteNote); code != http.StatusOK {
		t.Fatalf("delete notification: HTTP %d %s", code, body)
	}
	waitFor(t, 15*time.Second, "the deleted encounter enc-4 cancelled", func() bool { return status("enc-4") == "Cancelled" })

	// A notification naming another origin is not fetched (no request
	// forgery through the endpoint).
	evil := []byte(`{"resourceType":"Bundle","type":"subscription-notification","entry":[{"fullUrl":"http://169.254.169.254/latest/Patient/x"}]}`)
	if code, _ := notify("Bearer "+secret, evil); code != http.StatusBadRequest {
		t.Errorf("a notification naming another origin: HTTP %d, want 400", code)
	}

	// 6. No client certificate: no handshake.
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: certs.ClientConfig(false)}}
	if resp, err := noCert.Post("https://"+notifyAddr+"/fhir/notify", "application/fhir+json", bytes.NewReader(pushed)); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate got HTTP %d, want a failed handshake", resp.StatusCode)
	}

	if n := records(); n != 8 {
		t.Errorf("the log holds %d records, want 8 (one per resource version or delete, the repeated notification deduplicated)", n)
	}
	if fake.Grants() != 1 {
		t.Errorf("%d SMART tokens were issued, want 1 (cached)", fake.Grants())
	}
	if got := len(accounts()); got != 4 {
		t.Errorf("%d accounts in the CRM, want 4", got)
	}
	for _, name := range []string{"Pushedname", "Pingedname", "Idonlyname", "Mrnname", "M4444", secret} {
		if strings.Contains(logs.String(), name) {
			t.Errorf("the daemon's log holds %q:\n%s", name, logs)
		}
	}
}

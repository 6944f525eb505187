package tests

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// The write-back demo: on the shipped config, a note created in the CRM
// sandbox for a patient who arrived by ADT lies in the outbox as one
// MDM^T02 with the MRN and the text, the Task shows Filed with the
// document id, and a restart does not file it again.
func TestWritebackDemo(t *testing.T) {
	bin := ehrbridgeBinary(t)
	dataDir := t.TempDir()
	mllpAddr, adminAddr, sandboxAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	env := append(os.Environ(), "EHRBRIDGE_DATA_DIR="+dataDir, "EHRBRIDGE_MLLP_ADDR="+mllpAddr, "EHRBRIDGE_ADMIN_ADDR="+adminAddr, "EHRBRIDGE_SANDBOX_ADDR="+sandboxAddr)
	start := func() *runningDaemon {
		return startDaemon(t, bin, filepath.Join(shared.ModuleRoot(t), "configs", "ehrbridge.yaml"), adminAddr, env)
	}
	stop := func(d *runningDaemon) {
		if !d.stop(15 * time.Second) {
			t.Fatal("daemon did not stop on SIGTERM")
		}
	}
	d := start()
	if out, errOut, code := runBin(t, bin, "send", "--to", mllpAddr, corpus(t, "microsoft-FHIR-Converter", "ADT-A01-01.hl7")); code != 0 {
		t.Fatalf("send: %s %s", out, errOut)
	}
	crm := "http://" + sandboxAddr
	records := func(object string) []map[string]any { return objects(sandboxAddr, object) }
	waitFor(t, 20*time.Second, "the patient in the CRM", func() bool { return len(records("Account")) == 1 })
	// The README's curl: a coordinator's note on the patient.
	resp, err := http.Post(crm+"/sandbox/v1/objects/Task", "application/json", strings.NewReader(
		`{"Subject":"Discharge call","Description":"Patient agrees to the discharge plan.","Send_to_EHR__c":true,"What":{"attributes":{"type":"Account"},"EHR_Patient_Key__c":"test1^2.16.1^HCD|PATID1234"}}`))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create task: %v %v", err, resp)
	}
	var created map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	outbox := filepath.Join(dataDir, "outbox")
	files := func() []string { // the MDMs, not a file still being written
		out, _ := filepath.Glob(filepath.Join(outbox, "*.hl7"))
		return out
	}
	waitFor(t, 20*time.Second, "the MDM in the outbox", func() bool { return len(files()) == 1 })
	data, _ := os.ReadFile(files()[0])
	m, err := hl7.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"MSH-9.1": "MDM", "MSH-9.2": "T02", "PID-3.1": "PATID1234", "TXA-12.1": "EHRB-" + created["id"], "OBX[2]-5": "Patient agrees to the discharge plan."} {
		if got, _ := m.GetString(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	waitFor(t, 10*time.Second, "the Task filed", func() bool {
		for _, tk := range records("Task") {
			if tk["EHR_Status__c"] == "Filed" && tk["EHR_Document_Id__c"] == "EHRB-"+created["id"] {
				return true
			}
		}
		return false
	})
	stop(d)
	// A restart re-polls (the overlap window) and must not file again.
	d = start()
	time.Sleep(5 * time.Second)
	if n := len(files()); n != 1 {
		t.Errorf("%d files in the outbox after a restart, want 1", n)
	}
	stop(d)
	for _, phi := range []string{"EVERYMAN", "PATID1234", "discharge plan"} {
		if strings.Contains(d.logs.String(), phi) {
			t.Errorf("log contains %q", phi)
		}
	}
}

// The Dynamics demo: on configs/ehrbridge-dynamics.yaml, an ADT becomes a
// contact and an encounter in the sandbox's Dataverse side, reached over
// TLS with azidentity's client credentials; a retransmit changes nothing;
// the README's curl makes a task that lies in the outbox as an MDM^T02 and
// shows Filed.
func TestDynamicsDemo(t *testing.T) {
	bin := ehrbridgeBinary(t)
	dataDir := t.TempDir()
	mllpAddr, adminAddr, sandboxAddr, tlsAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	d := startDaemon(t, bin, filepath.Join(shared.ModuleRoot(t), "configs", "ehrbridge-dynamics.yaml"), adminAddr,
		append(os.Environ(), "EHRBRIDGE_DATA_DIR="+dataDir, "EHRBRIDGE_MLLP_ADDR="+mllpAddr, "EHRBRIDGE_ADMIN_ADDR="+adminAddr,
			"EHRBRIDGE_SANDBOX_ADDR="+sandboxAddr, "EHRBRIDGE_SANDBOX_TLS_ADDR="+tlsAddr))
	defer func() {
		if !d.stop(15 * time.Second) {
			t.Error("daemon did not stop on SIGTERM")
		}
	}()
	logs := d.logs
	adt := corpus(t, "microsoft-FHIR-Converter", "ADT-A01-01.hl7")
	for range 2 {
		if out, errOut, code := runBin(t, bin, "send", "--to", mllpAddr, adt); code != 0 {
			t.Fatalf("send: %s %s", out, errOut)
		}
	}
	rows := func(table string) []map[string]any { return objects(sandboxAddr, table) }
	waitFor(t, 20*time.Second, "the contact and its encounter in Dataverse", func() bool {
		return len(rows("contacts")) == 1 && len(rows("msemr_encounters")) == 1
	})
	c, e := rows("contacts")[0], rows("msemr_encounters")[0]
	if c["msemr_medicalrecordnumber"] != "test1^2.16.1^HCD|PATID1234" || c["lastname"] == nil {
		t.Errorf("contact %v", c)
	}
	if e["_msemr_encounterpatientidentifier_value"] != c["contactid"] {
		t.Errorf("encounter %v does not point at contact %v", e, c["contactid"])
	}
	if _, err := os.Stat(filepath.Join(dataDir, "sandbox-tls.pem")); err != nil {
		t.Errorf("the sandbox's certificate is not in the data dir: %v", err)
	}
	// The README's curl: a coordinator's task regarding the contact.
	resp, err := http.Post("http://"+sandboxAddr+"/sandbox/v1/objects/tasks", "application/json", strings.NewReader(
		`{"subject":"Discharge call","description":"Patient agrees to the discharge plan.","new_sendtoehr":true,"regardingobjectid_contact@odata.bind":"/contacts(msemr_medicalrecordnumber='test1^2.16.1^HCD|PATID1234')"}`))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create task: %v %v", err, resp)
	}
	var created map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	waitFor(t, 20*time.Second, "the task filed", func() bool {
		for _, tk := range rows("tasks") {
			if tk["new_ehrstatus"] == "Filed" && tk["new_ehrdocumentid"] == "EHRB-"+created["id"] {
				return true
			}
		}
		return false
	})
	files, _ := filepath.Glob(filepath.Join(dataDir, "outbox", "*.hl7"))
	if len(files) != 1 {
		t.Fatalf("outbox: %v", files)
	}
	data, _ := os.ReadFile(files[0])
	m, err := hl7.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"MSH-9.2": "T02", "PID-3.1": "PATID1234", "TXA-12.1": "EHRB-" + created["id"], "OBX[2]-5": "Patient agrees to the discharge plan."} {
		if got, _ := m.GetString(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if strings.Contains(logs.String(), "PATID1234") || strings.Contains(logs.String(), "discharge plan") {
		t.Errorf("the daemon's log holds patient data:\n%s", logs)
	}
}

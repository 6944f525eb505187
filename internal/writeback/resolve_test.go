package writeback

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

func fileDrop(outbox string) connectors.EHRTarget {
	return &ehr.FileDrop{FileDropConfig: ehr.FileDropConfig{Dir: outbox}}
}

// filed waits for the task to be Filed and returns its MDM.
func (r *rig) filed(t *testing.T, task string) *hl7.Message {
	t.Helper()
	waitUntil(t, "the note filed", func() bool { return r.task(t, task)["EHR_Status__c"] == "Filed" })
	files := outboxFiles(t, r.outbox)
	if len(files) != 1 {
		t.Fatalf("outbox holds %d files, want 1", len(files))
	}
	data, _ := os.ReadFile(files[0])
	m, err := hl7.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func get(m *hl7.Message, path string) string {
	v, _ := m.GetString(path)
	return v
}

// The encounter rules: a note linked (WhatId) to an encounter is filed
// against it; with link_or_open, a note on the patient gets the most
// recent open encounter; with none, no encounter; with the link field,
// the field's encounter; encounter_required holds a note with none.
func TestEncounterRules(t *testing.T) {
	setup := func(r *rig) (acct, open, older string) {
		acct = r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|MRN1"}`)
		older = r.user(t, "POST", "ClinicalEncounter", `{"PatientId":"`+acct+`","Category":"Inpatient Encounter","Status":"Finished","StartDate":"2026-01-02T08:00:00.000+0000","EHR_Encounter_Key__c":"GENHOSP|V100"}`)
		open = r.user(t, "POST", "ClinicalEncounter", `{"PatientId":"`+acct+`","Category":"Inpatient Encounter","Status":"Arrived","StartDate":"2026-01-04T08:00:00.000+0000","EHR_Encounter_Key__c":"GENHOSP|V200"}`)
		return acct, open, older
	}
	cases := []struct {
		name  string
		cfg   func(*Config)
		task  func(acct, open, older string) string
		visit string
		held  string
	}{
		{"WhatId is an encounter", nil, func(acct, open, older string) string {
			return `{"WhatId":"` + older + `","Subject":"s","Description":"d","Send_to_EHR__c":true}`
		}, "V100", ""},
		{"link_or_open on the patient", nil, func(acct, open, older string) string {
			return `{"WhatId":"` + acct + `","Subject":"s","Description":"d","Send_to_EHR__c":true}`
		}, "V200", ""},
		{"link only, none linked", func(c *Config) { c.EncounterRule = EncounterLink }, func(acct, open, older string) string {
			return `{"WhatId":"` + acct + `","Subject":"s","Description":"d","Send_to_EHR__c":true}`
		}, "", ""},
		{"none", func(c *Config) { c.EncounterRule = EncounterNone }, func(acct, open, older string) string {
			return `{"WhatId":"` + acct + `","Subject":"s","Description":"d","Send_to_EHR__c":true}`
		}, "", ""},
		{"link field", func(c *Config) { c.EncounterLinkField = "Encounter__c" }, func(acct, open, older string) string {
			return `{"WhatId":"` + acct + `","Encounter__c":"` + older + `","Subject":"s","Description":"d","Send_to_EHR__c":true}`
		}, "V100", ""},
		{"required, none found", func(c *Config) { c.EncounterRule, c.EncounterRequired = EncounterLink, true }, func(acct, open, older string) string {
			return `{"WhatId":"` + acct + `","Subject":"s","Description":"d","Send_to_EHR__c":true}`
		}, "", "no encounter to file the note against"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRigWith(t, rigOptions{target: fileDrop, cfg: tc.cfg})
			acct, open, older := setup(r)
			task := r.user(t, "POST", "Task", tc.task(acct, open, older))
			r.poll(t)
			if tc.held != "" {
				waitUntil(t, "held", func() bool { return r.task(t, task)["EHR_Status__c"] == "Held" })
				if e, _ := r.task(t, task)["EHR_Error__c"].(string); e != tc.held {
					t.Errorf("held reason %q, want %q", e, tc.held)
				}
				return
			}
			m := r.filed(t, task)
			if got := get(m, "PV1-19.1"); got != tc.visit {
				t.Errorf("PV1-19.1 = %q, want %q", got, tc.visit)
			}
			if got := get(m, "PID-3.1"); got != "MRN1" {
				t.Errorf("PID-3.1 = %q", got)
			}
		})
	}
}

// The author comes from the map file first, else from the CRM user's
// field; author_required holds a note whose author has neither.
func TestAuthorFromCRMField(t *testing.T) {
	r := newRigWith(t, rigOptions{target: fileDrop, cfg: func(c *Config) { c.AuthorField = "EHR_Provider_Id__c" }})
	user := r.user(t, "POST", "User", `{"LastName":"Coordinator","EHR_Provider_Id__c":"PRV77"}`)
	acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|MRN1"}`)
	task := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","OwnerId":"`+user+`","Subject":"s","Description":"d","Send_to_EHR__c":true}`)
	r.poll(t)
	if got := get(r.filed(t, task), "TXA-9.1"); got != "PRV77" {
		t.Errorf("TXA-9.1 = %q, want the user's provider id", got)
	}

	r = newRigWith(t, rigOptions{target: fileDrop, cfg: func(c *Config) { c.AuthorField, c.AuthorRequired = "EHR_Provider_Id__c", true }})
	user = r.user(t, "POST", "User", `{"LastName":"New hire"}`)
	acct = r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|MRN1"}`)
	task = r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","OwnerId":"`+user+`","Subject":"s","Description":"d","Send_to_EHR__c":true}`)
	r.poll(t)
	waitUntil(t, "held", func() bool { return r.task(t, task)["EHR_Status__c"] == "Held" })
	if e, _ := r.task(t, task)["EHR_Error__c"].(string); !strings.Contains(e, "author has no EHR provider id") {
		t.Errorf("held reason %q", e)
	}
	// The provider id arrives on the user: the note is filed at its retry.
	r.user(t, "PATCH", "User/"+user, `{"EHR_Provider_Id__c":"PRV78"}`)
	waitUntil(t, "filed", func() bool { return r.task(t, task)["EHR_Status__c"] == "Filed" })
}

// A version edited again before it was filed is superseded: only the
// newest is filed, once, as a new document (T02), and a held version that
// the coordinator fixes does not block the fix.
func TestSupersededVersions(t *testing.T) {
	r := newRigWith(t, rigOptions{target: fileDrop, noRun: true})
	acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|MRN1"}`)
	task := r.user(t, "POST", "Task", `{"Subject":"s","Description":"first","Send_to_EHR__c":true}`)
	if n := r.poll(t); n != 1 {
		t.Fatalf("poll %d", n)
	}
	recs, err := r.log.Claim(10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("claim %d %v", len(recs), err)
	}
	// Not linked to a patient: held.
	out := r.h.handle(context.Background(), recs, nil)
	if out[0].State != checkpoint.Retrying || !strings.HasPrefix(out[0].Reason, connectors.HeldPrefix) {
		t.Fatalf("settlement %+v", out[0])
	}
	if err := r.log.Settle(out); err != nil {
		t.Fatal(err)
	}
	// The coordinator links it and edits it twice before ehrbridge looks.
	r.user(t, "PATCH", "Task/"+task, `{"WhatId":"`+acct+`","Description":"second"}`)
	r.poll(t)
	time.Sleep(5 * time.Millisecond)
	r.user(t, "PATCH", "Task/"+task, `{"Description":"third"}`)
	if n := r.poll(t); n != 1 {
		t.Fatalf("poll after edits %d", n)
	}
	// Run the pipeline now: the held first version and the second are
	// superseded, the third is filed.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	m := r.filed(t, task)
	if get(m, "MSH-9.2") != "T02" || get(m, "OBX[2]-5") != "third" {
		t.Errorf("filed %s with %q", get(m, "MSH-9.2"), get(m, "OBX[2]-5"))
	}
	waitUntil(t, "all versions settled", func() bool {
		st, _ := r.log.Stats()
		return st.States[checkpoint.Done] == 3
	})
}

// A held note is tried again as soon as EHR data is applied to the CRM:
// the encounter it needs arrives by ADT, long before its next retry.
func TestHeldWokenByArrivingData(t *testing.T) {
	set, err := mappings.Load([]string{filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud")}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	r := newRigWith(t, rigOptions{target: fileDrop, set: set, waker: true, cfg: func(c *Config) {
		c.EncounterRequired, c.HeldRetry = true, time.Hour
	}})
	adt := func(key, trigger, pv1 string) {
		msg := "MSH|^~\\&|ADT|GENHOSP|EHRBRIDGE|CRM|20260105080000||ADT^" + trigger + "|" + key + "|P|2.5.1\r" +
			"EVN|" + trigger + "|20260105080000\r" +
			"PID|1||MRN55^^^GENHOSP^MR||DOE^JANE||19800101|F\r" + pv1 + "\r"
		_, err := r.log.Append(context.Background(), checkpoint.Entry{Key: "ehr|ADT|GENHOSP|" + key, Source: "ehr", Kind: "hl7v2",
			Type: "ADT^" + trigger, Hash: sha256.Sum256([]byte(msg)), Lane: "GENHOSP|MRN55", Payload: []byte(msg), Ack: []byte("-")})
		if err != nil {
			t.Fatal(err)
		}
		r.p.Notify()
	}
	adt("m1", "A28", "PV1|1|N")
	waitUntil(t, "the patient", func() bool { return len(r.sb.Records("Account")) == 1 })
	acct, _ := r.sb.Records("Account")[0]["Id"].(string)
	task := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"s","Description":"d","Send_to_EHR__c":true}`)
	r.poll(t)
	waitUntil(t, "held", func() bool { return r.task(t, task)["EHR_Status__c"] == "Held" })
	adt("m2", "A01", "PV1|1|I|||||||||||||||||V9001^^^GENHOSP|||||||||||||||||||||||||20260105080000")
	m := r.filed(t, task)
	if got := get(m, "PV1-19.1"); got != "V9001" {
		t.Errorf("PV1-19.1 = %q", got)
	}
}

// A site's MDM mapping changes the message: another document type, an
// extra Z segment. A mapping that loses MSH-10 or TXA-12 is refused.
func TestSiteMDMMapping(t *testing.T) {
	dir := t.TempDir()
	builtIn, err := os.ReadFile(filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "writeback", "mdm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	site := strings.Replace(string(builtIn), `TXA-2: "CN"`, `TXA-2: "DS"`, 1) +
		"  - object: ZNT\n    fields:\n      ZNT-1: owner\n      ZNT-2: upper(subject)\n"
	path := filepath.Join(dir, "mdm.yaml")
	if err := os.WriteFile(path, []byte(site), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := LoadMDM(path, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	r := newRigWith(t, rigOptions{target: fileDrop, cfg: func(c *Config) { c.MDM = b }})
	acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|MRN1"}`)
	task := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","OwnerId":"005U9","Subject":"Call","Description":"d","Send_to_EHR__c":true}`)
	r.poll(t)
	m := r.filed(t, task)
	segs := m.Segments()
	if last := segs[len(segs)-1]; last.Name() != "ZNT" || get(m, "ZNT-1") != "005U9" || get(m, "ZNT-2") != "CALL" {
		t.Errorf("last segment %s, ZNT-1 %q ZNT-2 %q", last.Name(), get(m, "ZNT-1"), get(m, "ZNT-2"))
	}
	if get(m, "TXA-2") != "DS" {
		t.Errorf("TXA-2 = %q", get(m, "TXA-2"))
	}

	for name, broken := range map[string]string{
		"MSH-10": strings.Replace(string(builtIn), "MSH-10: controlId", "MSH-10: id", 1),
		"TXA-12": strings.Replace(string(builtIn), "TXA-12.1: documentId", "TXA-12.1: id", 1),
	} {
		if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadMDM(path, mappings.Options{Zone: time.UTC})
		if err == nil || !strings.Contains(err.Error(), "must set MSH-10 from controlId and TXA-12.1 from documentId") {
			t.Errorf("%s broken: LoadMDM error %v", name, err)
		}
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(builtIn), "output: hl7", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMDM(path, mappings.Options{Zone: time.UTC}); err == nil {
		t.Error("a mapping without output: hl7 was accepted")
	}
}

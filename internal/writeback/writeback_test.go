package writeback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/connectors/salesforce"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
	"github.com/ehrbridge/ehrbridge/internal/pipeline"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/mappings"
)

type rig struct {
	sb     *sandbox.Server
	base   string
	log    *checkpoint.Log
	src    *Source
	outbox string
	p      *pipeline.Pipeline
	h      *Handler
}

// rigOptions change a rig before its pipeline starts.
type rigOptions struct {
	cfg    func(*Config)
	set    *mappings.Set // inbound mappings (default none)
	noRun  bool          // do not run the pipeline: the test claims
	waker  bool          // wake held notes when EHR data is applied
	target func(outbox string) connectors.EHRTarget
}

func newRig(t *testing.T, target func(outbox string) connectors.EHRTarget) *rig {
	return newRigWith(t, rigOptions{target: target})
}

func newRigWith(t *testing.T, o rigOptions) *rig {
	t.Helper()
	target := o.target
	quiet := slog.New(slog.DiscardHandler)
	// The site links notes to encounters through its own Task.Encounter__c.
	sb, err := sandbox.New(sandbox.Options{Logger: quiet, Schemas: []string{"testdata/site_describe.json"}})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := sb.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	dir := t.TempDir()
	l, err := checkpoint.Open(filepath.Join(dir, "checkpoint.db"), checkpoint.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	client, err := salesforce.New(salesforce.Config{LoginURL: base, ClientID: "sandbox-client", ClientSecret: "sandbox-secret",
		Auth: salesforce.Auth{ClientCredentials: true}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	outbox := filepath.Join(dir, "outbox")
	cfg := Config{ReceivingApp: "EHR", ReceivingFacility: "GENHOSP", Authors: map[string]string{"005U1": "1234"}, HeldRetry: 100 * time.Millisecond}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	h := &Handler{Cfg: cfg, CRM: &salesforce.NoteReader{Client: client}, Target: target(outbox), Log: l, Logger: quiet}
	set := o.set
	if set == nil {
		set = &mappings.Set{}
	}
	popts := pipeline.Options{Log: l, Mappings: func() *mappings.Set { return set }, Sink: &salesforce.Sink{Client: client},
		Linger: -1, Poll: 10 * time.Millisecond, Logger: quiet, Notes: h}
	var waker *HeldWaker
	if o.waker {
		waker = &HeldWaker{Log: l, Every: 10 * time.Millisecond}
		popts.Applied = waker.Applied
	}
	p := pipeline.New(popts)
	h.Backoff = p.Backoff
	if waker != nil {
		waker.Notify = p.Notify
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if o.noRun {
		close(done)
	} else {
		go func() { defer close(done); _ = p.Run(ctx) }()
	}
	t.Cleanup(func() { cancel(); <-done; l.Close(); sb.Close() })
	r := &rig{sb: sb, base: base, log: l, outbox: outbox, p: p, h: h,
		src: &Source{Cfg: cfg, CRM: &salesforce.NoteReader{Client: client}, Log: l, WatermarkFile: filepath.Join(dir, "wm"), Appended: p.Notify, Logger: quiet}}
	return r
}

// user creates or edits a record as a coordinator would.
func (r *rig) user(t *testing.T, method, path, body string) string {
	t.Helper()
	return sandboxWrite(t, http.DefaultClient, r.base, method, path, body)
}

// sandboxWrite sends a write to the sandbox's object API (base is its
// URL) and returns the id it answers.
func sandboxWrite(t *testing.T, client *http.Client, base, method, path, body string) string {
	t.Helper()
	req, _ := http.NewRequest(method, base+"/sandbox/v1/objects/"+path, strings.NewReader(body))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
	}
	return out["id"]
}

func (r *rig) task(t *testing.T, id string) map[string]any {
	t.Helper()
	for _, x := range r.sb.Records("Task") {
		if x["Id"] == id {
			return x
		}
	}
	t.Fatalf("no task %s", id)
	return nil
}

func (r *rig) poll(t *testing.T) int {
	t.Helper()
	return pollOnce(t, r.src)
}

// pollOnce runs one poll of a write-back source.
func pollOnce(t *testing.T, src interface {
	Poll(context.Context) (int, error)
}) int {
	t.Helper()
	n, err := src.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func outboxFiles(t *testing.T, dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".hl7") { // not a file still being written
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// A coordinator's note on a patient who came by ADT is filed once as an
// MDM^T02 with the MRN, visit, author and text, and shows Filed; the status
// update is not a new version; an edit files a T10 replacement.
func TestFileDropAndEdit(t *testing.T) {
	r := newRig(t, func(outbox string) connectors.EHRTarget {
		return &ehr.FileDrop{FileDropConfig: ehr.FileDropConfig{Dir: outbox}}
	})
	acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|MRN123"}`)
	r.user(t, "POST", "ClinicalEncounter", `{"PatientId":"`+acct+`","Category":"Inpatient Encounter","Status":"In Progress","StartDate":"2026-01-04T08:00:00.000+0000","EHR_Encounter_Key__c":"GENHOSP|V777"}`)
	r.user(t, "POST", "ClinicalEncounter", `{"PatientId":"`+acct+`","Category":"Inpatient Encounter","Status":"Finished","StartDate":"2026-01-05T08:00:00.000+0000","EHR_Encounter_Key__c":"GENHOSP|V888"}`)
	task := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Discharge call","Description":"Patient agrees to plan.\nFollow-up in 7 days | bring meds","Send_to_EHR__c":true,"OwnerId":"005U1"}`)
	r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Private","Description":"Not for the EHR","Send_to_EHR__c":false}`)
	if n := r.poll(t); n != 1 {
		t.Fatalf("poll found %d versions, want 1", n)
	}
	waitUntil(t, "the note filed", func() bool { return r.task(t, task)["EHR_Status__c"] == "Filed" })
	files := outboxFiles(t, r.outbox)
	if len(files) != 1 {
		t.Fatalf("outbox %v", files)
	}
	data, _ := os.ReadFile(files[0])
	m, err := hl7.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	get := func(p string) string { v, _ := m.GetString(p); return v }
	checks := map[string]string{"MSH-9.1": "MDM", "MSH-9.2": "T02", "MSH-5": "EHR", "PID-3.1": "MRN123", "PID-3.4": "GENHOSP",
		"PV1-19.1": "V777", "TXA-12.1": "EHRB-" + task, "TXA-9.1": "1234", "OBX[1]-5": "Discharge call",
		"OBX[2]-5": "Patient agrees to plan.", "OBX[3]-5": "Follow-up in 7 days | bring meds"}
	for p, want := range checks {
		if got := get(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if tk := r.task(t, task); tk["EHR_Document_Id__c"] != "EHRB-"+task || tk["EHR_Filed_At__c"] == nil {
		t.Errorf("task %v", tk)
	}
	// The Filed status changed the task's SystemModstamp: not a new version.
	if n := r.poll(t); n != 0 {
		t.Errorf("after filing, poll found %d versions", n)
	}
	// An edit is a replacement of the same document.
	r.user(t, "PATCH", "Task/"+task, `{"Description":"Patient agrees to plan. Follow-up in 10 days."}`)
	if n := r.poll(t); n != 1 {
		t.Fatalf("after an edit, poll found %d versions", n)
	}
	waitUntil(t, "the replacement", func() bool { return len(outboxFiles(t, r.outbox)) == 2 })
	var t10 *hl7.Message
	for _, f := range outboxFiles(t, r.outbox) {
		b, _ := os.ReadFile(f)
		if m, _ := hl7.Parse(b); m != nil && m.Header().Trigger == "T10" {
			t10 = m
		}
	}
	if t10 == nil {
		t.Fatal("no T10 replacement in the outbox")
	}
	if v, _ := t10.GetString("TXA-13.1"); v != "EHRB-"+task {
		t.Errorf("replacement's parent document %q", v)
	}
	// The version is settled just after its file is written.
	waitUntil(t, "both versions done", func() bool {
		st, _ := r.log.Stats()
		return st.States[checkpoint.Done] == 2
	})
}

// A note whose patient has no EHR identifier is held, with the reason on
// the CRM record, and filed once the identifier arrives.
func TestHeldUntilResolvable(t *testing.T) {
	r := newRig(t, func(outbox string) connectors.EHRTarget {
		return &ehr.FileDrop{FileDropConfig: ehr.FileDropConfig{Dir: outbox}}
	})
	acct := r.user(t, "POST", "Account", `{"LastName":"NEW"}`)
	task := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Intake","Description":"x","Send_to_EHR__c":true}`)
	r.poll(t)
	waitUntil(t, "held", func() bool { return r.task(t, task)["EHR_Status__c"] == "Held" })
	if reason, _ := r.task(t, task)["EHR_Error__c"].(string); !strings.Contains(reason, "no EHR identifier") {
		t.Errorf("held reason %q", reason)
	}
	// The settlement follows the status written to the CRM.
	waitUntil(t, "the held record retrying", func() bool {
		recs, _ := r.log.List(checkpoint.Retrying, 0, 10)
		return len(recs) == 1 && strings.HasPrefix(recs[0].Reason, "held:")
	})
	r.user(t, "PATCH", "Account/"+acct, `{"EHR_Patient_Key__c":"GENHOSP|NEW1"}`)
	waitUntil(t, "filed after the identifier arrived", func() bool { return r.task(t, task)["EHR_Status__c"] == "Filed" })
}

// The EHR's answers by their HL7 meaning (table 0008): AR rejects the
// document at once (the note is Error with the EHR's text); AE means "could
// not process it now": the note is resent with backoff and filed once the
// EHR takes it, or Error (and the record dead) after ae_max_attempts AEs.
func TestMLLPAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []hl7.AckCode // in turn; the last repeats
		status  string
		sends   int64
		dead    string
	}{
		{"AR is final", []hl7.AckCode{hl7.AR}, "Error", 1, "the EHR rejected the document"},
		{"AE then AA is filed", []hl7.AckCode{hl7.AE, hl7.AE, hl7.AA}, "Filed", 3, ""},
		{"AE until the limit", []hl7.AckCode{hl7.AE}, "Error", 3, "the EHR answered AE 3 times"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sends atomic.Int64
			srv := &mllp.Server{Handler: mllp.HandlerFunc(func(ctx context.Context, req *mllp.Request) []byte {
				m, _ := hl7.Parse(req.Payload)
				n := sends.Add(1)
				code := tc.answers[min(int(n), len(tc.answers))-1]
				return hl7.BuildAck(m, code, "Unknown provider", nil, hl7.AckOptions{}).Bytes()
			}), Logger: slog.New(slog.DiscardHandler)}
			l, err := srv.Listen("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = srv.Serve(l) }()
			t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
			r := newRig(t, func(string) connectors.EHRTarget {
				return &ehr.MLLPTarget{Client: &mllp.Client{Addr: l.Addr().String(), Logger: slog.New(slog.DiscardHandler)}}
			})
			r.h.Cfg.AEMaxAttempts = 3
			acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|MRN9"}`)
			task := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Call","Description":"x","Send_to_EHR__c":true}`)
			r.poll(t)
			waitUntil(t, "status "+tc.status, func() bool { return r.task(t, task)["EHR_Status__c"] == tc.status })
			if n := sends.Load(); n != tc.sends {
				t.Errorf("the EHR got the document %d times, want %d", n, tc.sends)
			}
			if tc.status == "Error" {
				if e, _ := r.task(t, task)["EHR_Error__c"].(string); !strings.HasPrefix(e, string(tc.answers[len(tc.answers)-1])+" ") || !strings.Contains(e, "Unknown provider") {
					t.Errorf("error text %q", e)
				}
			}
			if tc.dead != "" {
				var dead []*checkpoint.Record
				waitUntil(t, "a dead record", func() bool { dead, _ = r.log.List(checkpoint.Dead, 0, 10); return len(dead) == 1 })
				if !strings.HasPrefix(dead[0].Reason, tc.dead) || strings.Contains(dead[0].Reason, "Unknown provider") {
					t.Errorf("dead reason %q, want %q and no EHR text", dead[0].Reason, tc.dead)
				}
			}
		})
	}
}

// `log list --state held` lists held notes.
func TestHeldListed(t *testing.T) {
	r := newRig(t, func(outbox string) connectors.EHRTarget {
		return &ehr.FileDrop{FileDropConfig: ehr.FileDropConfig{Dir: outbox}}
	})
	r.h.Cfg.HeldRetry = time.Hour
	acct := r.user(t, "POST", "Account", `{"LastName":"NOID"}`)
	r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"x","Description":"y","Send_to_EHR__c":true}`)
	r.poll(t)
	svc := &logadmin.Local{Log: r.log}
	var recs []logadmin.RecordView
	waitUntil(t, "a held note", func() bool {
		recs, _, _ = svc.List("held", 0, 10)
		return len(recs) == 1
	})
	if !strings.Contains(recs[0].Reason, "no EHR identifier") {
		t.Errorf("held record %+v", recs[0])
	}
}

// outboxTriggers lists the MDM triggers and TXA-13s in the outbox.
func outboxTriggers(t *testing.T, outbox string) (triggers, parents []string) {
	t.Helper()
	for _, f := range outboxFiles(t, outbox) {
		b, _ := os.ReadFile(f)
		m, err := hl7.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := m.GetString("TXA-13.1")
		triggers, parents = append(triggers, m.Header().Trigger), append(parents, p)
	}
	sort.Strings(triggers)
	return triggers, parents
}

// Write-back exactly once, by the log (issue 27): the daemon stopped after
// the EHR's AA and before the CRM heard of the filing (its status fields
// are empty), then the coordinator edited the note. The edit is a
// replacement of the filed document, decided from the log; before, the
// CRM's empty status made it a second new document (T02 twice).
func TestEditAfterLostStatusIsReplacement(t *testing.T) {
	r := newRig(t, func(outbox string) connectors.EHRTarget {
		return &ehr.FileDrop{FileDropConfig: ehr.FileDropConfig{Dir: outbox}}
	})
	acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|MRN123"}`)
	task := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Call","Description":"First text","Send_to_EHR__c":true,"OwnerId":"005U1"}`)
	r.poll(t)
	waitUntil(t, "the note filed", func() bool { return r.task(t, task)["EHR_Status__c"] == "Filed" })
	// The status write is lost, as if the daemon had died before it.
	r.user(t, "PATCH", "Task/"+task, `{"EHR_Status__c":null,"EHR_Document_Id__c":null,"EHR_Filed_At__c":null}`)
	r.user(t, "PATCH", "Task/"+task, `{"Description":"Edited text"}`)
	if n := r.poll(t); n != 1 {
		t.Fatalf("after the edit, poll found %d versions", n)
	}
	waitUntil(t, "the edit filed", func() bool { return len(outboxFiles(t, r.outbox)) == 2 })
	triggers, parents := outboxTriggers(t, r.outbox)
	if triggers[0] != "T02" || triggers[1] != "T10" {
		t.Fatalf("triggers %v: the edit went out as a second new document", triggers)
	}
	if !slices.Contains(parents, "EHRB-"+task) {
		t.Errorf("replacement's parent documents %v", parents)
	}
	waitUntil(t, "status filed", func() bool { return r.task(t, task)["EHR_Status__c"] == "Filed" })
}

// A version sent with no answer recorded (the daemon died while waiting)
// may be filed: it is sent again (same MSH-10) before its edit, and the
// edit is a replacement, never a second new document. A version the EHR rejected (AR) was not filed: its edit is a
// new document.
func TestUnansweredSendMakesEditAReplacement(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	r := newRig(t, func(outbox string) connectors.EHRTarget {
		return targetFunc(func(ctx context.Context, doc *connectors.Document) error {
			if err := (&ehr.FileDrop{FileDropConfig: ehr.FileDropConfig{Dir: outbox}}).File(ctx, doc); err != nil {
				return err
			}
			if fail.Load() { // delivered, but the answer is lost
				return &connectors.Unreachable{Err: errors.New("no acknowledgment in time")}
			}
			return nil
		})
	})
	r.h.Backoff = func(int) time.Duration { return 20 * time.Millisecond }
	acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|MRN123"}`)
	task := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Call","Description":"First text","Send_to_EHR__c":true,"OwnerId":"005U1"}`)
	r.poll(t)
	waitUntil(t, "the first version sent", func() bool { return len(outboxFiles(t, r.outbox)) == 1 })
	r.user(t, "PATCH", "Task/"+task, `{"Description":"Edited text"}`)
	r.poll(t)
	fail.Store(false) // the first version is sent again and answered; then the edit
	waitUntil(t, "the edit filed", func() bool { return len(outboxFiles(t, r.outbox)) == 2 })
	waitUntil(t, "the status filed", func() bool { return r.task(t, task)["EHR_Status__c"] == "Filed" })
	if triggers, _ := outboxTriggers(t, r.outbox); len(triggers) != 2 || triggers[1] != "T10" {
		t.Fatalf("triggers %v, want T02 then T10", triggers)
	}
}

type targetFunc func(ctx context.Context, doc *connectors.Document) error

func (f targetFunc) File(ctx context.Context, doc *connectors.Document) error { return f(ctx, doc) }

// lateEHR is an EHR target whose first send of a note is applied late,
// after ehrbridge stopped waiting for its answer (a message written to a
// connection just before a crash is still delivered, and an EHR serving
// connections side by side can apply it after a newer one). It keeps the
// text it holds per document and the triggers it applied, in order.
type lateEHR struct {
	mu       sync.Mutex
	text     map[string]string
	triggers []string
	sends    int
	late     time.Duration // when the first send is applied
	inFlight time.Duration
	applied  chan struct{} // closed when the late send was applied
}

func (e *lateEHR) InFlight() time.Duration { return e.inFlight }

func (e *lateEHR) File(_ context.Context, doc *connectors.Document) error {
	trigger := doc.MDM.Header().Trigger
	apply := func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.text[doc.ID] = doc.Note.Text
		e.triggers = append(e.triggers, trigger)
	}
	e.mu.Lock()
	e.sends++
	first := e.sends == 1
	e.mu.Unlock()
	if first {
		go func() { time.Sleep(e.late); apply(); close(e.applied) }()
		return &connectors.Unreachable{Err: errors.New("no acknowledgment: the daemon stopped")}
	}
	apply()
	return nil
}

// An edit is not sent while the unanswered send of the version before it
// can still reach the EHR (the target's answer timeout): otherwise the
// older version, delivered late, would overwrite the newer one in the
// EHR. Found by make chaos (1 note in 2,250 on Dataverse); before, the
// edit went out at once and the EHR was left holding the older text.
func TestUnansweredSendIsNotOvertaken(t *testing.T) {
	ehr := &lateEHR{text: map[string]string{}, late: 300 * time.Millisecond, inFlight: 800 * time.Millisecond, applied: make(chan struct{})}
	r := newRig(t, func(string) connectors.EHRTarget { return ehr })
	r.h.Backoff = func(int) time.Duration { return 20 * time.Millisecond }
	acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|MRN123"}`)
	task := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Call","Description":"First text","Send_to_EHR__c":true,"OwnerId":"005U1"}`)
	r.poll(t)
	waitUntil(t, "the first version sent", func() bool { ehr.mu.Lock(); defer ehr.mu.Unlock(); return ehr.sends == 1 })
	r.user(t, "PATCH", "Task/"+task, `{"Description":"Edited text"}`)
	r.poll(t)
	waitUntil(t, "the edit filed", func() bool {
		ehr.mu.Lock()
		defer ehr.mu.Unlock()
		return slices.Contains(ehr.triggers, "T10")
	})
	<-ehr.applied
	ehr.mu.Lock()
	defer ehr.mu.Unlock()
	if got := ehr.text["EHRB-"+task]; got != "Edited text" {
		t.Fatalf("the EHR holds %q after the edit was filed (applied in order: %v): the older version overtook it", got, ehr.triggers)
	}
	// The unanswered first version is sent again before its edit (the EHR
	// applies it twice: the resend and the late copy), then the edit as a
	// replacement.
	if n := len(ehr.triggers); n != 3 || ehr.triggers[n-1] != "T10" {
		t.Errorf("triggers applied %v, want T02 (resent), T02 (late) and then the T10 replacement", ehr.triggers)
	}
}

// A version the EHR answered AE to (not filed) and that was never left
// without an answer is not in the EHR: its edit is a new document (T02),
// not a replacement of a document the EHR never had, which a real EHR
// refuses (the note would end in Error). make chaos found it once its EHR
// refused such replacements, as EHRs do.
func TestAEThenEditIsNewDocument(t *testing.T) {
	var answered atomic.Int32
	r := newRig(t, func(outbox string) connectors.EHRTarget {
		return targetFunc(func(ctx context.Context, doc *connectors.Document) error {
			if answered.Add(1) == 1 {
				return &connectors.Deferred{Code: hl7.AE, Text: "document store busy"}
			}
			return (&ehr.FileDrop{FileDropConfig: ehr.FileDropConfig{Dir: outbox}}).File(ctx, doc)
		})
	})
	// The AE'd version is retried after the edit: superseded.
	r.h.Backoff = func(int) time.Duration { return time.Second }
	acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|MRN123"}`)
	task := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Call","Description":"First text","Send_to_EHR__c":true,"OwnerId":"005U1"}`)
	r.poll(t)
	waitUntil(t, "the EHR's AE", func() bool { return answered.Load() == 1 })
	r.user(t, "PATCH", "Task/"+task, `{"Description":"Edited text"}`)
	r.poll(t)
	waitUntil(t, "both versions settled", func() bool {
		st, err := r.log.Stats()
		return err == nil && st.States[checkpoint.Done]+st.States[checkpoint.Dead] == 2
	})
	files := outboxFiles(t, r.outbox)
	if b, _ := os.ReadFile(files[0]); len(files) != 1 || !strings.Contains(string(b), "Edited text") {
		t.Fatalf("%d documents filed; want only the edit", len(files))
	}
	if triggers, _ := outboxTriggers(t, r.outbox); len(triggers) != 1 || triggers[0] != "T02" {
		t.Fatalf("triggers %v: the edit of a version the EHR never filed must be a new document (T02)", triggers)
	}
	if n := answered.Load(); n != 2 {
		t.Errorf("%d sends, want 2 (the AE'd version, then its edit)", n)
	}
}

// More notes changed within the poll's overlap than one query reads (a
// burst of status writes after an EHR outage): the poll reads on from the
// newest change of each full page. Before, every poll read the same first
// page again and a later edit was never seen.
func TestPollReadsBurstsLargerThanAPage(t *testing.T) {
	r := newRigWith(t, rigOptions{noRun: true, target: func(outbox string) connectors.EHRTarget {
		return &ehr.FileDrop{FileDropConfig: ehr.FileDropConfig{Dir: outbox}}
	}})
	r.src.PageSize = 3
	acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|MRN123"}`)
	var tasks []string
	for i := range 7 { // two a second: query literals have whole seconds
		tasks = append(tasks, r.user(t, "POST", "Task", fmt.Sprintf(`{"WhatId":"%s","Subject":"Call %d","Description":"Text %d","Send_to_EHR__c":true,"OwnerId":"005U1"}`, acct, i, i)))
		time.Sleep(500 * time.Millisecond)
	}
	if n := r.poll(t); n != 7 {
		t.Fatalf("the first poll stored %d versions of 7 notes", n)
	}
	r.user(t, "PATCH", "Task/"+tasks[0], `{"Description":"Edited"}`)
	if n := r.poll(t); n != 1 {
		t.Errorf("after an edit, the poll stored %d new versions, want 1", n)
	}
}

// A note an older release filed (the CRM says Filed; the log has no filing
// state for it) is edited: the edit replaces the filed document, as the
// CRM's status says. Once the log knows a note, the log decides: a version
// the EHR only answered AE to is not filed, whatever the CRM's status
// fields say (here set by hand), and its edit is a new document.
func TestCRMStatusDecidesOnlyWithoutTheLog(t *testing.T) {
	r := newRig(t, func(outbox string) connectors.EHRTarget {
		return &ehr.FileDrop{FileDropConfig: ehr.FileDropConfig{Dir: outbox}}
	})
	acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|MRN123"}`)
	old := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Call","Description":"Filed long ago","Send_to_EHR__c":false,"OwnerId":"005U1",`+
		`"EHR_Status__c":"Filed","EHR_Document_Id__c":"EHRB-old","EHR_Filed_At__c":"2026-01-05T10:30:00.000Z"}`)
	r.user(t, "PATCH", "Task/"+old, `{"Description":"Edited after the upgrade","Send_to_EHR__c":true}`)
	r.poll(t)
	waitUntil(t, "the edit filed", func() bool { return len(outboxFiles(t, r.outbox)) == 1 })
	if triggers, parents := outboxTriggers(t, r.outbox); triggers[0] != "T10" || parents[0] != "EHRB-old" {
		t.Errorf("an edit of a note an older release filed: %v replacing %v, want T10 replacing EHRB-old", triggers, parents)
	}
	// The log knows the next note: its state says nothing was filed.
	known := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Call","Description":"Never filed","Send_to_EHR__c":false,"OwnerId":"005U1",`+
		`"EHR_Status__c":"Filed","EHR_Document_Id__c":"EHRB-other","EHR_Filed_At__c":"2026-01-05T10:30:00.000Z"}`)
	if err := r.h.putFiling(known, filingState{Unanswered: "x", UnansweredAt: 1}); err != nil {
		t.Fatal(err)
	}
	r.user(t, "PATCH", "Task/"+known, `{"Description":"Its edit","Send_to_EHR__c":true}`)
	r.poll(t)
	waitUntil(t, "the second note filed", func() bool { return len(outboxFiles(t, r.outbox)) == 2 })
	for _, f := range outboxFiles(t, r.outbox) {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "Its edit") && !strings.Contains(string(b), "MDM^T02") {
			t.Errorf("a note the log knows as never filed was sent as a replacement because of the CRM's status fields")
		}
	}
}

package pipeline

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/connectors/salesforce"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
	"github.com/ehrbridge/ehrbridge/mappings"
)

type rig struct {
	log  *checkpoint.Log
	sb   *sandbox.Server
	base string
	p    *Pipeline
	sink *editSink
	stop func()
}

// editSink lets a test change ops on their way to the CRM (bypassing the
// mapping), without a hook in the pipeline itself.
type editSink struct {
	connectors.Sink
	edit atomic.Pointer[func(ops []connectors.Op) []connectors.Op]
}

func (s *editSink) Apply(ctx context.Context, ops []connectors.Op) []connectors.Result {
	if f := s.edit.Load(); f != nil {
		ops = (*f)(ops)
	}
	return s.Sink.Apply(ctx, ops)
}

func newRig(t *testing.T) *rig { t.Helper(); return newRigWith(t, sandbox.Options{}) }

func newRigWith(t *testing.T, opts sandbox.Options) *rig {
	t.Helper()
	l, err := checkpoint.Open(filepath.Join(t.TempDir(), "checkpoint.db"), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := sb.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	client, err := salesforce.New(salesforce.Config{LoginURL: base, ClientID: "sandbox-client", ClientSecret: "sandbox-secret",
		Auth: salesforce.Auth{ClientCredentials: true}, RetryMax: 1, ThrottlePause: 300 * time.Millisecond, RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	set, err := mappings.Load([]string{filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud")}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	sink := &editSink{Sink: &salesforce.Sink{Client: client}}
	p := New(Options{Log: l, Mappings: func() *mappings.Set { return set }, Sink: sink,
		BatchSize: 50, Linger: -1, Poll: 10 * time.Millisecond, BackoffMin: 20 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = p.Run(ctx) }()
	r := &rig{log: l, sb: sb, base: base, p: p, sink: sink}
	r.stop = func() { cancel(); <-stopped }
	t.Cleanup(func() { r.stop(); l.Close(); sb.Close() })
	return r
}

var seq int

// send appends an HL7 message as the MLLP source would.
func (r *rig) send(t *testing.T, msg string) {
	t.Helper()
	seq++
	msg = strings.Replace(msg, "CTRL", fmt.Sprint("C", seq), 1)
	m, err := hl7.Parse([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	h := m.Header()
	// Type as the MLLP source stores it (its messages here are well formed).
	if _, err := r.log.Append(context.Background(), checkpoint.Entry{Key: ehr.RecordKey("ehr", h), Source: "ehr", Kind: "hl7v2",
		Type: h.Type + "^" + h.Trigger, Hash: ehr.ContentHash(m, nil), Lane: ehr.LaneKey(m), Payload: []byte(msg), Ack: []byte("ack")}); err != nil {
		t.Fatal(err)
	}
	r.p.Notify()
}

func (r *rig) waitSettled(t *testing.T, want map[checkpoint.State]int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := r.log.Stats()
		if err != nil {
			t.Fatal(err)
		}
		ok := true
		for s, n := range want {
			ok = ok && st.States[s] == n
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("states %v, want %v", st.States, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func adt(trigger, mrn, last, first string) string {
	return "MSH|^~\\&|EPIC|GENHOSP|EHRBRIDGE|CRM|20260105103000||ADT^" + trigger + "|CTRL|P|2.5.1\r" +
		"EVN|" + trigger + "|20260105103000\r" +
		"PID|1||" + mrn + "^^^GENHOSP^MR||" + last + "^" + first + "||19800517|F\r" +
		"PV1|1|I|4WEST^401^B||||||||||||||||V" + mrn + "^^^GENHOSP^VN|||||||||||||||||||||||||20260104080000-0600\r"
}

// One patient's events apply in order, so the CRM holds the last one's
// values; different patients' events share batches; nothing is duplicated.
func TestOrderAndLastValueWins(t *testing.T) {
	r := newRig(t)
	for round := range 3 {
		for p := range 5 {
			r.send(t, adt("A08", fmt.Sprint("M", p), fmt.Sprint("LAST", p), fmt.Sprint("V", round)))
		}
	}
	r.waitSettled(t, map[checkpoint.State]int64{checkpoint.Done: 15, checkpoint.Received: 0, checkpoint.InProgress: 0})
	accounts := r.sb.Records("Account")
	if len(accounts) != 5 {
		t.Fatalf("%d accounts, want 5", len(accounts))
	}
	for _, a := range accounts {
		if a["FirstName"] != "V2" {
			t.Errorf("account %v: FirstName %v, want the last message's V2", a["EHR_Patient_Key__c"], a["FirstName"])
		}
	}
	if n := len(r.sb.Records("ClinicalEncounter")); n != 5 {
		t.Errorf("%d encounters, want 5", n)
	}
	// The counter follows the settling transaction: the log may show the
	// last batch done a moment before the counter has it.
	for deadline := time.Now().Add(5 * time.Second); r.p.Done.Load() != 15 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if r.p.Done.Load() != 15 {
		t.Errorf("Done counter %d", r.p.Done.Load())
	}
}

// A CRM outage makes records retry, holding only their lanes; when the
// CRM is back they are applied. A record that can never apply is dead,
// with a reason free of patient data, and its lane moves on. A message no
// mapping accepts is skipped, without CRM writes.
func TestRetryDeadAndUnmapped(t *testing.T) {
	r := newRig(t)
	dropLastName := func(ops []connectors.Op) []connectors.Op {
		ops = slices.Clone(ops) // the pipeline's own ops stay as mapped
		for i, op := range ops {
			if v, _ := op.Field("LastName"); op.Object == "Account" && v.Text == "CRMREFUSES" {
				ops[i].Fields = slices.DeleteFunc(slices.Clone(op.Fields), func(f mappings.Field) bool { return f.Name == "LastName" })
			}
		}
		return ops
	}
	r.sink.edit.Store(&dropLastName)
	fault := func(body string) {
		resp, err := http.Post(r.base+"/sandbox/v1/faults", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	fault(`{"status":503,"seconds":0.3}`)
	r.send(t, adt("A01", "R1", "RETRY", "ONE"))
	time.Sleep(100 * time.Millisecond)
	st, _ := r.log.Stats()
	if st.States[checkpoint.Retrying]+st.States[checkpoint.InProgress] != 1 {
		t.Errorf("during the outage: %v", st.States)
	}
	r.waitSettled(t, map[checkpoint.State]int64{checkpoint.Done: 1})
	if r.p.Retried.Load() == 0 {
		t.Errorf("no retry counted")
	}
	// No patient id, no patient name: the mapping refuses them (the CRM
	// never sees them) and the records are dead.
	r.send(t, strings.Replace(adt("A01", "X", "NOID", "X"), "PID|1||X^^^GENHOSP^MR|", "PID|1|||", 1))
	r.send(t, adt("A01", "D1", "", "NOLAST"))
	r.send(t, adt("A08", "D1", "LATER", "NOLAST"))
	r.send(t, strings.Replace(adt("A01", "U1", "U", "U"), "ADT^A01", "MDM^T02", 1))
	r.waitSettled(t, map[checkpoint.State]int64{checkpoint.Done: 2, checkpoint.Dead: 2, checkpoint.Skipped: 1})
	// A record the CRM itself refuses for good (the mapping is bypassed to
	// send an account without LastName): dead with the CRM's error code.
	r.send(t, adt("A01", "C1", "CRMREFUSES", "X"))
	r.waitSettled(t, map[checkpoint.State]int64{checkpoint.Done: 2, checkpoint.Dead: 3, checkpoint.Skipped: 1})
	dead, err := r.log.List(checkpoint.Dead, 0, 10)
	if err != nil || len(dead) != 3 {
		t.Fatalf("dead %v %v", dead, err)
	}
	if !strings.Contains(dead[0].Reason, "no patient identifier") || !strings.Contains(dead[1].Reason, "no patient name (PID-5)") ||
		!strings.Contains(dead[2].Reason, "REQUIRED_FIELD_MISSING") {
		t.Errorf("reasons %q / %q / %q", dead[0].Reason, dead[1].Reason, dead[2].Reason)
	}
	for _, d := range dead {
		if strings.Contains(d.Reason, "GENHOSP|D1") || strings.Contains(d.Reason, "NOLAST") || strings.Contains(d.Reason, "CRMREFUSES") {
			t.Errorf("reason holds patient data: %q", d.Reason)
		}
	}
	waitCounter(t, &r.p.Skipped, 1)
	if sk, _ := r.log.List(checkpoint.Skipped, 0, 10); len(sk) != 1 || sk[0].Reason != "no mapping for MDM^T02" {
		t.Errorf("skipped %+v", sk)
	}
	// The lane of the dead record moved on: the A08 with a LastName applied.
	found := false
	for _, a := range r.sb.Records("Account") {
		found = found || a["LastName"] == "LATER"
	}
	if !found {
		t.Errorf("the dead record's lane did not move on")
	}
}

// A request-limit window pauses the whole pipeline instead of burning
// retries, and the records apply once it is over.
func TestThrottlingPauses(t *testing.T) {
	r := newRig(t)
	resp, err := http.Post(r.base+"/sandbox/v1/faults", "application/json", strings.NewReader(`{"request_limit_exceeded":true,"seconds":0.5}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r.send(t, adt("A01", "T1", "THROTTLED", "T"))
	deadline := time.Now().Add(5 * time.Second)
	for r.p.PausedUntil().IsZero() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if r.p.PausedUntil().IsZero() {
		t.Fatal("no pause")
	}
	r.waitSettled(t, map[checkpoint.State]int64{checkpoint.Done: 1})
	if len(r.sb.Records("Account")) != 1 {
		t.Errorf("accounts %d", len(r.sb.Records("Account")))
	}
}

// An MDM carrying write-back's document id prefix is our own note coming
// back: done, not mapped, counted as an echo.
func TestEchoGuard(t *testing.T) {
	r := newRig(t)
	r.p.opts.EchoPrefix = "EHRB-"
	mdm := "MSH|^~\\&|EHR|GENHOSP|EHRBRIDGE|CRM|20260105103000||MDM^T02|CTRL|P|2.5.1\r" +
		"EVN|T02|20260105103000\rPID|1||E1^^^GENHOSP^MR||ECHO^X\rPV1|1\r" +
		"TXA|1|CN|TX|20260105||||||||EHRB-00T000000000001AAA||||||AU\rOBX|1|TX|NOTE||text||||||F\r"
	r.send(t, mdm)
	// The same note as a FHIR DocumentReference; and one of the EHR's own
	// documents, which is not an echo (no mapping accepts it here).
	for i, doc := range []string{
		`{"resourceType":"DocumentReference","status":"current","identifier":[{"system":"urn:ehrbridge:note","value":"EHRB-00T000000000001AAA-3f2a"}]}`,
		`{"resourceType":"DocumentReference","status":"current","identifier":[{"system":"urn:ehr:doc","value":"DOC-1"}],"description":"EHRB-like text"}`,
	} {
		if _, err := r.log.Append(context.Background(), checkpoint.Entry{Key: fmt.Sprint("fhir|doc|", i), Source: "fhir", Kind: "fhir",
			Type: "DocumentReference", Hash: sha256.Sum256([]byte(doc)), Lane: "x", Payload: []byte(doc), Ack: []byte("-")}); err != nil {
			t.Fatal(err)
		}
	}
	r.p.Notify()
	r.waitSettled(t, map[checkpoint.State]int64{checkpoint.Done: 2, checkpoint.Skipped: 1})
	waitCounter(t, &r.p.Skipped, 1)
	if r.p.Echoes.Load() != 2 {
		t.Errorf("echoes %d", r.p.Echoes.Load())
	}
	if sk, _ := r.log.List(checkpoint.Skipped, 0, 10); len(sk) != 1 || sk[0].Reason != "no mapping for DocumentReference" {
		t.Errorf("skipped %+v", sk)
	}
	rec, err := r.log.Get(1)
	if err != nil || len(rec.Targets) != 1 || rec.Targets[0] != "EHRB-00T000000000001AAA" {
		t.Errorf("the echo is not linked to its note's document: %+v %v", rec, err)
	}
}

// waitCounter waits for a pipeline counter, which follows the settling
// transaction by a moment.
func waitCounter(t *testing.T, c *atomic.Int64, want int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); c.Load() != want && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := c.Load(); got != want {
		t.Errorf("counter %d, want %d", got, want)
	}
}

// Messages no mapping accepts (ADT^A60, VXU^V04) are acknowledged and
// stored, then skipped: a state of their own, not done, with the message
// type as the reason and nothing of the message; their lanes move on,
// nothing reaches the CRM for them, and they are counted apart.
func TestSkippedWhenNoMappingAccepts(t *testing.T) {
	r := newRig(t)
	a60 := strings.Replace(adt("A60", "S1", "SKIP", "ONE"), "PV1|", "IAM|1|DA|1605^PENICILLIN\rPV1|", 1)
	r.send(t, a60)
	vxu := "MSH|^~\\&|EPIC|GENHOSP|EHRBRIDGE|CRM|20260105103000||VXU^V04^VXU_V04|CTRLVXU|P|2.5.1\r" +
		"PID|1||S1^^^GENHOSP^MR||SKIP^ONE||19800517|F\rRXA|0|1|20260105||08^HepB^CVX|0.5|mL\r"
	m, err := hl7.Parse([]byte(vxu))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.log.Append(context.Background(), checkpoint.Entry{Key: ehr.RecordKey("ehr", m.Header()), Source: "ehr", Kind: "hl7v2",
		Type: "VXU^V04", Hash: ehr.ContentHash(m, nil), Lane: ehr.LaneKey(m), Payload: []byte(vxu), Ack: []byte("ack")}); err != nil {
		t.Fatal(err)
	}
	r.send(t, adt("A08", "S1", "AFTER", "SKIPS"))
	r.waitSettled(t, map[checkpoint.State]int64{checkpoint.Done: 1, checkpoint.Skipped: 2, checkpoint.Received: 0, checkpoint.InProgress: 0})
	waitCounter(t, &r.p.Skipped, 2)
	waitCounter(t, &r.p.Done, 1)
	sk, err := r.log.List(checkpoint.Skipped, 0, 10)
	if err != nil || len(sk) != 2 {
		t.Fatalf("skipped %v %v", sk, err)
	}
	reasons := map[string]bool{}
	for _, rec := range sk {
		reasons[rec.Reason] = true
		if len(rec.Targets) != 0 || rec.Attempts != 0 || rec.DoneAt.IsZero() {
			t.Errorf("skipped record %+v", rec)
		}
		for _, phi := range []string{"S1", "SKIP", "PENICILLIN", "19800517"} {
			if strings.Contains(rec.Reason, phi) {
				t.Errorf("reason %q holds message data", rec.Reason)
			}
		}
	}
	if !reasons["no mapping for ADT^A60"] || !reasons["no mapping for VXU^V04"] {
		t.Errorf("reasons %v", reasons)
	}
	accounts := r.sb.Records("Account")
	if len(accounts) != 1 || accounts[0]["LastName"] != "AFTER" {
		t.Errorf("accounts %v: only the A08 should have written", accounts)
	}
}

// A record applied while its mapping left fields out (warnings) is done,
// not failed, with the warnings as its reason, and counted: a year-only
// birth date (valid HL7, but a Date field cannot hold it) and a malformed
// admit time, through the shipped Health Cloud set.
func TestDoneWithWarnings(t *testing.T) {
	r := newRig(t)
	r.send(t, adt("A01", "W1", "PLAIN", "X"))
	warnedMsg := strings.Replace(adt("A08", "W2", "WARNED", "X"), "||19800517|", "||1980|", 1)
	r.send(t, strings.Replace(warnedMsg, "|20260104080000-0600\r", "|2026010408XX\r", 1))
	r.waitSettled(t, map[checkpoint.State]int64{checkpoint.Done: 2})
	waitCounter(t, &r.p.Warned, 1)
	waitCounter(t, &r.p.Done, 2)
	done, err := r.log.List(checkpoint.Done, 0, 10)
	if err != nil || len(done) != 2 {
		t.Fatalf("done %v %v", done, err)
	}
	for _, rec := range done {
		warned := strings.Contains(rec.Key, "C"+fmt.Sprint(seq))
		want := ""
		if warned {
			want = "mapped with warnings: 10_adt_patient/patient.PersonBirthdate: date(): the value has no day (year precision only); " +
				"the field is left out rather than given an invented day; 20_adt_encounter/encounter.StartDate: datetime(): the value is " +
				"not a date/time (HL7 YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ] or ISO 8601); the field is left out"
		}
		if rec.Reason != want || rec.Warned() != warned || len(rec.Targets) == 0 {
			t.Errorf("record %d: reason %q warned %v targets %v", rec.ID, rec.Reason, rec.Warned(), rec.Targets)
		}
	}
	accounts := r.sb.Records("Account")
	if len(accounts) != 2 {
		t.Errorf("%d accounts: a record with warnings is applied", len(accounts))
	}
	for _, a := range accounts {
		if _, has := a["PersonBirthdate"]; has != (a["LastName"] == "PLAIN") {
			t.Errorf("account %v: only the full birth date is written, the year-only one is left out", a["LastName"])
		}
	}
}

// A FHIR delete that nothing applies is skipped, not done: a resource
// never written to the CRM, or one whose mapping has no on_delete (Health
// Cloud accounts are left alone). The reasons name the type only.
func TestFHIRDeleteSkipped(t *testing.T) {
	r := newRig(t)
	// As connectors/ehr's FHIR source appends them: Type is the resource type.
	appendFHIR := func(key string, kind checkpoint.RecordKind, body string) {
		t.Helper()
		typ, _, _ := strings.Cut(strings.TrimPrefix(key, "fhir|fhir|"), "/")
		if _, err := r.log.Append(context.Background(), checkpoint.Entry{Key: key, Source: "fhir", Kind: kind, Type: typ,
			Hash: sha256.Sum256([]byte(key)), Lane: "pat-9", Payload: []byte(body), Ack: []byte("-")}); err != nil {
			t.Fatal(err)
		}
		r.p.Notify()
	}
	patient := `{"resourceType":"Patient","id":"pat-9","identifier":[{"type":{"coding":[{"code":"MR"}]},"system":"urn:mrn","value":"ZZMRN9"}],"name":[{"family":"ZZDELETED"}]}`
	appendFHIR("fhir|fhir|Patient/pat-9/_history/1", "fhir", patient)
	r.waitSettled(t, map[checkpoint.State]int64{checkpoint.Done: 1})
	appendFHIR("fhir|fhir|Patient/pat-9/_history/deleted-2", checkpoint.KindFHIRDelete, `{"resourceType":"Patient","id":"pat-9"}`)
	// An encounter written by a mapping that no longer has on_delete
	// (here: no longer exists).
	if err := r.log.SetSourceState("fhir|fhir|addr|Encounter/enc-1", []byte(`[{"mapping":"gone","object":"ClinicalEncounter","key_field":"X","key":"ZZKEY"}]`)); err != nil {
		t.Fatal(err)
	}
	appendFHIR("fhir|fhir|Encounter/enc-1/_history/deleted-1", checkpoint.KindFHIRDelete, `{"resourceType":"Encounter","id":"enc-1"}`)
	r.waitSettled(t, map[checkpoint.State]int64{checkpoint.Done: 1, checkpoint.Skipped: 2})
	sk, _ := r.log.List(checkpoint.Skipped, 0, 10)
	reasons := map[string]bool{}
	for _, rec := range sk {
		reasons[rec.Reason] = true
	}
	if !reasons["nothing to delete: no mapping with on_delete wrote this Patient"] ||
		!reasons["nothing to delete: the mappings that wrote this Encounter have no on_delete any more"] {
		t.Errorf("reasons %v", reasons)
	}
	if n := len(r.sb.Records("Account")); n != 1 {
		t.Errorf("%d accounts: a skipped delete changed the CRM", n)
	}
}

// A log that refuses every claim (a full disk, here a log opened
// read-only) is logged once and then once a minute with the count, not
// at every poll.
func TestClaimFailuresLoggedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), checkpoint.FileName)
	w, err := checkpoint.Open(path, checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	l, err := checkpoint.Open(path, checkpoint.Options{ReadOnly: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var logs syncbuf.Buffer
	p := New(Options{Log: l, Mappings: func() *mappings.Set { return &mappings.Set{} }, Sink: &editSink{},
		Linger: -1, Poll: time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_ = p.Run(ctx)
	if n := strings.Count(logs.String(), "claiming records failed"); n != 1 {
		t.Errorf("%d error lines in 300 ms of failing claims, want 1:\n%s", n, logs.String())
	}
}

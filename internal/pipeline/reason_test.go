package pipeline

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// refusingSink answers every op with the error a CRM gives for it.
type refusingSink struct {
	err func(op connectors.Op) *connectors.Error
}

func (s refusingSink) Apply(_ context.Context, ops []connectors.Op) []connectors.Result {
	out := make([]connectors.Result, len(ops))
	for i, op := range ops {
		out[i] = connectors.Result{Err: s.err(op)}
	}
	return out
}

// A CRM's error message can quote any value of the record, in any case or
// format: Salesforce's DUPLICATE_VALUE quotes the duplicate key (the MRN).
// The reason kept in clear (what `log list`, `log show` and /status show)
// holds the code, the object and the field names only; the message is the
// record's detail, sealed, returned only by Reveal.
func TestDeadReasonHoldsCodeAndFieldsNotTheCRMsMessage(t *testing.T) {
	ring, _ := checkpoint.NewKeyring(bytes.Repeat([]byte{5}, 32))
	path := filepath.Join(t.TempDir(), "checkpoint.db")
	l, err := checkpoint.Open(path, checkpoint.Options{Keyring: ring, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	set, err := mappings.Load([]string{filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud")}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	sink := refusingSink{err: func(op connectors.Op) *connectors.Error {
		// Salesforce's wording, with the key lower-cased and a name
		// re-cased: no scrub of the op's values finds them.
		return &connectors.Error{Kind: connectors.Permanent, Code: "DUPLICATE_VALUE", Status: 400,
			Message: "duplicate value found: SourceSystemId__c duplicates value on record with id: 001xx000003DGb2AAG (" +
				strings.ToLower(op.Key) + ", Zebulon Quartermain)", Fields: []string{"SourceSystemId__c", "not a field: dup7731xq"}}
	}}
	msg := strings.Replace(adt("A01", "DUP7731XQ", "QUARTERMAIN", "ZEBULON"), "CTRL", "DUPC1", 1)
	rec, stop := runUntilDead(t, l, set, sink, 50, msg)
	reason := rec.Reason
	if !strings.Contains(reason, "DUPLICATE_VALUE") || !strings.Contains(reason, "SourceSystemId__c") || !strings.Contains(reason, "(HTTP 400)") {
		t.Errorf("reason %q lacks the code or the field name", reason)
	}
	for _, v := range []string{"dup7731xq", "quartermain", "zebulon", "001xx000003dgb2aag"} {
		if strings.Contains(strings.ToLower(reason), v) {
			t.Errorf("reason %q holds %q", reason, v)
		}
	}
	// The record's history names the code and the op, not the message.
	h, err := l.History(rec.ID)
	if err != nil || len(h) == 0 {
		t.Fatalf("history: %v %v", h, err)
	}
	last := h[len(h)-1]
	if last.Kind != checkpoint.EventSettled || last.State != checkpoint.Dead || last.Code != "DUPLICATE_VALUE" || last.Op < 1 ||
		last.Object == "" || last.Mapping == "" || !strings.HasPrefix(last.Action, "upsert") || last.Reason != reason {
		t.Errorf("history event %+v", last)
	}
	got, _ := l.Get(rec.ID)
	if got.Detail != "" {
		t.Errorf("Get returns the detail: %q", got.Detail)
	}
	rev, err := l.Reveal(rec.ID)
	if err != nil || !strings.Contains(rev.Detail, "dup7731xq, Zebulon Quartermain") {
		t.Errorf("reveal detail %q, %v", rev.Detail, err)
	}
	stop()
	raw, _ := os.ReadFile(path)
	if bytes.Contains(bytes.ToLower(raw), []byte("dup7731xq")) || bytes.Contains(raw, []byte("Zebulon")) {
		t.Error("the CRM's message is stored in clear in the log file")
	}
}

func TestCRMReasonLeavesOutWhatIsNotACode(t *testing.T) {
	for _, c := range []struct {
		e    connectors.Error
		want string
	}{
		{connectors.Error{Kind: connectors.Permanent, Code: "REQUIRED_FIELD_MISSING", Fields: []string{"LastName"}, Message: "Required fields are missing: [LastName]"},
			"crm permanent error REQUIRED_FIELD_MISSING on Account; fields: LastName; the CRM's message: log show --reveal"},
		{connectors.Error{Kind: connectors.Permanent, Code: "0x80040237", Status: 412}, "crm permanent error 0x80040237 (HTTP 412) on Account"},
		{connectors.Error{Kind: connectors.Permanent, Code: "Smith, John", Fields: []string{"1980-05-17", "O'Brien^Pat"}},
			"crm permanent error (code not shown) on Account"},
		{connectors.Error{Kind: connectors.Transient, Code: "123456789012"}, "crm transient error (code not shown) on Account"},
	} {
		if got := crmReason(&c.e, &connectors.Op{Object: "Account"}, 0); got != c.want {
			t.Errorf("crmReason(%+v) = %q, want %q", c.e, got, c.want)
		}
	}
}

// A CRM error names the op it refused: its number among the record's ops
// (as ehrbridge map lists them), action, key field and mapping, never the
// key's value.
func TestCRMReasonNamesTheOp(t *testing.T) {
	e := connectors.Error{Kind: connectors.Permanent, Code: "REQUIRED_FIELD_MISSING", Status: 400, Fields: []string{"LastName"}, Message: "Required fields are missing: [LastName]"}
	op := connectors.Op{Mapping: "10_adt_patient", Object: "Contact", Action: "upsert", KeyField: "MRN__c", Key: "GHH|PATID1234"}
	want := "crm permanent error REQUIRED_FIELD_MISSING (HTTP 400) on Contact (op 2: upsert by MRN__c, mapping 10_adt_patient); fields: LastName; the CRM's message: log show --reveal"
	if got := crmReason(&e, &op, 2); got != want {
		t.Errorf("crmReason =\n %q\nwant\n %q", got, want)
	}
	if got := crmReason(&e, &op, 2); strings.Contains(got, "PATID1234") {
		t.Errorf("the reason holds the key: %q", got)
	}
}

// refuseSecond refuses the second op of each call and remembers it.
type refuseSecond struct{ refused chan connectors.Op }

func (s refuseSecond) Apply(_ context.Context, ops []connectors.Op) []connectors.Result {
	out := make([]connectors.Result, len(ops))
	if len(ops) > 1 {
		out[1].Err = &connectors.Error{Kind: connectors.Permanent, Code: "REQUIRED_FIELD_MISSING", Status: 400, Fields: []string{"LastName"}}
		select {
		case s.refused <- ops[1]:
		default:
		}
	}
	return out
}

// The dead letter of a record whose second op the CRM refused says so:
// op 2, its action, key field and mapping.
func TestDeadReasonNamesTheRefusedOp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoint.db")
	l, err := checkpoint.Open(path, checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	set, err := mappings.Load([]string{filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud")}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	sink := refuseSecond{refused: make(chan connectors.Op, 1)}
	rec, _ := runUntilDead(t, l, set, sink, 1, adt("A01", "OPNO42", "DOE", "JANE"))
	op := <-sink.refused
	want := "crm permanent error REQUIRED_FIELD_MISSING (HTTP 400) on " + op.Object + " (op 2: " + op.Action + " by " + op.KeyField + ", mapping " + op.Mapping + "); fields: LastName"
	if rec.Reason != want {
		t.Errorf("reason\n %q\nwant\n %q", rec.Reason, want)
	}
	if strings.Contains(rec.Reason, "OPNO42") {
		t.Errorf("the reason holds the patient id: %q", rec.Reason)
	}
}

// runUntilDead runs a pipeline over l with sink (batches of batch), appends
// the HL7 message msg and returns its record once it is dead, and stop,
// which stops the pipeline and closes l (also when the test ends).
func runUntilDead(t *testing.T, l *checkpoint.Log, set *mappings.Set, sink connectors.Sink, batch int, msg string) (*checkpoint.Record, func()) {
	t.Helper()
	p := New(Options{Log: l, Mappings: func() *mappings.Set { return set }, Sink: sink,
		BatchSize: batch, Linger: -1, Poll: 10 * time.Millisecond, BackoffMin: 20 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = p.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-stopped; l.Close() }) }
	t.Cleanup(stop)
	m, err := hl7.Parse([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, checkpoint.Entry{Key: ehr.RecordKey("ehr", m.Header()), Source: "ehr", Kind: checkpoint.KindHL7v2, Type: "ADT^A01",
		Hash: ehr.ContentHash(m, nil), Lane: ehr.LaneKey(m), Payload: []byte(msg), Ack: []byte("ack")}); err != nil {
		t.Fatal(err)
	}
	p.Notify()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if dead, _ := l.List(checkpoint.Dead, 0, 10); len(dead) > 0 {
			return dead[0], stop
		}
		if time.Now().After(deadline) {
			t.Fatal("the record never died")
		}
	}
}

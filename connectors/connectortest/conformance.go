// Package connectortest is the conformance suite every CRM sink passes:
// idempotent re-apply, partial batch failure, references between ops,
// throttling, ambiguous commits, and the update and delete semantics. A
// connector's test supplies a Target on a fresh CRM (its sandbox) and
// calls Run.
package connectortest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// Target is a sink on a fresh, empty CRM, and what the suite needs to see
// and disturb that CRM.
type Target struct {
	Sink connectors.Sink
	// Records returns an object's records, fields by name.
	Records func(object string) []map[string]any
	// Throttle makes the CRM refuse requests for its allocation for d.
	Throttle func(d time.Duration)
	// DropAnswers makes the CRM apply writes and cut the connection
	// before answering, with probability ratio (0 stops it).
	DropAnswers func(ratio float64)
	// Unavailable makes the next n requests fail with 503.
	Unavailable func(n int)

	// The CRM's names: the patient object and its key field, the
	// encounter object, its key field and the field that references the
	// patient (as a mapping writes it, e.g. PatientId), a text field of
	// the patient the suite writes, and how to read a reference field's
	// stored value (the referenced record's id).
	Patient, PatientKey, PatientText        string
	Encounter, EncounterKey, EncounterToPat string
	// EncounterFields are further fields the CRM requires of a new
	// encounter (Health Cloud: ClinicalEncounter.Category).
	EncounterFields []mappings.Field
	// Invalid returns an op the CRM refuses permanently (a patient
	// without a required field, say).
	Invalid func(key string) connectors.Op
	// IDOf returns a record's id as references store it.
	IDOf func(rec map[string]any) string
}

func (tg Target) patient(key, text string) connectors.Op {
	return connectors.Op{Mapping: "conformance", Object: tg.Patient, Action: mappings.Upsert, KeyField: tg.PatientKey, Key: key,
		Fields: []mappings.Field{{Name: tg.PatientText, Value: mappings.Str(text)}}}
}

func (tg Target) encounter(key, patientKey string) connectors.Op {
	return connectors.Op{Mapping: "conformance", Object: tg.Encounter, Action: mappings.Upsert, KeyField: tg.EncounterKey, Key: key,
		Fields: append([]mappings.Field{{Name: tg.EncounterToPat, Value: mappings.Value{Kind: mappings.Ref,
			Ref: &mappings.Reference{Object: tg.Patient, KeyField: tg.PatientKey, Key: patientKey}}}}, tg.EncounterFields...)}
}

func (tg Target) find(object, keyField, key string) []map[string]any {
	var out []map[string]any
	for _, r := range tg.Records(object) {
		if fmt.Sprint(r[keyField]) == key {
			out = append(out, r)
		}
	}
	return out
}

func mustSucceed(t *testing.T, what string, res []connectors.Result) {
	t.Helper()
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("%s: op %d: %v", what, i, r.Err)
		}
	}
}

// Run runs the suite; newTarget makes a target on a fresh CRM.
func Run(t *testing.T, newTarget func(t *testing.T) Target) {
	ctx := context.Background()
	t.Run("IdempotentReapply", func(t *testing.T) {
		tg := newTarget(t)
		ops := []connectors.Op{tg.patient("C-1", "one"), tg.encounter("E-1", "C-1"), tg.patient("C-2", "two")}
		mustSucceed(t, "first apply", tg.Sink.Apply(ctx, ops))
		first := tg.Sink.Apply(ctx, ops)
		mustSucceed(t, "re-apply", first)
		if n, m := len(tg.Records(tg.Patient)), len(tg.Records(tg.Encounter)); n != 2 || m != 1 {
			t.Errorf("after re-applying: %d patients, %d encounters; want 2 and 1", n, m)
		}
	})
	t.Run("LaterOpWins", func(t *testing.T) {
		tg := newTarget(t)
		mustSucceed(t, "apply", tg.Sink.Apply(ctx, []connectors.Op{tg.patient("C-1", "old"), tg.patient("C-1", "new")}))
		ps := tg.find(tg.Patient, tg.PatientKey, "C-1")
		if len(ps) != 1 || ps[0][tg.PatientText] != "new" {
			t.Errorf("patient %v, want one record holding the later value", ps)
		}
	})
	t.Run("PartialBatchFailure", func(t *testing.T) {
		tg := newTarget(t)
		res := tg.Sink.Apply(ctx, []connectors.Op{tg.patient("C-1", "ok"), tg.Invalid("C-BAD"), tg.patient("C-2", "ok")})
		if res[0].Err != nil || res[2].Err != nil || connectors.KindOf(res[1].Err) != connectors.Permanent {
			t.Errorf("results %v / %v / %v: want success, permanent, success", res[0].Err, res[1].Err, res[2].Err)
		}
		if n := len(tg.Records(tg.Patient)); n != 2 {
			t.Errorf("%d patients, want the 2 valid ones", n)
		}
	})
	t.Run("References", func(t *testing.T) {
		tg := newTarget(t)
		res := tg.Sink.Apply(ctx, []connectors.Op{tg.encounter("E-1", "C-1"), tg.patient("C-1", "p")})
		mustSucceed(t, "apply", res)
		p := tg.find(tg.Patient, tg.PatientKey, "C-1")
		e := tg.find(tg.Encounter, tg.EncounterKey, "E-1")
		if len(p) != 1 || len(e) != 1 || tg.IDOf(p[0]) == "" || fmt.Sprint(e[0][tg.EncounterToPat]) != tg.IDOf(p[0]) {
			t.Errorf("encounter %v does not point at patient %v", e, p)
		}
	})
	t.Run("FailedReferenceKeepsItsKind", func(t *testing.T) {
		tg := newTarget(t)
		bad := tg.Invalid("C-1")
		res := tg.Sink.Apply(ctx, []connectors.Op{bad, tg.encounter("E-1", "C-1")})
		if connectors.KindOf(res[0].Err) != connectors.Permanent || res[1].Err == nil || res[1].Err.Error() != res[0].Err.Error() {
			t.Errorf("results %v / %v: the encounter must fail as its patient did", res[0].Err, res[1].Err)
		}
	})
	t.Run("Throttling", func(t *testing.T) {
		tg := newTarget(t)
		mustSucceed(t, "warm up", tg.Sink.Apply(ctx, []connectors.Op{tg.patient("C-0", "x")}))
		tg.Throttle(300 * time.Millisecond)
		res := tg.Sink.Apply(ctx, []connectors.Op{tg.patient("C-1", "x")})
		if connectors.KindOf(res[0].Err) != connectors.Throttled {
			t.Fatalf("during the window: %v, want a throttled error", res[0].Err)
		}
		time.Sleep(400 * time.Millisecond)
		mustSucceed(t, "after the window", tg.Sink.Apply(ctx, []connectors.Op{tg.patient("C-1", "x")}))
	})
	t.Run("Unavailable", func(t *testing.T) {
		tg := newTarget(t)
		mustSucceed(t, "warm up", tg.Sink.Apply(ctx, []connectors.Op{tg.patient("C-0", "x")}))
		tg.Unavailable(1000)
		res := tg.Sink.Apply(ctx, []connectors.Op{tg.patient("C-1", "x")})
		if connectors.KindOf(res[0].Err) != connectors.Transient {
			t.Errorf("CRM down: %v, want a transient error", res[0].Err)
		}
	})
	t.Run("AmbiguousCommit", func(t *testing.T) {
		tg := newTarget(t)
		mustSucceed(t, "warm up", tg.Sink.Apply(ctx, []connectors.Op{tg.patient("C-0", "x")}))
		tg.DropAnswers(1)
		var ops []connectors.Op
		for i := range 5 {
			ops = append(ops, tg.patient(fmt.Sprint("C-", i+1), "x"), tg.encounter(fmt.Sprint("E-", i+1), fmt.Sprint("C-", i+1)))
		}
		for i, r := range tg.Sink.Apply(ctx, ops) {
			if r.Err != nil && connectors.KindOf(r.Err) != connectors.Transient {
				t.Errorf("unanswered write, op %d: %v, want transient", i, r.Err)
			}
		}
		tg.DropAnswers(0)
		mustSucceed(t, "retry", tg.Sink.Apply(ctx, ops))
		if n, m := len(tg.Records(tg.Patient)), len(tg.Records(tg.Encounter)); n != 6 || m != 5 {
			t.Errorf("%d patients and %d encounters after the retry, want 6 and 5: a retry must not duplicate", n, m)
		}
	})
	t.Run("UpdateNeverCreatesDeleteTolerates", func(t *testing.T) {
		tg := newTarget(t)
		upd := tg.patient("C-GONE", "x")
		upd.Action = mappings.Update
		del := tg.patient("C-ALSO-GONE", "x")
		del.Action, del.Fields = mappings.Delete, nil
		mustSucceed(t, "update and delete of missing records", tg.Sink.Apply(ctx, []connectors.Op{upd, del}))
		if n := len(tg.Records(tg.Patient)); n != 0 {
			t.Errorf("an update created %d records", n)
		}
		mustSucceed(t, "create", tg.Sink.Apply(ctx, []connectors.Op{tg.patient("C-1", "before")}))
		upd = tg.patient("C-1", "after")
		upd.Action = mappings.Update
		mustSucceed(t, "update", tg.Sink.Apply(ctx, []connectors.Op{upd}))
		if p := tg.find(tg.Patient, tg.PatientKey, "C-1"); len(p) != 1 || p[0][tg.PatientText] != "after" {
			t.Errorf("after update: %v", p)
		}
		del = tg.patient("C-1", "")
		del.Action, del.Fields = mappings.Delete, nil
		mustSucceed(t, "delete", tg.Sink.Apply(ctx, []connectors.Op{del}))
		if n := len(tg.Records(tg.Patient)); n != 0 {
			t.Errorf("%d patients after delete", n)
		}
	})
}

package checkpoint

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestStateNamesRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range States {
		name := s.String()
		if strings.HasPrefix(name, "state(") || seen[name] {
			t.Errorf("state %d has no name of its own: %q", s, name)
		}
		seen[name] = true
		if got, err := ParseState(name); err != nil || got != s {
			t.Errorf("ParseState(%q) = %v, %v", name, got, err)
		}
	}
	if got, err := ParseState("skipped"); err != nil || got != Skipped || Skipped.String() != "skipped" {
		t.Errorf("skipped: %v %v", got, err)
	}
	if _, err := ParseState("ignored"); err == nil || !strings.Contains(err.Error(), "skipped") {
		t.Errorf("an unknown state's error should list skipped: %v", err)
	}
	for s, want := range map[State]bool{Received: false, InProgress: false, Retrying: false, Done: true, Dead: true, Skipped: true} {
		if s.Finished() != want {
			t.Errorf("%s.Finished() = %v", s, !want)
		}
	}
}

// A skipped record leaves its lane like a done one: the lane's next record
// is offered at once. It keeps its reason, is counted apart from done,
// listed under its own state and never claimed again.
func TestSettleSkippedLeavesLane(t *testing.T) {
	clk := newClock()
	l, _ := openTest(t, Options{Now: clk.Now})
	mustAppend(t, l, entry("k1", "A", "vxu"))
	mustAppend(t, l, entry("k2", "A", "adt"))
	rs, err := l.Claim(10)
	if err != nil || len(rs) != 1 || rs[0].ID != 1 {
		t.Fatalf("claim = %v, %v", rs, err)
	}
	clk.Add(time.Second)
	if err := l.Settle([]Settlement{{ID: 1, State: Skipped, Reason: "no mapping for VXU^V04"}}); err != nil {
		t.Fatal(err)
	}
	rs, err = l.Claim(10)
	if err != nil || len(rs) != 1 || rs[0].ID != 2 {
		t.Fatalf("the lane's next record after a skip: %v, %v", rs, err)
	}
	r, err := l.Get(1)
	if err != nil || r.State != Skipped || r.Reason != "no mapping for VXU^V04" || r.Attempts != 0 || !r.DoneAt.Equal(clk.Now()) || r.Warned() {
		t.Fatalf("skipped record = %+v, %v", r, err)
	}
	st, _ := l.Stats()
	if st.States[Skipped] != 1 || st.States[Done] != 0 || st.States[InProgress] != 1 || !st.OldestPending.Equal(rs[0].Received) {
		t.Errorf("stats = %+v", st)
	}
	if got, _ := l.List(Skipped, 0, 10); len(got) != 1 || got[0].ID != 1 {
		t.Errorf("List(skipped) = %v", got)
	}
	if got, _ := l.List(Done, 0, 10); len(got) != 0 {
		t.Errorf("List(done) holds the skipped record: %v", got)
	}
	if err := l.MarkDone(1, nil); !errors.Is(err, ErrTransition) {
		t.Errorf("a skipped record was settled again: %v", err)
	}
	l.MarkDone(2, []string{"x"})
	if rs, _ := l.Claim(10); len(rs) != 0 {
		t.Errorf("a skipped record was claimed again: %v", rs)
	}
}

// An admin requeues skipped records (after adding a mapping): one by id,
// or all matching a filter; they run ahead of newer records of their
// lane. One whose payload retention dropped cannot be: nothing is left to
// map.
func TestRequeueSkipped(t *testing.T) {
	clk := newClock()
	l, _ := openTest(t, Options{Now: clk.Now})
	for i, lane := range []string{"A", "B", "C", "A"} {
		e := entry(fmt.Sprint("k", i+1), lane, fmt.Sprint("body ", i+1))
		if i < 3 {
			e.Type = "VXU^V04"
		}
		mustAppend(t, l, e)
	}
	rs, _ := l.Claim(10)
	if len(rs) != 3 {
		t.Fatalf("claim = %v", rs)
	}
	var ss []Settlement
	for _, r := range rs {
		ss = append(ss, Settlement{ID: r.ID, State: Skipped, Reason: "no mapping for VXU^V04"})
	}
	if err := l.Settle(ss); err != nil {
		t.Fatal(err)
	}
	// Record 4 (lane A) is the head now; requeuing 1 puts it back in front.
	if err := l.Requeue(1); err != nil {
		t.Fatal(err)
	}
	r, _ := l.Get(1)
	if r.State != Received || r.Reason != "" || !r.DoneAt.IsZero() {
		t.Errorf("requeued record = %+v", r)
	}
	rs, _ = l.Claim(10)
	if len(rs) != 1 || rs[0].ID != 1 || string(rs[0].Payload) != "body 1" {
		t.Fatalf("claim after requeue = %v", rs)
	}
	l.MarkDone(1, nil)
	if err := l.Requeue(1); !errors.Is(err, ErrTransition) {
		t.Errorf("requeue of a done record: %v", err)
	}

	// Retention drops record 3's payload; the filter leaves record 2 out
	// the first time.
	clk.Add(8 * 24 * time.Hour)
	rs, _ = l.Claim(10)
	l.MarkDone(rs[0].ID, nil)
	updateIn(t, l, func(tx *bolt.Tx) error {
		r, _, err := getRecord(tx, 3)
		if err != nil {
			return err
		}
		r.PayloadDropped = true
		return putRecord(tx, r, nil)
	})
	if err := l.Requeue(3); !errors.Is(err, ErrPayloadGone) {
		t.Errorf("requeue of a skipped record without payload: %v", err)
	}
	n, gone, err := l.RequeueSkipped(func(r *Record) bool { return r.ID == 99 })
	if err != nil || n != 0 || gone != 0 {
		t.Errorf("RequeueSkipped(no match) = %d, %d, %v", n, gone, err)
	}
	n, gone, err = l.RequeueSkipped(func(r *Record) bool { return r.Type == "VXU^V04" })
	if err != nil || n != 1 || gone != 1 {
		t.Errorf("RequeueSkipped(VXU) = %d, %d, %v", n, gone, err)
	}
	rs, _ = l.Claim(10)
	if len(rs) != 1 || rs[0].ID != 2 {
		t.Errorf("claim after bulk requeue = %v", rs)
	}
	st, _ := l.Stats()
	if st.States[Skipped] != 1 || st.States[InProgress] != 1 || st.States[Done] != 2 {
		t.Errorf("stats = %v", st.States)
	}
}

// updateIn changes an open log in one transaction (test set-up only).
func updateIn(t *testing.T, l *Log, fn func(tx *bolt.Tx) error) {
	t.Helper()
	if err := l.update(fn); err != nil {
		t.Fatal(err)
	}
}

// skipOneWarnOne appends two messages to an empty log and settles record
// 1 skipped ("vxu", lane A) and record 2 done with a warning ("adt", B).
func skipOneWarnOne(t *testing.T, l *Log) {
	t.Helper()
	mustAppend(t, l, entry("vxu", "A", "vxu payload"))
	mustAppend(t, l, entry("adt", "B", "adt payload"))
	l.Claim(10)
	if err := l.Settle([]Settlement{{ID: 1, State: Skipped, Reason: "no mapping for VXU^V04"},
		{ID: 2, State: Done, Warnings: []string{"m/op.Field: not a valid timestamp"}}}); err != nil {
		t.Fatal(err)
	}
}

// Retention treats skipped records as done: their payloads go after
// PayloadRetention, the records and keys after DedupeWindow, with their
// counter; a retransmit within the window is still a duplicate.
func TestRetentionSweepsSkipped(t *testing.T) {
	clk := newClock()
	l, _ := openTest(t, Options{Now: clk.Now})
	skipOneWarnOne(t, l)
	clk.Add(8 * 24 * time.Hour)
	res, err := l.Sweep()
	if err != nil || res.PayloadsDropped != 2 || res.RecordsDeleted != 0 {
		t.Fatalf("sweep after 8 days = %+v, %v", res, err)
	}
	if r, _ := l.Reveal(1); !r.PayloadDropped || len(r.Payload) != 0 || r.State != Skipped {
		t.Errorf("skipped payload not dropped: %+v", r)
	}
	if res, _ := l.Sweep(); res.PayloadsDropped != 0 {
		t.Errorf("second sweep dropped %d again", res.PayloadsDropped)
	}
	if res := mustAppend(t, l, entry("vxu", "A", "vxu payload")); res.Outcome != Duplicate {
		t.Errorf("retransmit of a skipped message: %v, want duplicate", res.Outcome)
	}
	clk.Add(23 * 24 * time.Hour)
	res, err = l.Sweep()
	if err != nil || res.RecordsDeleted != 2 {
		t.Fatalf("sweep after 31 days = %+v, %v", res, err)
	}
	st, _ := l.Stats()
	if st.States[Skipped] != 0 || st.States[Done] != 0 {
		t.Errorf("counters after the sweep: %+v", st)
	}
	if res := mustAppend(t, l, entry("vxu", "A", "vxu payload")); res.Outcome != Appended {
		t.Errorf("after the dedupe window the key is new again: %v", res.Outcome)
	}
}

// A record done with warnings keeps them as its reason, bounded, and is
// Warned; plain done records are not.
func TestDoneWithWarnings(t *testing.T) {
	l, _ := openTest(t, Options{})
	for i := range 3 {
		mustAppend(t, l, entry(fmt.Sprint("k", i), fmt.Sprint("lane", i), "x"))
	}
	l.Claim(10)
	many := make([]string, 100)
	for i := range many {
		many[i] = fmt.Sprintf("adt/patient.BirthDate__c: not a valid HL7 date (%d)", i)
	}
	if err := l.Settle([]Settlement{
		{ID: 1, State: Done, Warnings: []string{"adt/visit.AdmitDate__c: not a valid timestamp", "adt/visit.DischargeDate__c: not a valid timestamp"}},
		{ID: 2, State: Done, Targets: []string{"001"}},
		{ID: 3, State: Done, Warnings: many},
	}); err != nil {
		t.Fatal(err)
	}
	r1, _ := l.Get(1)
	if want := "mapped with warnings: adt/visit.AdmitDate__c: not a valid timestamp; adt/visit.DischargeDate__c: not a valid timestamp"; r1.Reason != want || !r1.Warned() {
		t.Errorf("reason %q, want %q", r1.Reason, want)
	}
	if r2, _ := l.Get(2); r2.Reason != "" || r2.Warned() {
		t.Errorf("a plain done record: %+v", r2)
	}
	r3, _ := l.Get(3)
	if len(r3.Reason) > maxWarningsReason || !r3.Warned() || !strings.HasSuffix(r3.Reason, "more)") {
		t.Errorf("100 warnings: %d bytes: %q", len(r3.Reason), r3.Reason)
	}
	st, _ := l.Stats()
	if st.States[Done] != 3 {
		t.Errorf("stats = %+v", st)
	}
}

func TestWarningsReasonBounds(t *testing.T) {
	if WarningsReason(nil) != "" {
		t.Error("no warnings, a reason")
	}
	long := strings.Repeat("é", 400) // 800 bytes
	for _, ws := range [][]string{{long}, {long, "b"}, {"a", long}, {"a", "b", long, "c"}} {
		got := WarningsReason(ws)
		if len(got) > maxWarningsReason || !strings.HasPrefix(got, WarningsPrefix) || !utf8Valid(got) {
			t.Errorf("%d warnings: %d bytes, valid %v: %q", len(ws), len(got), utf8Valid(got), got)
		}
		if len(ws) > 1 && !strings.Contains(got, "more)") {
			t.Errorf("%d warnings: no note of those left out: %q", len(ws), got)
		}
	}
	if got := WarningsReason([]string{"a", long}); got != WarningsPrefix+"a (and 1 more)" {
		t.Errorf("got %q", got)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// log check knows the skipped state: a clean log with skipped records
// checks clean, and a skipped record missing from its index, a stale index
// entry are reported.
func TestCheckSkipped(t *testing.T) {
	clk := newClock()
	l, path := openTest(t, Options{Now: clk.Now})
	skipOneWarnOne(t, l)
	if problems, err := l.Check(); err != nil || len(problems) > 0 {
		t.Fatalf("clean log: %v %q", err, problems)
	}
	l.Close()
	r1 := func(tx *bolt.Tx) *Record {
		r, _, err := getRecord(tx, 1)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	updateClosed(t, path, func(tx *bolt.Tx) error {
		r := r1(tx)
		if err := tx.Bucket(bSkipped).Delete(timeKey(r.DoneAt, 1)); err != nil {
			return err
		}
		if err := tx.Bucket(bSkipped).Put(timeKey(r.DoneAt.Add(time.Second), 2), nil); err != nil {
			return err
		}
		return nil
	})
	ro := reopen(t, path, Options{ReadOnly: true})
	problems, err := ro.Check()
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(problems, "\n")
	for _, want := range []string{"record 1: missing from the skipped index", "skipped index: record 2 is done"} {
		if !strings.Contains(joined, want) {
			t.Errorf("check missed %q:\n%s", want, joined)
		}
	}
	ro.Close()
}

// A log last written by an ehrbridge without the skipped state has no
// skipped index: a read-only open lists, counts and checks it, and a
// writing open adds the index.
func TestLogWithoutSkippedIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := reopen(t, path, Options{})
	mustAppend(t, l, entry("k1", "A", "1"))
	l.Claim(1)
	l.MarkDone(1, nil)
	l.Close()
	updateClosed(t, path, func(tx *bolt.Tx) error { return tx.DeleteBucket(bSkipped) })
	ro := reopen(t, path, Options{ReadOnly: true})
	if problems, err := ro.Check(); err != nil || len(problems) > 0 {
		t.Errorf("check: %v %q", err, problems)
	}
	if rs, err := ro.List(Skipped, 0, 10); err != nil || len(rs) != 0 {
		t.Errorf("List(skipped) = %v, %v", rs, err)
	}
	if st, err := ro.Stats(); err != nil || st.States[Skipped] != 0 || st.States[Done] != 1 {
		t.Errorf("stats = %+v, %v", st, err)
	}
	ro.Close()
	l = reopen(t, path, Options{})
	mustAppend(t, l, entry("k2", "A", "2"))
	l.Claim(1)
	if err := l.Settle([]Settlement{{ID: 2, State: Skipped, Reason: "no mapping for VXU^V04"}}); err != nil {
		t.Fatal(err)
	}
	if n, gone, err := l.RequeueSkipped(nil); err != nil || n != 1 || gone != 0 {
		t.Errorf("RequeueSkipped = %d, %d, %v", n, gone, err)
	}
}

// Requeuing dead records all at once is the skipped records' mechanism:
// batches, and one requeued by someone else meanwhile is left alone, not
// an error that stops the rest.
func TestRequeueAllDeadTakesOthersRequeues(t *testing.T) {
	l, _ := openTest(t, Options{})
	for i := range 3 {
		mustAppend(t, l, entry(fmt.Sprint("k", i), fmt.Sprint("lane", i), "x"))
	}
	l.Claim(10)
	for id := uint64(1); id <= 3; id++ {
		if err := l.MarkDead(id, "bad"); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Requeue(2); err != nil { // an admin, between the listing and the requeue
		t.Fatal(err)
	}
	if n, err := l.requeueIDs(Dead, []uint64{3, 2, 1}, ""); err != nil || n != 2 {
		t.Fatalf("requeueIDs = %d, %v; want 2 requeued, record 2 left alone", n, err)
	}
	if st, _ := l.Stats(); st.States[Dead] != 0 || st.States[Received] != 3 {
		t.Errorf("stats %v", st.States)
	}
	if problems, err := l.Check(); err != nil || len(problems) > 0 {
		t.Errorf("check: %v %q", err, problems)
	}
}

// AllAfter starts after the given id: a listing's next page does not read
// the records before it again.
func TestAllAfter(t *testing.T) {
	l, _ := openTest(t, Options{})
	for i := range 5 {
		mustAppend(t, l, entry(fmt.Sprint("k", i), "A", "x"))
	}
	var ids []uint64
	if err := l.AllAfter(2, func(r *Record) bool { ids = append(ids, r.ID); return len(ids) < 2 }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []uint64{3, 4}) {
		t.Errorf("AllAfter(2) read %v, want [3 4]", ids)
	}
}

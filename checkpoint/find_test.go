package checkpoint

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func ids(rs []*Record) []uint64 {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func mustFind(t *testing.T, l *Log, q Query) Page {
	t.Helper()
	p, err := l.Find(q)
	if err != nil {
		t.Fatalf("Find(%+v): %v", q, err)
	}
	return p
}

func lanesOf(t *testing.T, l *Log, keys ...string) [][16]byte {
	t.Helper()
	ls, err := l.PatientLanes(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// Two patients with the same MRN under different authorities never share
// results, MRN 123 does not find 1234, and a blank key finds nothing.
func TestFindByPatient(t *testing.T) {
	l, _ := openTest(t, Options{})
	mustAppend(t, l, entry("s|A|F|1", "HOSP_A|123", "one"))  // 1
	mustAppend(t, l, entry("s|A|F|2", "HOSP_B|123", "two"))  // 2
	mustAppend(t, l, entry("s|A|F|3", "HOSP_A|1234", "thr")) // 3
	mustAppend(t, l, entry("s|A|F|4", "123^HOSP_A", "fou"))  // 4: connectors/ehr.LaneKey's form
	mustAppend(t, l, entry("s|A|F|5", "HOSP_A|123", "fiv"))  // 5
	cases := []struct {
		keys []string
		want []uint64
	}{
		{[]string{"HOSP_A|123"}, []uint64{5, 1}},
		{[]string{"HOSP_A|123", "123^HOSP_A"}, []uint64{5, 4, 1}},
		{[]string{"HOSP_B|123"}, []uint64{2}},
		{[]string{"HOSP_A|1234"}, []uint64{3}},
		{[]string{"HOSP_A|12"}, nil},
		{[]string{""}, nil},
	}
	search := func(when string) {
		t.Helper()
		for _, c := range cases {
			p := mustFind(t, l, Query{Lanes: lanesOf(t, l, c.keys...)})
			if got := ids(p.Records); !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
				t.Errorf("%s: patient %q: %v, want %v", when, c.keys, got, c.want)
			}
		}
	}
	// Appended, not yet claimed: the records after the lane cursor, read
	// in id order (appending writes no index).
	search("before any claim")
	// Claimed: the patient index, written with the lanes' (and check
	// agrees); the records stay found.
	if _, err := l.Claim(100); err != nil {
		t.Fatal(err)
	}
	search("after a claim")
	if problems, err := l.Check(); err != nil || len(problems) != 0 {
		t.Errorf("check after a claim: %v %v", problems, err)
	}
	// Paged: one record a page, the cursor walking down.
	q := Query{Lanes: lanesOf(t, l, "HOSP_A|123", "123^HOSP_A"), Limit: 1}
	var got []uint64
	for range 5 {
		p := mustFind(t, l, q)
		got = append(got, ids(p.Records)...)
		if p.Next == 0 {
			break
		}
		q.Before = p.Next
	}
	if !slices.Equal(got, []uint64{5, 4, 1}) {
		t.Errorf("paged patient records: %v", got)
	}
}

func TestFindFilters(t *testing.T) {
	clock := newClock()
	l, _ := openTest(t, Options{Now: clock.Now})
	start := clock.Now()
	types := []string{"ADT^A01", "ADT^A08", "ORU^R01", "ADTX^A01"}
	for i := range 40 {
		e := entry(fmt.Sprintf("src|LAB|GEN|%d", i+100), fmt.Sprintf("P%d", i%4), fmt.Sprintf("m%d", i))
		e.Kind, e.Type, e.Received = KindHL7v2, types[i%4], clock.Now()
		if i%10 == 9 {
			e.Source = "other"
			e.Key = fmt.Sprintf("other|LAB|GEN|%d", i+100)
		}
		mustAppend(t, l, e)
		clock.Add(time.Hour)
	}
	// Records 1..10 claimed: 1-3 dead, 4-6 done, 7 retrying.
	rs, err := l.Claim(10)
	if err != nil || len(rs) != 4 {
		t.Fatalf("claim: %d %v", len(rs), err) // one per lane
	}
	if err := l.Settle([]Settlement{{ID: 1, State: Dead, Reason: "r"}, {ID: 2, State: Dead, Reason: "r"},
		{ID: 3, State: Done}, {ID: 4, State: Retrying, RetryAt: clock.Now().Add(time.Hour), Reason: "t"}}); err != nil {
		t.Fatal(err)
	}
	check := func(name string, q Query, want []uint64) {
		t.Helper()
		p := mustFind(t, l, q)
		if got := ids(p.Records); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	check("dead", Query{States: []State{Dead}}, []uint64{2, 1})
	check("retrying", Query{States: []State{Retrying}}, []uint64{4})
	check("done", Query{States: []State{Done}}, []uint64{3})
	check("dead or retrying", Query{States: []State{Dead, Retrying}}, []uint64{4, 2, 1})
	check("received, newest", Query{States: []State{Received}, Limit: 2}, []uint64{40, 39})
	check("type exact", Query{Type: "ADT^A08", Limit: 3}, []uint64{38, 34, 30})
	check("type prefix", Query{Type: "ADT", Limit: 4}, []uint64{38, 37, 34, 33}) // not ADTX
	check("source", Query{Source: "other"}, []uint64{40, 30, 20, 10})
	check("control id", Query{ControlID: "105"}, []uint64{6})
	check("control id with sender", Query{ControlID: "LAB|GEN|105"}, []uint64{6})
	check("control id other sender", Query{ControlID: "LAB|XXX|105"}, nil)
	check("control id prefix is not a match", Query{ControlID: "10"}, nil)
	check("control id and source", Query{ControlID: "109", Source: "other"}, []uint64{10})
	check("time range", Query{From: start.Add(5 * time.Hour), To: start.Add(8 * time.Hour)}, []uint64{8, 7, 6})
	check("time range and type", Query{From: start.Add(5 * time.Hour), To: start.Add(20 * time.Hour), Type: "ORU^R01"},
		[]uint64{19, 15, 11, 7})
	check("rare combination", Query{States: []State{Dead}, Type: "ADT^A08"}, []uint64{2})

	// A bound on the records read: a partial page and a cursor to go on.
	p := mustFind(t, l, Query{Source: "other", MaxExamined: 5})
	if !p.Partial || p.Next != 36 || len(p.Records) != 1 || p.Examined != 5 {
		t.Errorf("bounded: %+v", p)
	}
	p = mustFind(t, l, Query{Source: "other", MaxExamined: 5, Before: p.Next})
	if !p.Partial || p.Next != 31 || len(p.Records) != 0 {
		t.Errorf("bounded, next: %+v", p)
	}
	// Full pages carry a cursor only when more may follow.
	if p := mustFind(t, l, Query{Source: "other", Limit: 5}); p.Next != 0 || p.Partial || len(p.Records) != 4 {
		t.Errorf("last page: %+v", p)
	}
	if p := mustFind(t, l, Query{Source: "other", Limit: 3}); p.Next != 20 || p.Partial {
		t.Errorf("full page: %+v", p)
	}
}

// A log of schema 3 (no patient index, no history) is migrated at its
// first writable open: its records are found by patient, and log check
// (at cleanup) verifies the index. A read-only open before the migration
// finds them by reading the records.
func TestPatientIndexMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	quiet := slog.New(slog.DiscardHandler)
	l := reopen(t, path, Options{Logger: quiet})
	for i := range 6 {
		mustAppend(t, l, entry(fmt.Sprintf("k%d", i), fmt.Sprintf("P%d", i%2), "x"))
	}
	lanes := lanesOf(t, l, "P1")
	l.Close()
	updateClosed(t, path, func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bPatients, bHistory} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bMeta).Put(metaSchema, itob(3))
	})
	ro, err := Open(path, Options{ReadOnly: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if p := mustFind(t, ro, Query{Lanes: lanes}); !slices.Equal(ids(p.Records), []uint64{6, 4, 2}) {
		t.Errorf("schema 3, read-only: %v", ids(p.Records))
	}
	if problems, err := ro.Check(); err != nil || len(problems) > 0 {
		t.Errorf("schema 3 log check: %v %v", problems, err)
	}
	ro.Close()
	l = reopen(t, path, Options{Logger: quiet})
	if st, _ := l.Stats(); st.Schema != 4 {
		t.Errorf("schema after migration %d", st.Schema)
	}
	if p := mustFind(t, l, Query{Lanes: lanes}); !slices.Equal(ids(p.Records), []uint64{6, 4, 2}) {
		t.Errorf("migrated: %v", ids(p.Records))
	}
	// Damage is found: an index entry for a record that is gone.
	l.Close()
	updateClosed(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bPatients).Put(patientKey(lanes[0], 99), nil)
	})
	l = reopen(t, path, Options{Logger: quiet})
	problems, err := l.Check()
	if err != nil || !slices.Contains(problems, "patient index: record 99 does not exist") {
		t.Errorf("check of a damaged index: %q %v", problems, err)
	}
	l.Close()
	updateClosed(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bPatients).Delete(patientKey(lanes[0], 99)) })
}

// Retention deletes a record's index entry and history with it; a dropped
// payload leaves both, and Find still answers from the metadata.
func TestRetentionAndFind(t *testing.T) {
	clock := newClock()
	l, _ := openTest(t, Options{Now: clock.Now, PayloadRetention: time.Hour, DedupeWindow: 48 * time.Hour})
	mustAppend(t, l, entry("k1", "P", "one"))
	clock.Add(time.Minute)
	mustAppend(t, l, entry("k2", "P", "two"))
	rs, _ := l.Claim(1)
	if err := l.MarkDone(rs[0].ID, []string{"001"}); err != nil {
		t.Fatal(err)
	}
	clock.Add(2 * time.Hour)
	if res, err := l.Sweep(); err != nil || res.PayloadsDropped != 1 {
		t.Fatalf("sweep: %+v %v", res, err)
	}
	lanes := lanesOf(t, l, "P")
	if p := mustFind(t, l, Query{Lanes: lanes}); !slices.Equal(ids(p.Records), []uint64{2, 1}) || !p.Records[1].PayloadDropped {
		t.Errorf("after the payload went: %v", ids(p.Records))
	}
	if h, err := l.History(1); err != nil || len(h) != 1 || h[0].Targets[0] != "001" {
		t.Errorf("history after the payload went: %+v %v", h, err)
	}
	clock.Add(72 * time.Hour)
	if res, err := l.Sweep(); err != nil || res.RecordsDeleted != 1 {
		t.Fatalf("sweep: %+v %v", res, err)
	}
	if p := mustFind(t, l, Query{Lanes: lanes}); !slices.Equal(ids(p.Records), []uint64{2}) {
		t.Errorf("after the record went: %v", ids(p.Records))
	}
	if _, err := l.History(1); !errors.Is(err, ErrNotFound) {
		t.Errorf("history of a deleted record: %v", err)
	}
}

// Every settlement and admin action lands in the record's history, with
// the CRM's code, the op and object, ids and the actor; the newest
// MaxHistory are kept.
func TestHistory(t *testing.T) {
	clock := newClock()
	l, _ := openTest(t, Options{Now: clock.Now})
	mustAppend(t, l, entry("k1", "P", "one"))
	rs, _ := l.Claim(1)
	retryAt := clock.Now().Add(time.Minute)
	if err := l.Settle([]Settlement{{ID: rs[0].ID, State: Retrying, RetryAt: retryAt, Reason: "crm transient error UNABLE_TO_LOCK_ROW on Contact",
		Code: "UNABLE_TO_LOCK_ROW", Op: 2, Object: "Contact", Action: "upsert by MRN__c", Mapping: "adt"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(1, "alice"); err != nil {
		t.Fatal(err)
	}
	rs, _ = l.Claim(1)
	if len(rs) != 1 {
		t.Fatal("released record not claimable")
	}
	if err := l.Settle([]Settlement{{ID: 1, State: Dead, Reason: "crm permanent error INVALID_FIELD on Contact", Code: "INVALID_FIELD",
		Detail: "the CRM's words: Smith"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.CloseRecord(1, "bob", "duplicate of MRN 42, handled by hand"); err != nil {
		t.Fatal(err)
	}
	r, _ := l.Get(1)
	if r.State != Skipped || r.Reason != "closed by bob" || !r.Closed() {
		t.Errorf("closed record: %s %q", r.State, r.Reason)
	}
	if rv, _ := l.Reveal(1); rv.Detail != "duplicate of MRN 42, handled by hand" {
		t.Errorf("closed detail %q", rv.Detail)
	}
	if err := l.CloseRecord(1, "bob", "again"); !errors.Is(err, ErrTransition) {
		t.Errorf("closing a closed record: %v", err)
	}
	if got, err := l.RequeueSelection("carol", []uint64{1, 7}); err != nil || !slices.Equal(got, []uint64{1}) {
		t.Errorf("requeue selection: %v %v", got, err)
	}
	h, err := l.History(1)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind  EventKind
		state State
		actor string
	}{{EventSettled, Retrying, ""}, {EventHastened, Retrying, "alice"}, {EventSettled, Dead, ""}, {EventClosed, Skipped, "bob"},
		{EventRequeued, Received, "carol"}}
	if len(h) != len(want) {
		t.Fatalf("history: %+v", h)
	}
	for i, w := range want {
		if h[i].Kind != w.kind || h[i].State != w.state || h[i].Actor != w.actor {
			t.Errorf("event %d: %+v, want %+v", i, h[i], w)
		}
	}
	if e := h[0]; e.Code != "UNABLE_TO_LOCK_ROW" || e.Op != 2 || e.Object != "Contact" || e.Action != "upsert by MRN__c" ||
		e.Mapping != "adt" || !e.RetryAt.Equal(retryAt) {
		t.Errorf("settlement event: %+v", e)
	}
	for _, e := range h {
		if e.Reason == "the CRM's words: Smith" {
			t.Error("the detail reached the history")
		}
	}
	// Capped.
	for range MaxHistory {
		rs, _ := l.Claim(1)
		if len(rs) != 1 {
			t.Fatal("not claimable")
		}
		if err := l.Settle([]Settlement{{ID: 1, State: Retrying, RetryAt: clock.Now(), Reason: "again"}}); err != nil {
			t.Fatal(err)
		}
	}
	if h, _ := l.History(1); len(h) != MaxHistory || h[0].Kind != EventSettled || h[0].State != Retrying ||
		h[len(h)-1].Reason != "again" {
		t.Errorf("capped history: %d events, first %+v", len(h), h[0])
	}
}

func TestResolveConflict(t *testing.T) {
	ring, _ := NewKeyring(make([]byte, 32))
	l, _ := openTest(t, Options{Keyring: ring})
	mustAppend(t, l, entry("k1", "P", "original"))
	c1 := mustAppend(t, l, entry("k1", "P", "changed once"))
	c2 := mustAppend(t, l, entry("k1", "P", "changed twice, accepted"))
	if c1.Outcome != Conflict || c2.Outcome != Conflict {
		t.Fatal("no conflicts")
	}
	rs, _ := l.Claim(1)
	if err := l.ResolveConflict(c2.ConflictID, "alice", true); !errors.Is(err, ErrTransition) {
		t.Errorf("accept while in progress: %v", err)
	}
	if err := l.MarkDead(rs[0].ID, "bad"); err != nil {
		t.Fatal(err)
	}
	if err := l.ResolveConflict(c1.ConflictID, "alice", false); err != nil {
		t.Fatal(err)
	}
	if err := l.ResolveConflict(c1.ConflictID, "alice", false); !errors.Is(err, ErrNotFound) {
		t.Errorf("resolved twice: %v", err)
	}
	if err := l.ResolveConflict(c2.ConflictID, "bob", true); err != nil {
		t.Fatal(err)
	}
	if st, _ := l.Stats(); st.Conflicts != 0 || st.States[Received] != 1 || st.States[Dead] != 0 {
		t.Errorf("stats after resolving: %+v", st)
	}
	rs, err := l.Claim(1)
	if err != nil || len(rs) != 1 || string(rs[0].Payload) != "changed twice, accepted" {
		t.Fatalf("claimed after accept: %v %v", rs, err)
	}
	if err := l.MarkDone(rs[0].ID, nil); err != nil {
		t.Fatal(err)
	}
	// The accepted message's retransmit is a duplicate; the original's is
	// now a conflict.
	if r := mustAppend(t, l, entry("k1", "P", "changed twice, accepted")); r.Outcome != Duplicate {
		t.Errorf("retransmit of the accepted message: %v", r.Outcome)
	}
	h, _ := l.History(1)
	kinds := []EventKind{}
	for _, e := range h {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Equal(kinds, []EventKind{EventSettled, EventConflictKept, EventConflictAccepted, EventSettled}) ||
		h[2].Actor != "bob" || h[2].Conflict != c2.ConflictID {
		t.Errorf("history: %+v", h)
	}
}

func TestReleaseNeedsAWaitingRecord(t *testing.T) {
	l, _ := openTest(t, Options{})
	mustAppend(t, l, Entry{Key: "k", Source: "s", Hash: sha256.Sum256([]byte("x")), Lane: "P", Payload: []byte("x")})
	if err := l.Release(1, "alice"); !errors.Is(err, ErrTransition) {
		t.Errorf("release of a received record: %v", err)
	}
	if err := l.Release(9, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("release of no record: %v", err)
	}
	if err := l.CloseRecord(1, "", "x"); err == nil {
		t.Error("close without an actor")
	}
}

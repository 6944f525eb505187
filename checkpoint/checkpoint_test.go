package checkpoint

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ehrbridge/ehrbridge/internal/testclock"
)

func newClock() *testclock.Clock { return testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// openTest opens a log in a temp dir and, when the test ends, closes it
// and verifies the file and every invariant.
func openTest(t *testing.T, opts Options) (*Log, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	l := reopen(t, path, opts)
	return l, path
}

func reopen(t *testing.T, path string, opts Options) *Log {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if l.closed {
			return
		}
		if problems, err := l.Check(); err != nil || len(problems) > 0 {
			t.Errorf("log check: %v %q", err, problems)
		}
		l.Close()
	})
	return l
}

func entry(key, lane, payload string) Entry {
	return Entry{Key: key, Source: "src", Kind: "hl7v2", Type: "ADT^A01", Hash: sha256.Sum256([]byte(payload)),
		Lane: lane, Payload: []byte(payload), Ack: []byte("ACK for " + key)}
}

func mustAppend(t *testing.T, l *Log, e Entry) Result {
	t.Helper()
	r, err := l.Append(context.Background(), e)
	if err != nil {
		t.Fatalf("Append(%s): %v", e.Key, err)
	}
	return r
}

func TestAppendDedupeConflict(t *testing.T) {
	l, _ := openTest(t, Options{})
	r1 := mustAppend(t, l, entry("k1", "p1", "body one"))
	if r1.Outcome != Appended || r1.ID != 1 {
		t.Fatalf("first append = %+v", r1)
	}
	dup := entry("k1", "p1", "body one")
	dup.Ack = []byte("a NEW ack that must not be used")
	r2 := mustAppend(t, l, dup)
	if r2.Outcome != Duplicate || r2.ID != 1 || string(r2.Ack) != "ACK for k1" {
		t.Fatalf("retransmit = %+v, want the original ACK", r2)
	}
	r3 := mustAppend(t, l, entry("k1", "p1", "body CHANGED"))
	if r3.Outcome != Conflict || r3.ID != 1 || r3.ConflictID != 1 {
		t.Fatalf("conflict = %+v", r3)
	}
	st, _ := l.Stats()
	if st.States[Received] != 1 || st.Conflicts != 1 {
		t.Errorf("stats = %+v", st)
	}
	cs, _ := l.Conflicts(0, 10)
	if len(cs) != 1 || cs[0].RecordID != 1 || cs[0].Key != "k1" || cs[0].PayloadLen != len("body CHANGED") {
		t.Errorf("conflicts = %+v", cs)
	}
	_, p, err := l.RevealConflict(1)
	if err != nil || string(p) != "body CHANGED" {
		t.Errorf("RevealConflict = %q, %v", p, err)
	}
	if _, err := l.Append(context.Background(), Entry{}); err == nil {
		t.Error("an empty key must be refused")
	}
}

func TestDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := reopen(t, path, Options{})
	mustAppend(t, l, entry("k1", "p1", "x"))
	l.Close()
	l = reopen(t, path, Options{})
	if r := mustAppend(t, l, entry("k1", "p1", "x")); r.Outcome != Duplicate {
		t.Errorf("after reopen: %v, want duplicate (dedupe survives restarts)", r.Outcome)
	}
	if r := mustAppend(t, l, entry("k2", "p1", "y")); r.ID != 2 {
		t.Errorf("next id = %d, want 2", r.ID)
	}
}

func TestGroupCommitConcurrent(t *testing.T) {
	l, _ := openTest(t, Options{})
	var wg sync.WaitGroup
	results := make(chan Result, 64*20)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				// Every goroutine also races the others on one shared key.
				key := fmt.Sprintf("g%d-%d", g, i)
				if i == 0 {
					key = "shared"
				}
				r, err := l.Append(context.Background(), entry(key, fmt.Sprintf("lane%d", g%7), "same body"))
				if err != nil {
					t.Error(err)
					return
				}
				results <- r
			}
		}()
	}
	wg.Wait()
	close(results)
	ids := map[uint64]bool{}
	appended, dups := 0, 0
	for r := range results {
		switch r.Outcome {
		case Appended:
			appended++
			if ids[r.ID] {
				t.Fatalf("id %d handed out twice", r.ID)
			}
			ids[r.ID] = true
		case Duplicate:
			dups++
		}
	}
	if appended != 64*19+1 || dups != 63 {
		t.Errorf("appended %d duplicates %d, want %d and 63", appended, dups, 64*19+1)
	}
}

func TestLanesOrderAndParallelism(t *testing.T) {
	clk := newClock()
	l, _ := openTest(t, Options{Now: clk.Now})
	for i, lane := range []string{"A", "A", "B", "A", "B", ""} {
		mustAppend(t, l, entry(fmt.Sprintf("k%d", i+1), lane, fmt.Sprintf("body%d", i+1)))
		clk.Add(time.Millisecond)
	}
	claim := func(want ...uint64) []*Record {
		t.Helper()
		rs, err := l.Claim(10)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, r := range rs {
			got = append(got, r.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("Claim = %v, want %v", got, want)
		}
		return rs
	}
	// Heads of A (1), B (3) and the lane-less record (6).
	rs := claim(1, 3, 6)
	if string(rs[0].Payload) != "body1" || rs[0].State != InProgress {
		t.Errorf("claimed record = %+v", rs[0])
	}
	claim() // nothing more until a head finishes
	if err := l.MarkDone(1, []string{"001xx0001"}); err != nil {
		t.Fatal(err)
	}
	claim(2)
	if err := l.MarkRetry(3, clk.Now().Add(time.Minute), "503 from CRM"); err != nil {
		t.Fatal(err)
	}
	claim() // B waits for its retry; record 5 stays behind it
	clk.Add(2 * time.Minute)
	rs = claim(3)
	if rs[0].Attempts != 1 || rs[0].Reason != "503 from CRM" {
		t.Errorf("retried record = %+v", rs[0])
	}
	if err := l.MarkDead(2, "REQUIRED_FIELD_MISSING"); err != nil {
		t.Fatal(err)
	}
	claim(4) // A moves on past the dead record
	for _, id := range []uint64{3, 4, 6} {
		if err := l.MarkDone(id, nil); err != nil {
			t.Fatal(err)
		}
	}
	claim(5)
	if err := l.MarkDone(5, nil); err != nil {
		t.Fatal(err)
	}
	r, _ := l.Get(1)
	if r.State != Done || r.Targets[0] != "001xx0001" || r.DoneAt.IsZero() {
		t.Errorf("done record = %+v", r)
	}
	st, _ := l.Stats()
	if st.States[Done] != 5 || st.States[Dead] != 1 || !st.OldestPending.IsZero() {
		t.Errorf("stats = %+v", st)
	}
}

func TestTransitionsRefused(t *testing.T) {
	l, _ := openTest(t, Options{})
	mustAppend(t, l, entry("k1", "A", "x"))
	for name, err := range map[string]error{
		"done while received":  l.MarkDone(1, nil),
		"retry while received": l.MarkRetry(1, time.Now(), "x"),
		"dead while received":  l.MarkDead(1, "x"),
		"requeue while alive":  l.Requeue(1),
	} {
		if !errors.Is(err, ErrTransition) {
			t.Errorf("%s: %v, want ErrTransition", name, err)
		}
	}
	if _, err := l.Claim(1); err != nil {
		t.Fatal(err)
	}
	if err := l.MarkDone(1, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.MarkDone(1, nil); !errors.Is(err, ErrTransition) {
		t.Errorf("done twice: %v", err)
	}
	if err := l.MarkDone(99, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
}

func TestRequeue(t *testing.T) {
	clk := newClock()
	l, _ := openTest(t, Options{Now: clk.Now})
	mustAppend(t, l, entry("k1", "A", "1"))
	mustAppend(t, l, entry("k2", "A", "2"))
	mustAppend(t, l, entry("k3", "A", "3"))
	l.Claim(10)
	if err := l.MarkDead(1, "bad"); err != nil {
		t.Fatal(err)
	}
	// Record 2 is now the claimable head; requeuing 1 puts it back in front.
	if err := l.Requeue(1); err != nil {
		t.Fatal(err)
	}
	rs, _ := l.Claim(10)
	if len(rs) != 1 || rs[0].ID != 1 || rs[0].Attempts != 0 || rs[0].State != InProgress {
		t.Fatalf("after requeue: %+v", rs)
	}
	if err := l.MarkDead(1, "still bad"); err != nil {
		t.Fatal(err)
	}
	rs, _ = l.Claim(10)
	if len(rs) != 1 || rs[0].ID != 2 {
		t.Fatalf("claim = %+v", rs)
	}
	// Requeue while the lane has a record in progress: it waits its turn,
	// then runs ahead of the newer record 3.
	if n, err := l.RequeueAllDead(); err != nil || n != 1 {
		t.Fatalf("RequeueAllDead = %d, %v", n, err)
	}
	if rs, _ := l.Claim(10); len(rs) != 0 {
		t.Fatalf("claimed %d records while the lane is busy", len(rs))
	}
	l.MarkDone(2, nil)
	rs, _ = l.Claim(10)
	if len(rs) != 1 || rs[0].ID != 1 {
		t.Fatalf("claim after busy lane = %+v", rs)
	}
}

func TestRecoverInProgress(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := reopen(t, path, Options{})
	mustAppend(t, l, entry("k1", "A", "1"))
	mustAppend(t, l, entry("k2", "A", "2"))
	if rs, _ := l.Claim(10); len(rs) != 1 {
		t.Fatal("claim")
	}
	l.Close() // as if the process died with record 1 in progress
	l = reopen(t, path, Options{})
	r, _ := l.Get(1)
	if r.State != Retrying || r.Attempts != 0 || r.Reason != "interrupted by a restart" {
		t.Fatalf("recovered record = %+v", r)
	}
	rs, _ := l.Claim(10)
	if len(rs) != 1 || rs[0].ID != 1 {
		t.Fatalf("claim after restart = %+v", rs)
	}
}

// Attempts are CRM answers (issue 27): one failed answer, then 12 restarts
// each with the record in progress, leave it at one attempt and ready at
// once; before, each restart added an attempt, and the doubling backoff
// parked the record for up to 10 minutes with the CRM healthy.
func TestRestartsAreNotAttempts(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	clock := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	l := reopen(t, path, Options{Now: now})
	mustAppend(t, l, entry("k1", "A", "1"))
	if rs, _ := l.Claim(10); len(rs) != 1 {
		t.Fatal("claim")
	}
	if err := l.MarkRetry(1, clock.Add(time.Second), "503 from the CRM"); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Second)
	for i := 0; i < 12; i++ {
		if rs, _ := l.Claim(10); len(rs) != 1 {
			t.Fatalf("restart %d: record not claimable", i)
		}
		l.Close() // killed with the record in progress
		clock = clock.Add(3 * time.Second)
		l = reopen(t, path, Options{Now: now})
	}
	r, _ := l.Get(1)
	if r.Attempts != 1 || r.State != Retrying || r.ReadyAt.After(clock) {
		t.Fatalf("after 12 restarts: attempts %d, state %s, ready %v (now %v); want 1 attempt, ready now", r.Attempts, r.State, r.ReadyAt, clock)
	}
}

func TestEncryptionAndRotation(t *testing.T) {
	key1, key2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	ring1, _ := NewKeyring(key1)
	path := filepath.Join(t.TempDir(), FileName)
	l := reopen(t, path, Options{Keyring: ring1})
	mustAppend(t, l, entry("k1", "MRN-SECRET-123^^^HOSP", "PID|1||ZZPATIENTNAME"))
	l.Close()
	raw, _ := os.ReadFile(path)
	for _, s := range []string{"ZZPATIENTNAME", "MRN-SECRET-123"} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("the file holds %q in clear", s)
		}
	}
	if _, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler)}); !errors.Is(err, ErrEncrypted) {
		t.Errorf("open without key: %v, want ErrEncrypted", err)
	}
	// Rotate: key2 active, key1 still readable.
	ring21, _ := NewKeyring(key2, key1)
	l = reopen(t, path, Options{Keyring: ring21})
	mustAppend(t, l, entry("k2", "MRN-SECRET-123^^^HOSP", "second"))
	r1, err := l.Reveal(1)
	if err != nil || string(r1.Payload) != "PID|1||ZZPATIENTNAME" {
		t.Fatalf("old payload after rotation: %q, %v", r1.Payload, err)
	}
	rs, _ := l.Claim(10)
	if len(rs) != 1 || rs[0].ID != 1 {
		t.Fatalf("lane kept across rotation: claim = %+v", rs)
	}
	l.Close()
	// Only the new key: the new payload opens, the old one names its key.
	ring2, _ := NewKeyring(key2)
	l = reopen(t, path, Options{Keyring: ring2})
	if r, err := l.Reveal(2); err != nil || string(r.Payload) != "second" {
		t.Errorf("new payload: %v", err)
	}
	if _, err := l.Reveal(1); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("old payload without its key: %v, want ErrUnknownKey", err)
	}
	if _, err := ParseKey("c2hvcnQ="); err == nil {
		t.Error("a short key must be refused")
	}
	if k, err := ParseKey(" AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"); err != nil || !bytes.Equal(k, key1) {
		t.Errorf("ParseKey = %x, %v", k, err)
	}
}

func TestRetention(t *testing.T) {
	clk := newClock()
	l, _ := openTest(t, Options{Now: clk.Now})
	mustAppend(t, l, entry("done", "A", "done payload"))
	mustAppend(t, l, entry("dead", "B", "dead payload"))
	mustAppend(t, l, entry("waiting", "C", "waiting payload"))
	rs, _ := l.Claim(2)
	if len(rs) != 2 {
		t.Fatal("claim")
	}
	l.MarkDone(1, nil)
	l.MarkDead(2, "x")
	mustAppend(t, l, entry("done", "A", "done payload CHANGED")) // conflict entry
	clk.Add(8 * 24 * time.Hour)
	res, err := l.Sweep()
	if err != nil || res.PayloadsDropped != 1 || res.RecordsDeleted != 0 {
		t.Fatalf("sweep after 8 days = %+v, %v", res, err)
	}
	r, _ := l.Reveal(1)
	if !r.PayloadDropped || len(r.Payload) != 0 {
		t.Errorf("payload not dropped: %+v", r)
	}
	if res := mustAppend(t, l, entry("done", "A", "done payload")); res.Outcome != Duplicate {
		t.Errorf("retransmit after payload drop: %v, want duplicate", res.Outcome)
	}
	if res, _ := l.Sweep(); res.PayloadsDropped != 0 {
		t.Errorf("second sweep dropped %d again", res.PayloadsDropped)
	}
	clk.Add(23 * 24 * time.Hour)
	res, err = l.Sweep()
	if err != nil || res.RecordsDeleted != 1 || res.ConflictsPurged != 1 {
		t.Fatalf("sweep after 31 days = %+v, %v", res, err)
	}
	if _, err := l.Get(1); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired record still there: %v", err)
	}
	for _, id := range []uint64{2, 3} {
		if r, err := l.Reveal(id); err != nil || len(r.Payload) == 0 {
			t.Errorf("record %d (dead or waiting) lost by retention: %v", id, err)
		}
	}
	if res := mustAppend(t, l, entry("done", "A", "done payload")); res.Outcome != Appended {
		t.Errorf("after the dedupe window the key is new again: %v", res.Outcome)
	}
}

func TestLockAndCompact(t *testing.T) {
	l, path := openTest(t, Options{})
	start := time.Now()
	if _, err := Open(path, Options{LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Errorf("second open: %v, want ErrLocked", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Error("second open did not fail promptly")
	}
	if _, err := Compact(path); !errors.Is(err, ErrLocked) {
		t.Errorf("compact while open: %v, want ErrLocked", err)
	}
	big := bytes.Repeat([]byte("x"), 20000)
	for i := 0; i < 300; i++ {
		e := entry(fmt.Sprintf("k%d", i), fmt.Sprintf("lane%d", i), string(big)+fmt.Sprint(i))
		mustAppend(t, l, e)
	}
	for {
		rs, _ := l.Claim(100)
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			l.MarkDone(r.ID, nil)
		}
	}
	l.opts.Now = func() time.Time { return time.Now().Add(40 * 24 * time.Hour) }
	if _, err := l.Sweep(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	res, err := Compact(path)
	if err != nil {
		t.Fatal(err)
	}
	if res.After*2 > res.Before {
		t.Errorf("compact: %d → %d bytes, want at least halved", res.Before, res.After)
	}
	l = reopen(t, path, Options{})
	if st, _ := l.Stats(); st.States[Done] != 0 {
		t.Errorf("stats after compact = %+v", st)
	}
	mustAppend(t, l, entry("after", "A", "x"))
}

// A commit that fails leaves nothing behind and fails every append that
// shared it; the next appends succeed.
func TestFailedCommitLeavesNothing(t *testing.T) {
	l, _ := openTest(t, Options{})
	mustAppend(t, l, entry("before", "A", "x"))
	failNext = func(e *Entry) bool { return e.Key == "poison" }
	defer func() { failNext = nil }()
	// Queue several appends so that they share the failing commit.
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for _, k := range []string{"poison", "p2", "p3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := l.Append(context.Background(), entry(k, "B", k))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("the poisoned append succeeded")
	}
	failNext = nil
	st, _ := l.Stats()
	if r, err := l.Get(2); failed == 3 && (err == nil || r != nil) {
		t.Errorf("a failed batch left record 2 behind")
	}
	if st.States[Received] != int64(1+3-failed) {
		t.Errorf("received = %d after %d failures", st.States[Received], failed)
	}
	if r := mustAppend(t, l, entry("poison", "B", "poison")); r.Outcome != Appended {
		t.Errorf("retry after failure: %v, want appended (nothing of the failed attempt remained)", r.Outcome)
	}
}

func TestClosed(t *testing.T) {
	l, _ := openTest(t, Options{})
	l.Close()
	if _, err := l.Append(context.Background(), entry("k", "A", "x")); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
	if _, err := l.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("stats after close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// Settle records a batch of outcomes in one transaction, all or nothing.
func TestSettleBatch(t *testing.T) {
	clk := newClock()
	l, _ := openTest(t, Options{Now: clk.Now})
	for i, lane := range []string{"A", "B", "C", "A"} {
		mustAppend(t, l, entry(fmt.Sprintf("k%d", i+1), lane, "x"))
	}
	rs, err := l.Claim(10)
	if err != nil || len(rs) != 3 {
		t.Fatalf("claim %v %v", rs, err)
	}
	// One invalid settlement (record 4 is not in progress): nothing recorded.
	err = l.Settle([]Settlement{{ID: 1, State: Done}, {ID: 4, State: Done}})
	if !errors.Is(err, ErrTransition) {
		t.Fatalf("invalid batch: %v", err)
	}
	if r, _ := l.Get(1); r.State != InProgress {
		t.Fatalf("record 1 settled by a failed batch: %s", r.State)
	}
	err = l.Settle([]Settlement{
		{ID: 1, State: Done, Targets: []string{"001A"}},
		{ID: 2, State: Retrying, RetryAt: clk.Now().Add(time.Minute), Reason: "SERVER_UNAVAILABLE"},
		{ID: 3, State: Dead, Reason: "REQUIRED_FIELD_MISSING"},
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := l.Stats()
	if st.States[Done] != 1 || st.States[Retrying] != 1 || st.States[Dead] != 1 || st.States[Received] != 1 {
		t.Errorf("states %v", st.States)
	}
	rs, _ = l.Claim(10)
	if len(rs) != 1 || rs[0].ID != 4 {
		t.Errorf("after settling, claim = %v, want record 4 (lane A moved on)", rs)
	}
	if r, _ := l.Get(1); len(r.Targets) != 1 || r.Targets[0] != "001A" {
		t.Errorf("targets %v", r.Targets)
	}
}

// Hasten brings matching retrying records forward, and only those.
func TestHasten(t *testing.T) {
	clk := newClock()
	l, _ := openTest(t, Options{Now: clk.Now})
	mustAppend(t, l, entry("k1", "p1", "one"))
	mustAppend(t, l, entry("k2", "p2", "two"))
	mustAppend(t, l, entry("k3", "p3", "three"))
	recs, err := l.Claim(10)
	if err != nil || len(recs) != 3 {
		t.Fatalf("claim %d %v", len(recs), err)
	}
	later := clk.Now().Add(time.Hour)
	if err := l.Settle([]Settlement{{ID: recs[0].ID, State: Retrying, RetryAt: later, Reason: "held: no MRN"},
		{ID: recs[1].ID, State: Retrying, RetryAt: later, Reason: "CRM unreachable"},
		{ID: recs[2].ID, State: Done}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Claim(10); len(got) != 0 {
		t.Fatalf("claimed %d before their retry time", len(got))
	}
	n, err := l.Hasten(func(r *Record) bool { return strings.HasPrefix(r.Reason, "held:") })
	if err != nil || n != 1 {
		t.Fatalf("Hasten = %d, %v", n, err)
	}
	got, err := l.Claim(10)
	if err != nil || len(got) != 1 || got[0].ID != recs[0].ID || string(got[0].Payload) != "one" {
		t.Fatalf("after Hasten claimed %v %v", got, err)
	}
	if n, _ := l.Hasten(func(*Record) bool { return true }); n != 1 {
		t.Errorf("second Hasten moved %d, want the one other retrying record", n)
	}
}

// setSchema rewrites a closed log's schema version, as an older or newer
// ehrbridge would have left it.
func setSchema(t *testing.T, path string, v uint64) {
	t.Helper()
	updateClosed(t, path, func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if err := meta.Delete(metaWrittenBy); err != nil {
			return err
		}
		return meta.Put(metaSchema, itob(v))
	})
}

// updateClosed changes a closed log's file in one bbolt transaction.
func updateClosed(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// A log of an older schema is migrated when opened for writing, and read
// as it is by a read-only open; a log of a newer schema is refused, with
// a message that says what to do, and left untouched.
func TestSchemaUpgradeAndDowngrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := reopen(t, path, Options{Writer: "ehrbridge 1.0"})
	mustAppend(t, l, entry("k1", "p1", "one"))
	mustAppend(t, l, entry("k2", "p2", "two"))
	l.Close()

	setSchema(t, path, 1)
	ro := reopen(t, path, Options{ReadOnly: true})
	if st, err := ro.Stats(); err != nil || st.Schema != 1 || st.States[Received] != 2 {
		t.Fatalf("read-only open of a schema 1 log: %+v %v", st, err)
	}
	ro.Close()

	l = reopen(t, path, Options{Writer: "ehrbridge 2.0"})
	st, err := l.Stats()
	if err != nil || st.Schema != schemaVersion || st.WrittenBy != "ehrbridge 2.0" || st.States[Received] != 2 {
		t.Fatalf("after migration: %+v %v", st, err)
	}
	if recs, err := l.Claim(10); err != nil || len(recs) != 2 || string(recs[0].Payload) != "one" {
		t.Fatalf("records after migration: %v %v", recs, err)
	}
	l.Close()

	setSchema(t, path, schemaVersion+1)
	for _, ro := range []bool{false, true} {
		_, err := Open(path, Options{ReadOnly: ro, Logger: slog.New(slog.DiscardHandler)})
		if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), fmt.Sprintf("reads up to %d", schemaVersion)) ||
			!strings.Contains(err.Error(), "backup") {
			t.Errorf("read-only %v: newer log: %v", ro, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		if got := btoi(tx.Bucket(bMeta).Get(metaSchema)); got != schemaVersion+1 {
			t.Errorf("a refused newer log was changed: schema %d", got)
		}
		return nil
	})
	db.Close()
}

// A backup taken while appends go on is a consistent log: it opens, checks
// clean, and holds every record appended before it began.
func TestBackupWhileInUse(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, Options{})
	for i := range 200 {
		mustAppend(t, l, entry(fmt.Sprint("k", i), fmt.Sprint("p", i%7), fmt.Sprint("body ", i)))
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 200; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = l.Append(context.Background(), entry(fmt.Sprint("k", i), "busy", "more"))
		}
	}()
	path := filepath.Join(dir, "backup.db")
	n, err := l.BackupFile(path)
	close(stop)
	<-done
	if err != nil || n == 0 {
		t.Fatalf("backup: %d bytes, %v", n, err)
	}
	if _, err := l.BackupFile(path); err == nil {
		t.Error("a backup replaced an existing file")
	}
	b := reopen(t, path, Options{ReadOnly: true})
	st, err := b.Stats()
	if err != nil || st.States[Received] < 200 {
		t.Fatalf("backup stats %+v %v", st, err)
	}
	if problems, err := b.Check(); err != nil || len(problems) > 0 {
		t.Errorf("backup check: %v %v", problems, err)
	}
}

// LaneOfPrefix finds the newest record under a key prefix (not a longer
// id that shares it), and an entry's LaneHash puts it in that lane.
func TestLaneOfPrefix(t *testing.T) {
	l, _ := openTest(t, Options{})
	ctx := context.Background()
	add := func(key, lane string, hash *[16]byte) Result {
		t.Helper()
		res, err := l.Append(ctx, Entry{Key: key, Lane: lane, LaneHash: hash, Hash: sha256.Sum256([]byte(key)), Payload: []byte("x"), Ack: []byte("-")})
		if err != nil || res.Outcome != Appended {
			t.Fatalf("append %s: %+v %v", key, res, err)
		}
		return res
	}
	add("f|Obs/o1/_history/1", "patient-A", nil)
	add("f|Obs/o1/_history/2", "patient-B", nil) // moved to another patient
	add("f|Obs/o10/_history/1", "patient-C", nil)
	lane, ok, err := l.LaneOfPrefix("f|Obs/o1/_history/")
	if err != nil || !ok || lane != l.LaneHash("patient-B") {
		t.Fatalf("LaneOfPrefix: %x %v %v, want patient-B's lane", lane, ok, err)
	}
	if _, ok, err := l.LaneOfPrefix("f|Obs/o2/_history/"); ok || err != nil {
		t.Fatalf("a prefix with no record: %v %v", ok, err)
	}
	res := add("f|Obs/o1/_history/deleted-3", "ignored", &lane)
	r, err := l.Get(res.ID)
	if err != nil || r.Lane != l.LaneHash("patient-B") {
		t.Fatalf("an entry with LaneHash: %v %v", r, err)
	}
}

// The free list is kept in the file (issue 27): without it, every open
// walks every page of the log to rebuild it (32 s for 2.2 GB on a cold
// cache). Read from bbolt's meta pages: the newer meta's freelist page id
// is not pgidNoFreelist (all ones) once the log has committed. A log
// written without it gets one at its first open.
func TestFreelistKeptInFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := reopen(t, path, Options{})
	mustAppend(t, l, entry("k1", "A", "1"))
	l.Close()
	if !freelistInFile(t, path) {
		t.Fatal("the log was written without its free list")
	}
	// The layout before: a commit with NoFreelistSync drops it.
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put([]byte("x"), []byte("y")) })
	db.Close()
	if freelistInFile(t, path) {
		t.Fatal("test setup: NoFreelistSync kept the free list")
	}
	l = reopen(t, path, Options{})
	l.Close()
	if !freelistInFile(t, path) {
		t.Error("an older log did not get its free list at its first open")
	}
}

// freelistInFile reads bbolt's two meta pages (page 0 and 1: a 16-byte
// page header, then magic, version, page size, flags, the root bucket
// (16 bytes), the freelist page id, the high-water page id, the txid) and
// reports whether the newer one points at a free list page.
func freelistInFile(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.LittleEndian.Uint32(data[16+8:]))
	var freelist, txid uint64
	for i := 0; i < 2; i++ {
		m := data[i*pageSize+16:]
		if tx := binary.LittleEndian.Uint64(m[48:]); i == 0 || tx > txid {
			txid, freelist = tx, binary.LittleEndian.Uint64(m[32:])
		}
	}
	return freelist != ^uint64(0)
}

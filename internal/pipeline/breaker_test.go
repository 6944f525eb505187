package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// scriptedCRM is a sink whose answers a test switches: up (every op
// succeeds), down (every op fails with a 503, as a whole call would),
// partial (the first op of a call succeeds, the rest fail with a 503),
// throttled. It counts calls and probes, and when the probes were sent.
type scriptedCRM struct {
	mode   atomic.Value // string
	calls  atomic.Int64
	probes atomic.Int64

	mu       sync.Mutex
	probedAt []time.Time
}

func (s *scriptedCRM) set(mode string) { s.mode.Store(mode) }

var unavailable = &connectors.Error{Kind: connectors.Transient, Code: "SERVER_UNAVAILABLE", Status: 503}

func (s *scriptedCRM) Apply(_ context.Context, ops []connectors.Op) []connectors.Result {
	s.calls.Add(1)
	res := make([]connectors.Result, len(ops))
	for i := range res {
		switch s.mode.Load() {
		case "down":
			res[i].Err = unavailable
		case "partial":
			if i > 0 {
				res[i].Err = unavailable
			} else {
				res[i].ID = fmt.Sprint("id", i)
			}
		case "throttled":
			res[i].Err = &connectors.Error{Kind: connectors.Throttled, Code: "REQUEST_LIMIT_EXCEEDED", RetryAfter: 200 * time.Millisecond}
		default:
			res[i].ID = fmt.Sprint("id", i)
		}
	}
	return res
}

func (s *scriptedCRM) Probe(context.Context) error {
	s.probes.Add(1)
	s.mu.Lock()
	s.probedAt = append(s.probedAt, time.Now())
	s.mu.Unlock()
	if s.mode.Load() == "down" {
		return unavailable
	}
	return nil
}

type breakerRig struct {
	log *checkpoint.Log
	crm *scriptedCRM
	p   *Pipeline
}

func newBreakerRig(t *testing.T, opts Options) *breakerRig {
	t.Helper()
	l, err := checkpoint.Open(filepath.Join(t.TempDir(), "checkpoint.db"), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	set, err := mappings.Load([]string{filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud")}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	crm := &scriptedCRM{}
	crm.set("up")
	if opts.Sink == nil {
		opts.Sink = crm
	}
	opts.Log, opts.Mappings = l, func() *mappings.Set { return set }
	opts.Linger, opts.Poll, opts.Logger = -1, 5*time.Millisecond, slog.New(slog.DiscardHandler)
	if opts.BackoffMin == 0 {
		opts.BackoffMin, opts.BackoffMax = 20*time.Millisecond, 50*time.Millisecond
	}
	p := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-stopped; l.Close() })
	return &breakerRig{log: l, crm: crm, p: p}
}

func (r *breakerRig) send(t *testing.T, n int) {
	t.Helper()
	msg := []byte(strings.Replace(adt("A08", fmt.Sprintf("BRK%04d", n), "BREAKER", "B"), "CTRL", fmt.Sprint("BRK", n), 1))
	m, err := hl7.Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.log.Append(context.Background(), checkpoint.Entry{Key: ehr.RecordKey("ehr", m.Header()), Source: "ehr", Kind: "hl7v2",
		Type: "ADT^A08", Hash: ehr.ContentHash(m, nil), Lane: ehr.LaneKey(m), Payload: msg, Ack: []byte("ack")}); err != nil {
		t.Fatal(err)
	}
	r.p.Notify()
}

func (r *breakerRig) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (r *breakerRig) states(t *testing.T) map[checkpoint.State]int64 {
	t.Helper()
	st, err := r.log.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st.States
}

// While the CRM fails, the pipeline sends one failed batch and then only
// probes, on a doubling interval capped at ProbeMax, however many records
// wait; every record (of every lane) waits; a failed record's attempts
// grew by that one failure only. When a probe is answered the backlog
// drains in full batches, the first within one probe interval.
func TestBreakerHoldsBatchesAndProbes(t *testing.T) {
	r := newBreakerRig(t, Options{BatchSize: 100, ProbeMin: 20 * time.Millisecond, ProbeMax: 80 * time.Millisecond})
	r.crm.set("down")
	for n := range 10 {
		r.send(t, n)
	}
	r.waitFor(t, "the breaker to open", func() bool { return r.p.Breaker().State != BreakerClosed })
	opened := time.Now()
	if b := r.p.Breaker(); !b.Enabled || b.Opened != 1 || b.Reason != unavailable.Error() || b.Since.IsZero() {
		t.Errorf("breaker %+v after the first failure", b)
	}
	for n := 10; n < 250; n++ { // records arriving during the outage
		r.send(t, n)
	}
	time.Sleep(500 * time.Millisecond)
	if c := r.crm.calls.Load(); c != 1 {
		t.Errorf("%d sink calls while the CRM was failing, want 1 (then probes only)", c)
	}
	probes, open := r.crm.probes.Load(), time.Since(opened)
	// 20, 40, 80, 80, ... ms; a probe per batch or per lane would be
	// hundreds.
	if most := int64(open/(80*time.Millisecond)) + 3; probes < 4 || probes > most {
		t.Errorf("%d probes in %v with intervals 20ms doubling to 80ms (at most %d)", probes, open, most)
	}
	r.crm.mu.Lock()
	at := r.crm.probedAt
	for i := 3; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < 70*time.Millisecond {
			t.Errorf("probe %d came %v after the one before; the interval is capped at 80ms, not below", i, gap)
		}
	}
	r.crm.mu.Unlock()
	if b := r.p.Breaker(); b.Probes != r.crm.probes.Load() || b.Interval != 80*time.Millisecond {
		t.Errorf("breaker %+v, %d probes sent", b, r.crm.probes.Load())
	}
	st := r.states(t)
	if failed := r.p.Retried.Load(); st[checkpoint.Done] != 0 || st[checkpoint.InProgress] != 0 || failed == 0 ||
		st[checkpoint.Retrying] != failed || st[checkpoint.Received] != 250-failed {
		t.Errorf("states %v while the CRM failed (%d records in the failed batch): it retrying, the rest waiting", st, failed)
	}
	back := time.Now()
	r.crm.set("up")
	r.waitFor(t, "the drain", func() bool { return r.states(t)[checkpoint.Done] == 250 })
	if b := r.p.Breaker(); b.State != BreakerClosed {
		t.Errorf("breaker %+v after recovery", b)
	}
	// 250 records at 100 a batch: 3 calls (plus the failed one).
	if c := r.crm.calls.Load(); c != 4 {
		t.Errorf("%d sink calls in all, want 1 failed + 3 full batches", c)
	}
	var first time.Time
	err := r.log.All(func(rec *checkpoint.Record) bool {
		if rec.Attempts > 1 {
			t.Errorf("record %d has %d attempts; the outage counts once", rec.ID, rec.Attempts)
		}
		if first.IsZero() || rec.DoneAt.Before(first) {
			first = rec.DoneAt
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	// Within the probe interval, plus slack for a loaded 2-core machine
	// running the race detector (184 ms was seen there): an interval that
	// kept growing past ProbeMax would show as seconds.
	if d := first.Sub(back); d > 80*time.Millisecond+400*time.Millisecond {
		t.Errorf("the drain began %v after the CRM was back; the probe interval is 80ms", d)
	}
}

// A round in which the CRM accepted some ops is no outage, nor is a
// throttled one (the pause handles it); without a probe, or with
// NoBreaker, there is no breaker and each batch retries on its own.
func TestBreakerTripsOnlyOnWholeTransientFailure(t *testing.T) {
	for _, mode := range []string{"partial", "throttled"} {
		t.Run(mode, func(t *testing.T) {
			r := newBreakerRig(t, Options{ProbeMin: 10 * time.Millisecond, ProbeMax: 20 * time.Millisecond})
			r.crm.set(mode)
			for n := range 5 {
				r.send(t, n)
			}
			r.waitFor(t, "a settled round", func() bool { return r.p.Retried.Load() > 0 })
			time.Sleep(50 * time.Millisecond)
			if b := r.p.Breaker(); b.Opened != 0 || r.crm.probes.Load() != 0 {
				t.Errorf("breaker %+v, %d probes after a %s round", b, r.crm.probes.Load(), mode)
			}
		})
	}
	t.Run("no breaker", func(t *testing.T) {
		r := newBreakerRig(t, Options{NoBreaker: true})
		r.crm.set("down")
		r.send(t, 1)
		r.waitFor(t, "retries", func() bool { return r.crm.calls.Load() >= 3 })
		if b := r.p.Breaker(); b.Enabled || r.crm.probes.Load() != 0 {
			t.Errorf("breaker %+v, %d probes with NoBreaker", b, r.crm.probes.Load())
		}
	})
}

// A batch that makes the CRM fail whenever it is sent, while probes
// succeed, is sent at the probe backoff (the interval is reset only by a
// round the CRM accepted), not in a loop.
func TestBreakerBacksOffAPoisonBatch(t *testing.T) {
	poison := &poisonCRM{}
	r := newBreakerRig(t, Options{Sink: poison, Probe: func(context.Context) error { return nil },
		ProbeMin: 10 * time.Millisecond, ProbeMax: 80 * time.Millisecond})
	r.send(t, 1)
	time.Sleep(500 * time.Millisecond)
	// Intervals 10, 20, 40, 80, 80...: about 8 calls in 500 ms; a loop
	// would be hundreds.
	if c := poison.calls.Load(); c < 3 || c > 10 {
		t.Errorf("%d calls of a batch that always fails in 500 ms", c)
	}
}

type poisonCRM struct{ calls atomic.Int64 }

func (s *poisonCRM) Apply(_ context.Context, ops []connectors.Op) []connectors.Result {
	s.calls.Add(1)
	res := make([]connectors.Result, len(ops))
	for i := range res {
		res[i].Err = unavailable
	}
	return res
}

// errText names a connectors.Error's kind and code, and nothing of any
// other error (net/http's quote URLs, which hold keys).
func TestBreakerReasonHoldsNoValues(t *testing.T) {
	if got := errText(fmt.Errorf("wrapped: %w", unavailable)); got != unavailable.Error() {
		t.Errorf("errText = %q", got)
	}
	if got := errText(errors.New(`Post "https://x/services/data/v62.0/sobjects/Account/MRN__c/MRN12345": EOF`)); got != "CRM unreachable" {
		t.Errorf("errText = %q", got)
	}
}

package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
)

// The CRM breaker. When a round's sink call fails transiently as a whole
// (no op succeeded, at least one failed transiently: a 5xx, no answer, a
// timeout), the CRM is taken to be down: the breaker opens, and the
// pipeline sends no batch until one small probe request (Salesforce GET
// /limits, Dataverse WhoAmI) is answered. Probes go out on a backoff,
// ProbeMin doubling to ProbeMax. The failed batch's records are retrying
// and ready at once, so that the first batch after recovery takes them
// with the rest: their attempt counts grew by that one failure only (no
// batch is sent, so no answer arrives about them, while the breaker is
// open). Every lane waits: the pipeline is one worker, and it does
// nothing but probe while the breaker is open.
//
// A probe whose answer is not transient (success, throttled, or even a
// permanent error such as a revoked credential) closes the breaker: the
// CRM answers, and batches get their own answers again. The probe
// interval is reset only by a round in which the CRM accepted an op, and
// doubles when the breaker opens again before such a round, so a batch
// that makes the CRM fail every time is sent at the probe backoff, not in
// a loop.

// BreakerState is the breaker's state.
type BreakerState int

const (
	// BreakerClosed: batches are sent.
	BreakerClosed BreakerState = iota
	// BreakerOpen: the CRM failed transiently; no batch is sent, a
	// probe is due at Next.
	BreakerOpen
	// BreakerProbing: a probe is in flight.
	BreakerProbing
)

func (s BreakerState) String() string {
	switch s {
	case BreakerOpen:
		return "open"
	case BreakerProbing:
		return "probing"
	}
	return "closed"
}

// BreakerStatus is what /status and /metrics show of the breaker. It
// holds no patient data: states, times, counts and CRM error codes.
type BreakerStatus struct {
	Enabled bool
	State   BreakerState
	// Since is when the breaker entered its state (zero: closed since
	// start).
	Since time.Time
	// Opened is how often it opened; Probes how many probes were sent
	// (since start).
	Opened, Probes int64
	// Next is when the next probe is due (open only); Interval the
	// current probe interval.
	Next     time.Time
	Interval time.Duration
	// Reason is the error (kind and code) that opened it, or of the
	// last failed probe.
	Reason string
}

// ProbeFunc sends one small read-only request to the CRM.
type ProbeFunc func(ctx context.Context) error

type breaker struct {
	probe    ProbeFunc
	min, max time.Duration
	now      func() time.Time

	mu       sync.Mutex
	state    BreakerState
	since    time.Time
	opened   int64
	probes   int64
	next     time.Time
	interval time.Duration
	reason   string
	// unproven: closed by a probe, no round accepted since; a trip then
	// doubles the interval.
	unproven bool
}

func newBreaker(probe ProbeFunc, minWait, maxWait time.Duration, now func() time.Time) *breaker {
	return &breaker{probe: probe, min: minWait, max: maxWait, now: now, interval: minWait}
}

func (b *breaker) status() BreakerStatus {
	if b == nil {
		return BreakerStatus{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return BreakerStatus{Enabled: true, State: b.state, Since: b.since, Opened: b.opened, Probes: b.probes, Next: b.next,
		Interval: b.interval, Reason: b.reason}
}

func (b *breaker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state == BreakerClosed
}

// trip opens the breaker after a round failed transiently as a whole.
func (b *breaker) trip(log *slog.Logger, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != BreakerClosed {
		return
	}
	now := b.now()
	if b.unproven {
		b.interval = min(b.interval*2, b.max)
	}
	b.state, b.since, b.reason = BreakerOpen, now, reason
	b.opened++
	b.next = now.Add(b.interval)
	log.Warn("CRM failing; batches held, probing it", "err", reason, "next_probe_in", b.interval.String())
}

// healthy notes a round in which the CRM accepted an op: the probe
// interval starts from ProbeMin again.
func (b *breaker) healthy() {
	b.mu.Lock()
	b.interval, b.unproven = b.min, false
	b.mu.Unlock()
}

// wait waits for the next probe, sends it and closes the breaker when the
// CRM answers; otherwise it doubles the interval. It returns at once when
// ctx ends.
func (b *breaker) wait(ctx context.Context, log *slog.Logger) {
	b.mu.Lock()
	d := b.next.Sub(b.now())
	b.mu.Unlock()
	if d > 0 {
		sleep(ctx, d)
		return
	}
	if ctx.Err() != nil {
		return
	}
	b.mu.Lock()
	b.state, b.since = BreakerProbing, b.now()
	b.probes++
	b.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, max(b.max, 10*time.Second))
	err := b.probe(pctx)
	cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if err != nil && (ctx.Err() != nil || connectors.KindOf(err) == connectors.Transient) {
		b.interval = min(b.interval*2, b.max)
		b.state, b.since, b.next = BreakerOpen, now, now.Add(b.interval)
		if ctx.Err() == nil {
			b.reason = errText(err)
			log.Info("CRM probe failed; batches still held", "err", b.reason, "next_probe_in", b.interval.String())
		}
		return
	}
	b.state, b.since, b.next, b.reason, b.unproven = BreakerClosed, now, time.Time{}, "", true
	log.Info("CRM answers again; sending batches")
}

// errText is a probe's or a round's error for logs and /status: a
// connectors.Error names its kind and code only; anything else is
// "CRM unreachable" (net/http errors quote URLs, which can hold keys).
func errText(err error) string {
	var e *connectors.Error
	if errors.As(err, &e) {
		return e.Error()
	}
	return "CRM unreachable"
}

// Package pipeline moves records from the checkpoint log to the CRM: it
// claims the ready head of each patient's lane, maps it, applies the ops
// of many records in one sink call, and settles every record (done with
// the CRM's ids, retrying with backoff, or dead with the reason) in one
// transaction. A record no mapping accepts is skipped (a state of its own,
// with the reason "no mapping for ADT^A60"), and one applied while its
// mapping left fields out is done with those warnings kept as its reason.
//
// Exactly-once: a record is done only after the CRM confirmed all its ops;
// ops are upserts by deterministic external keys, so re-applying a record
// after a crash, a timeout or an unanswered commit changes nothing. One
// patient's records apply in arrival order (the lane's next record is
// claimable only when the previous one is settled); a retrying record
// holds only its own lane.
package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// Options configure a Pipeline. Zero values select the defaults.
type Options struct {
	Log      *checkpoint.Log
	Mappings func() *mappings.Set
	Sink     connectors.Sink
	// BatchSize is how many records one round claims; default 200.
	BatchSize int
	// Linger is the flush interval: a round that has fewer than BatchSize
	// records waits until its oldest record has been ready this long, for
	// more to share its CRM requests; default 1s.
	Linger time.Duration
	// Poll is how often an idle pipeline looks for ready records (retries
	// come due without a wake-up); default 250ms.
	Poll time.Duration
	// BackoffMin and BackoffMax bound transient retries; default 1s, 10m.
	BackoffMin, BackoffMax time.Duration
	Logger                 *slog.Logger
	Now                    func() time.Time
	// Notes files note records (write-back to the EHR); nil leaves them
	// retrying, to be filed once write-back is configured.
	Notes NoteHandler
	// EchoPrefix is write-back's document id prefix: an inbound MDM whose
	// TXA-12 starts with it is our own note coming back from the EHR, and
	// is done without being mapped (never imported as a new note).
	EchoPrefix string
	// Applied, when set, is called after a round in which EHR data was
	// applied to the CRM (write-back then tries held notes again).
	Applied func()
	// Probe is the CRM breaker's probe, one small read-only request (see
	// breaker.go); nil takes the Sink's, when it is a connectors.Prober.
	// Without a probe there is no breaker.
	Probe ProbeFunc
	// ProbeMin and ProbeMax bound the probe interval while the CRM is
	// failing: it starts at ProbeMin and doubles up to ProbeMax; default
	// 1s, 30s.
	ProbeMin, ProbeMax time.Duration
	// NoBreaker turns the breaker off: each batch then retries on its own
	// after a transient failure (the behaviour before issue 27, kept for
	// measuring what the breaker saves).
	NoBreaker bool
	// Patients returns the resolver of patient references for FHIR
	// records of a source (nil when the source is not configured: such
	// records wait rather than be written with a guessed patient).
	Patients func(source string) mappings.PatientResolver
}

// NoteHandler files note records in the EHR and says how each ended, by
// calling settle for each record as soon as it knows: a note filed in the
// EHR is settled before the next is sent, so that a crash resends at most
// the one under way.
type NoteHandler interface {
	Handle(ctx context.Context, recs []*checkpoint.Record, settle func(checkpoint.Settlement))
}

// Pipeline is the CRM-bound worker.
type Pipeline struct {
	opts Options
	wake chan struct{}
	// bySource counts settlements per record source (BySource).
	bySource sourceCounts

	// Counters, for /metrics and /status: records settled done (echoes
	// included), retrying, dead and skipped; done ones applied with
	// warnings (part of Done); echoes; rounds.
	Done, Retried, Dead, Skipped, Warned, Echoes, Rounds atomic.Int64
	pausedUntil                                          atomic.Int64 // unix nanos

	breaker *breaker // nil without a probe
}

// New makes a pipeline; Run starts it.
func New(opts Options) *Pipeline {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 200
	}
	if opts.Linger < 0 {
		opts.Linger = 0
	} else if opts.Linger == 0 {
		opts.Linger = time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = time.Second
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ProbeMin <= 0 {
		opts.ProbeMin = time.Second
	}
	if opts.ProbeMax <= 0 {
		opts.ProbeMax = 30 * time.Second
	}
	opts.ProbeMax = max(opts.ProbeMax, opts.ProbeMin)
	if opts.Probe == nil {
		if pr, ok := opts.Sink.(connectors.Prober); ok {
			opts.Probe = pr.Probe
		}
	}
	p := &Pipeline{opts: opts, wake: make(chan struct{}, 1)}
	if opts.Probe != nil && !opts.NoBreaker {
		p.breaker = newBreaker(opts.Probe, opts.ProbeMin, opts.ProbeMax, opts.Now)
	}
	return p
}

// Breaker returns the CRM breaker's state (Enabled false without one).
func (p *Pipeline) Breaker() BreakerStatus { return p.breaker.status() }

// Notify tells the pipeline that records arrived.
func (p *Pipeline) Notify() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// PausedUntil returns when a throttling pause ends (zero when none).
func (p *Pipeline) PausedUntil() time.Time {
	n := p.pausedUntil.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Run works until ctx ends. Records in progress when it returns are
// settled; a crash instead leaves them in progress, and the log returns
// them to retrying when it is next opened.
func (p *Pipeline) Run(ctx context.Context) error {
	log := p.opts.Logger.With("component", "pipeline")
	var (
		failing    int // claims failed in a row
		lastLogged time.Time
	)
	for ctx.Err() == nil {
		if until := p.PausedUntil(); !until.IsZero() {
			if d := until.Sub(p.opts.Now()); d > 0 {
				sleep(ctx, d)
				continue
			}
			p.pausedUntil.Store(0)
			log.Info("CRM throttling pause over; resuming")
		}
		if p.breaker != nil && !p.breaker.isClosed() {
			// The CRM is failing: no batch, one probe at a time.
			p.breaker.wait(ctx, log)
			continue
		}
		recs, err := p.gather(ctx)
		if err != nil {
			if errors.Is(err, checkpoint.ErrClosed) {
				return nil
			}
			// A full disk fails every claim until room frees: the first
			// failure is logged, then one line a minute with the count.
			if failing == 0 || p.opts.Now().Sub(lastLogged) >= time.Minute {
				log.Error("claiming records failed; will retry", "err", err, "failures", failing+1)
				lastLogged = p.opts.Now()
			}
			failing++
			sleep(ctx, p.opts.Poll)
		} else if failing > 0 {
			log.Info("claiming records works again", "failures", failing)
			failing = 0
		}
		if len(recs) == 0 {
			if err == nil {
				select {
				case <-ctx.Done():
				case <-p.wake:
				case <-time.After(p.opts.Poll):
				}
			}
			continue
		}
		p.round(ctx, log, recs)
	}
	return nil
}

// gather claims a batch: up to BatchSize records, waiting (by the flush
// interval) for more while the batch is short and its oldest record has
// been ready less than Linger. A backlog fills batches at once; a trickle
// gathers for at most Linger.
func (p *Pipeline) gather(ctx context.Context) ([]*checkpoint.Record, error) {
	recs, err := p.opts.Log.Claim(p.opts.BatchSize)
	if err != nil || len(recs) == 0 {
		return recs, err
	}
	oldest := recs[0].ReadyAt
	for _, r := range recs {
		if r.ReadyAt.Before(oldest) {
			oldest = r.ReadyAt
		}
	}
	flushAt := oldest.Add(p.opts.Linger)
	for len(recs) < p.opts.BatchSize && ctx.Err() == nil {
		wait := flushAt.Sub(p.opts.Now())
		if wait <= 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-p.wake:
		case <-time.After(min(wait, p.opts.Poll)):
		}
		more, err := p.opts.Log.Claim(p.opts.BatchSize - len(recs))
		recs = append(recs, more...)
		if err != nil {
			return recs, err
		}
	}
	return recs, nil
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// item is one claimed record in a round.
type item struct {
	rec        *checkpoint.Record
	first, n   int // its ops in the round's op list
	settlement checkpoint.Settlement
	settled    bool
	// warnings are the fields its mapping left out; kept on the record
	// if it is done.
	warnings []string
	// FHIR: where the resource's CRM records are, kept (once applied)
	// under addrKey for a later delete.
	addrKey checkpoint.StateKey
	addrs   []mappings.Address
}

// round maps, applies and settles one batch of claimed records.
func (p *Pipeline) round(ctx context.Context, log *slog.Logger, recs []*checkpoint.Record) {
	p.Rounds.Add(1)
	var notes []*checkpoint.Record
	inbound := recs[:0:0]
	for _, r := range recs {
		if r.Kind == checkpoint.KindNote {
			notes = append(notes, r)
		} else {
			inbound = append(inbound, r)
		}
	}
	var noteSettlements []checkpoint.Settlement
	if len(notes) > 0 {
		if p.opts.Notes != nil {
			p.opts.Notes.Handle(ctx, notes, func(s checkpoint.Settlement) { p.settleNote(ctx, log, s) })
		} else {
			for _, r := range notes {
				noteSettlements = append(noteSettlements, checkpoint.Settlement{ID: r.ID, State: checkpoint.Retrying,
					RetryAt: p.opts.Now().Add(time.Minute), Reason: "write-back is not configured"})
			}
		}
	}
	recs = inbound
	set := p.opts.Mappings()
	var ops []connectors.Op
	items := make([]item, len(recs))
	for i, rec := range recs {
		it := &items[i]
		it.rec = rec
		it.settlement.ID = rec.ID
		if rec.Kind == checkpoint.KindFHIRDelete {
			dops, skip, err := p.deleteOps(set, rec)
			switch {
			case err != nil:
				it.settled, it.settlement.State, it.settlement.Reason = true, checkpoint.Dead, err.Error()
			case len(dops) == 0:
				// Never applied, or no mapping says what a delete does.
				it.settled, it.settlement.State, it.settlement.Reason = true, checkpoint.Skipped, skip
			default:
				it.first, it.n = len(ops), len(dops)
				ops = append(ops, dops...)
			}
			continue
		}
		in, err := decode(rec)
		if err != nil {
			it.settled, it.settlement.State, it.settlement.Reason = true, checkpoint.Dead, err.Error()
			continue
		}
		if doc, ok := p.echo(in); ok {
			it.settled, it.settlement.State, it.settlement.Targets = true, checkpoint.Done, []string{doc}
			p.Echoes.Add(1)
			continue
		}
		if in.FHIR != nil {
			in.Patients = p.patients(rec.Source)
		}
		res, err := set.Map(in)
		if errors.Is(err, mappings.ErrWait) {
			// Data it needs has not arrived (a referenced Patient): later.
			it.settled, it.settlement.State, it.settlement.Reason = true, checkpoint.Retrying, err.Error()
			it.settlement.RetryAt = p.opts.Now().Add(p.Backoff(rec.Attempts))
			continue
		}
		if err != nil {
			// Mapping errors name the mapping, op and field, never values.
			it.settled, it.settlement.State, it.settlement.Reason = true, checkpoint.Dead, err.Error()
			continue
		}
		if len(res.Mappings) == 0 {
			// Acknowledged and stored, not applied: skipped, not done, so
			// that "synced" and "ignored" are told apart.
			it.settled, it.settlement.State, it.settlement.Reason = true, checkpoint.Skipped, noMappingReason(rec, in)
			continue
		}
		for _, w := range res.Warnings {
			it.warnings = append(it.warnings, w.String())
		}
		it.first, it.n = len(ops), len(res.Ops)
		ops = append(ops, res.Ops...)
		if in.FHIR != nil && set.HasOnDelete() {
			if addrs, err := set.Addresses(in); err == nil && len(addrs) > 0 {
				it.addrKey, it.addrs = addressKey(rec.Source, in.FHIR), addrs
			}
		}
	}
	var results []connectors.Result
	if len(ops) > 0 {
		results = p.opts.Sink.Apply(ctx, ops)
	}
	now := p.opts.Now()
	var pause time.Time
	outage, accepted := p.outage(results)
	if ctx.Err() != nil {
		outage = nil // stopping: the calls were cut short, the CRM may be fine
	}
	if p.breaker != nil {
		if accepted {
			p.breaker.healthy()
		}
		if outage != nil {
			p.breaker.trip(log, errText(outage))
		}
	}
	settlements := make([]checkpoint.Settlement, 0, len(items)+len(noteSettlements))
	var done, retried, dead, skipped, warned, applied int
	for _, s := range noteSettlements {
		switch s.State {
		case checkpoint.Done:
			done++
		case checkpoint.Retrying:
			retried++
		case checkpoint.Dead:
			dead++
		}
		settlements = append(settlements, s)
	}
	for i := range items {
		it := &items[i]
		if !it.settled {
			p.judge(it, ops, results, now, &pause)
			if outage != nil && p.breaker != nil && it.settlement.State == checkpoint.Retrying {
				// The CRM failed, not the record: it goes with the first
				// batch after the breaker closes (this failure counted
				// as one attempt, the wait while open not at all).
				it.settlement.RetryAt = now
			}
		}
		switch it.settlement.State {
		case checkpoint.Done:
			done++
			if it.n > 0 {
				applied++
			}
			if len(it.warnings) > 0 {
				it.settlement.Warnings = it.warnings
				warned++
			}
		case checkpoint.Retrying:
			retried++
		case checkpoint.Dead:
			dead++
		case checkpoint.Skipped:
			skipped++
		}
		settlements = append(settlements, it.settlement)
	}
	// Settle even when ctx ended (shutdown): the answers are known.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	// Where applied FHIR resources' records are, for their deletes: stored
	// before the records are done, so that done implies stored.
	addrs := map[checkpoint.StateKey][]byte{}
	for i := range items {
		if it := &items[i]; it.addrKey != "" && it.settlement.State == checkpoint.Done {
			b, _ := json.Marshal(it.addrs)
			addrs[it.addrKey] = b
		}
	}
	if err := p.opts.Log.SetSourceStates(addrs); err != nil {
		log.Error("storing where FHIR resources were written failed; the batch is applied again later", "err", err)
		return
	}
	if err := settleWithRetry(sctx, p.opts.Log, settlements); err != nil {
		log.Error("settling a batch failed; its records return to retrying at the next start", "err", err, "records", len(settlements))
		return
	}
	for i := range items {
		p.bySource.add(items[i].rec.Source, items[i].settlement.State)
	}
	p.Done.Add(int64(done))
	p.Retried.Add(int64(retried))
	p.Dead.Add(int64(dead))
	p.Skipped.Add(int64(skipped))
	p.Warned.Add(int64(warned))
	if !pause.IsZero() {
		p.pausedUntil.Store(pause.UnixNano())
		log.Warn("CRM API allocation exhausted or reserved; pausing", "until", pause.UTC().Format(time.RFC3339))
	}
	if applied > 0 && p.opts.Applied != nil {
		p.opts.Applied()
	}
	log.Debug("batch settled", "records", len(items), "ops", len(ops), "done", done, "retrying", retried, "dead", dead,
		"skipped", skipped, "with_warnings", warned)
	if dead > 0 {
		log.Warn("records dead-lettered; see `ehrbridge log list --state dead`", "records", dead)
	}
	if warned > 0 {
		log.Info("records applied with fields left out; see `ehrbridge log list --state warned`", "records", warned)
	}
}

// settleNote records one note's settlement at once (one fsync: notes are
// few, and a filed note must not be sent again after a crash).
func (p *Pipeline) settleNote(ctx context.Context, log *slog.Logger, s checkpoint.Settlement) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := settleWithRetry(sctx, p.opts.Log, []checkpoint.Settlement{s}); err != nil {
		log.Error("settling a note failed; it returns to retrying at the next start", "err", err)
		return
	}
	p.bySource.add(noteSource, s.State)
	switch s.State {
	case checkpoint.Done:
		p.Done.Add(1)
	case checkpoint.Retrying:
		p.Retried.Add(1)
	case checkpoint.Dead:
		p.Dead.Add(1)
		log.Warn("a note is dead-lettered; see `ehrbridge log list --state dead`")
	}
}

func settleWithRetry(ctx context.Context, l *checkpoint.Log, s []checkpoint.Settlement) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = l.Settle(s); err == nil || errors.Is(err, checkpoint.ErrTransition) || errors.Is(err, checkpoint.ErrClosed) {
			return err
		}
		sleep(ctx, time.Duration(attempt+1)*200*time.Millisecond)
	}
	return err
}

// judge settles an item from its ops' results: done when all succeeded;
// otherwise the worst failure decides: throttled (retry after the pause),
// permanent (dead), transient (retry with backoff).
func (p *Pipeline) judge(it *item, ops []connectors.Op, results []connectors.Result, now time.Time, pause *time.Time) {
	var throttled, permanent, transient *connectors.Error
	var permanentOp, transientOp *connectors.Op
	var permanentNo, transientNo int // 1-based, among the record's ops
	var other error
	targets := make([]string, 0, it.n)
	for k := it.first; k < it.first+it.n; k++ {
		r := results[k]
		if r.Err == nil {
			if r.ID != "" {
				targets = append(targets, r.ID)
			}
			continue
		}
		var e *connectors.Error
		if !errors.As(r.Err, &e) {
			if other == nil {
				other = r.Err
			}
			continue
		}
		switch e.Kind {
		case connectors.Throttled:
			throttled = e
		case connectors.Permanent:
			if permanent == nil {
				permanent, permanentOp, permanentNo = e, &ops[k], k-it.first+1
			}
		default:
			if transient == nil {
				transient, transientOp, transientNo = e, &ops[k], k-it.first+1
			}
		}
	}
	s := &it.settlement
	switch {
	case throttled != nil:
		at := now.Add(max(throttled.RetryAfter, time.Second))
		if at.After(*pause) {
			*pause = at
		}
		s.State, s.RetryAt, s.Reason = checkpoint.Retrying, at, crmReason(throttled, nil, 0)
		settlementOp(s, throttled, nil, 0)
	case permanent != nil:
		s.State, s.Reason, s.Detail = checkpoint.Dead, crmReason(permanent, permanentOp, permanentNo), permanent.Message
		settlementOp(s, permanent, permanentOp, permanentNo)
	case transient != nil || other != nil:
		reason := "CRM unreachable"
		if transient != nil {
			reason, s.Detail = crmReason(transient, transientOp, transientNo), transient.Message
			settlementOp(s, transient, transientOp, transientNo)
		}
		wait := p.Backoff(it.rec.Attempts)
		if transient != nil && transient.RetryAfter > wait {
			wait = transient.RetryAfter // the CRM said when to come back
		}
		s.State, s.RetryAt, s.Reason = checkpoint.Retrying, now.Add(wait), reason
	default:
		s.State, s.Targets = checkpoint.Done, targets
	}
}

// outage reports whether a sink call failed as a whole, transiently: no
// op succeeded, none was throttled (a pause of its own) and at least one
// failed transiently; it returns that failure. accepted says whether the
// CRM accepted some op.
func (p *Pipeline) outage(results []connectors.Result) (failure error, accepted bool) {
	for _, r := range results {
		switch {
		case r.Err == nil:
			accepted = true
		case connectors.KindOf(r.Err) == connectors.Throttled:
			return nil, accepted
		case connectors.KindOf(r.Err) == connectors.Transient && failure == nil:
			failure = r.Err
		}
	}
	if accepted {
		return nil, true
	}
	return failure, false
}

// addressKey is where the CRM addresses of a source's resource are kept.
func addressKey(source string, resource []byte) checkpoint.StateKey {
	var head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	if json.Unmarshal(resource, &head) != nil || head.ResourceType == "" || head.ID == "" {
		return ""
	}
	return checkpoint.FHIRAddressKey(source, head.ResourceType, head.ID)
}

// deleteOps are the ops of a deleted resource: the on_delete rules of the
// mappings that wrote it, at the records they wrote. Without ops, skip
// says why (free of patient data: the resource type only).
func (p *Pipeline) deleteOps(set *mappings.Set, rec *checkpoint.Record) (ops []connectors.Op, skip string, err error) {
	key := addressKey(rec.Source, rec.Payload)
	if key == "" {
		return nil, "", errors.New("the delete record names no resource")
	}
	typ := plainType(rec.Type, "resource")
	b, ok, err := p.opts.Log.SourceState(key)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		// Never applied, or applied by mappings without on_delete.
		return nil, "nothing to delete: no mapping with on_delete wrote this " + typ, nil
	}
	var addrs []mappings.Address
	if err := json.Unmarshal(b, &addrs); err != nil {
		return nil, "", errors.New("the stored CRM address of the deleted resource is unreadable")
	}
	ops = set.DeleteOps(addrs)
	if len(ops) == 0 {
		return nil, "nothing to delete: the mappings that wrote this " + typ + " have no on_delete any more", nil
	}
	return ops, "", nil
}

// noMappingReason is a skipped record's reason: "no mapping for" its
// message type: for HL7 v2 the first two components of MSH-9 (message
// type, data element 00009): the message code (HL7 table 0076) and the
// trigger event (table 0003), as "VXU^V04"; for FHIR the resource type.
// Both are the record's Type, which its source stored with it (the MLLP
// source already sanitised, "invalid" when malformed). Codes only: never
// a value of the message.
func noMappingReason(rec *checkpoint.Record, in mappings.Input) string {
	if in.FHIR != nil {
		return "no mapping for " + plainType(rec.Type, "this resource type")
	}
	return "no mapping for " + plainType(rec.Type, "this message type")
}

// plainType returns a type name as it is when it is a short code of
// letters, digits, '^' and '_' (what MSH-9 and FHIR resource types are),
// else instead: a malformed type could carry anything.
func plainType(t, instead string) string {
	if t == "" || len(t) > 40 || t == "invalid" {
		return instead
	}
	for _, c := range t {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '^' || c == '_') {
			return instead
		}
	}
	return t
}

// patients is the resolver of a source's patient references.
func (p *Pipeline) patients(source string) mappings.PatientResolver {
	if p.opts.Patients != nil {
		if r := p.opts.Patients(source); r != nil {
			return r
		}
	}
	return unconfigured{}
}

// unconfigured resolves nothing: the record's source is not configured.
type unconfigured struct{}

func (unconfigured) PatientKey(string) (string, error) {
	return "", mappings.Wait("the record's FHIR source is not configured, so its patient reference cannot be resolved")
}

// Backoff is how long a record waits after its attempts so far failed
// transiently: exponential in the attempts, with jitter, capped at
// BackoffMax. A NoteHandler uses it for notes (writeback.Handler.Backoff).
func (p *Pipeline) Backoff(attempts int) time.Duration {
	d := p.opts.BackoffMin << min(attempts, 20)
	if d <= 0 || d > p.opts.BackoffMax {
		d = p.opts.BackoffMax
	}
	return time.Duration(float64(d) * (0.5 + rand.Float64()/2))
}

// crmReason is the reason kept in clear for a record the CRM refused:
// the error's kind, its code, the op it refused (object; its number n
// among the record's ops, as ehrbridge map lists them, its action, key
// field and mapping) and the field names it named: "crm permanent error
// REQUIRED_FIELD_MISSING (HTTP 400) on Contact (op 2: upsert by MRN__c,
// mapping patient); fields: LastName". Names from the mapping set are
// the admin's, not patient data; the key's value is left out. The CRM's message is never part of it: it can
// quote any value of the record (Salesforce's DUPLICATE_VALUE quotes the
// duplicate key, an MRN; a FIELD_CUSTOM_VALIDATION_EXCEPTION whatever the
// rule's author wrote), in any case or format, so that no scrubbing of
// known values is safe. It goes to the settlement's Detail, sealed with
// the payload and shown only by an audited reveal. Code and field names
// come from the CRM too: anything that does not look like a code or an
// API name is left out, so a CRM that puts a value there cannot leak it.
// settlementOp fills a settlement's code and op (for the record's
// history) from the CRM's error and the op it concerns (n: 1-based among
// the record's ops; nil and 0 when unknown), with what crmReason shows:
// the code only when it looks like one, never the CRM's message.
func settlementOp(s *checkpoint.Settlement, e *connectors.Error, op *connectors.Op, n int) {
	if isCode(e.Code) {
		s.Code = e.Code
	}
	if op == nil {
		return
	}
	s.Op, s.Object, s.Mapping = n, op.Object, op.Mapping
	if op.Action != "" {
		s.Action = op.Action
		if op.KeyField != "" {
			s.Action += " by " + op.KeyField
		}
	}
}

func crmReason(e *connectors.Error, op *connectors.Op, n int) string {
	var b strings.Builder
	b.WriteString("crm ")
	b.WriteString(e.Kind.String())
	b.WriteString(" error ")
	if code := e.Code; isCode(code) {
		b.WriteString(code)
	} else {
		b.WriteString("(code not shown)")
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if op != nil && op.Object != "" {
		b.WriteString(" on ")
		b.WriteString(op.Object)
		var which []string
		if n > 0 && op.Action != "" {
			w := fmt.Sprintf("op %d: %s", n, op.Action)
			if op.KeyField != "" {
				w += " by " + op.KeyField
			}
			which = append(which, w)
		}
		if op.Mapping != "" {
			which = append(which, "mapping "+op.Mapping)
		}
		if len(which) > 0 {
			b.WriteString(" (" + strings.Join(which, ", ") + ")")
		}
	}
	var fields []string
	for _, f := range e.Fields {
		if isFieldName(f) {
			fields = append(fields, f)
		}
	}
	if len(fields) > 0 {
		b.WriteString("; fields: ")
		b.WriteString(strings.Join(fields, ", "))
	}
	if e.Message != "" {
		b.WriteString("; the CRM's message: log show --reveal")
	}
	return b.String()
}

// isCode says whether s looks like a CRM error code: Salesforce's
// upper-case codes (DUPLICATE_VALUE), an HTTP status, Dataverse's hex
// codes (0x80040237). A name in any case, an MRN of more than 10 digits, a
// date with / or a value with spaces does not pass.
func isCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok && len(h) <= 16 {
		_, err := strconv.ParseUint(h, 16, 64)
		return err == nil
	}
	digits := 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'A' && c <= 'Z', c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return digits < len(s) || digits <= 10
}

// isFieldName says whether s looks like an API field name (Salesforce's
// HealthCloudGA__MedicalRecordNumber__c, Dataverse's msemr_mrn): letters,
// digits, _ and . only, starting with a letter.
func isFieldName(s string) bool {
	if s == "" || len(s) > 100 || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// decode reads a record's payload as the input its kind says.
func decode(rec *checkpoint.Record) (mappings.Input, error) {
	if rec.PayloadDropped || rec.Payload == nil {
		return mappings.Input{}, fmt.Errorf("the record's payload is gone (retention) and cannot be mapped")
	}
	switch rec.Kind {
	case checkpoint.KindHL7v2, "":
		m, err := hl7.Parse(rec.Payload)
		if err != nil {
			return mappings.Input{}, fmt.Errorf("stored message cannot be parsed: %w", err)
		}
		return mappings.Input{HL7: m}, nil
	case checkpoint.KindFHIR:
		return mappings.Input{FHIR: rec.Payload}, nil
	}
	return mappings.Input{}, fmt.Errorf("records of kind %q cannot be mapped", rec.Kind)
}

// echo returns the document id when an inbound message is one of our own
// notes coming back from the EHR: an MDM whose TXA-12 (or a FHIR
// DocumentReference whose identifier or masterIdentifier) starts with the
// write-back prefix. It is linked to the note (the document id is the
// record's target), never imported as a new one.
func (p *Pipeline) echo(in mappings.Input) (string, bool) {
	pre := p.opts.EchoPrefix
	if pre == "" {
		return "", false
	}
	if in.HL7 != nil {
		if in.HL7.Header().Type != "MDM" {
			return "", false
		}
		id := in.HL7.Get(hl7.Path{Segment: "TXA", Field: 12, Component: 1}).String()
		return id, strings.HasPrefix(id, pre)
	}
	if in.FHIR == nil || !bytes.Contains(in.FHIR, []byte(pre)) {
		return "", false
	}
	var doc struct {
		ResourceType     string `json:"resourceType"`
		MasterIdentifier struct {
			Value string `json:"value"`
		} `json:"masterIdentifier"`
		Identifier []struct {
			Value string `json:"value"`
		} `json:"identifier"`
	}
	if json.Unmarshal(in.FHIR, &doc) != nil || doc.ResourceType != "DocumentReference" {
		return "", false
	}
	if strings.HasPrefix(doc.MasterIdentifier.Value, pre) {
		return doc.MasterIdentifier.Value, true
	}
	for _, id := range doc.Identifier {
		if strings.HasPrefix(id.Value, pre) {
			return id.Value, true
		}
	}
	return "", false
}

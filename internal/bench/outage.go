package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/pipeline"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// GoalOutageRequests is the goal of a burst during a CRM outage: CRM
// requests per patient, retries, probes and token requests included
// (issue 27).
const GoalOutageRequests = 0.02

// OutageOptions configure Outage. Zero values select the defaults.
type OutageOptions struct {
	// CRM, Mappings and Dir as in CRMOptions.
	CRM, Mappings, Dir string
	// Patients in the burst, one ADT^A08 each; 2000.
	Patients int
	// Outage is how long the CRM answers 503 from the burst's start; 15s.
	Outage time.Duration
	// ProbeMin and ProbeMax bound the breaker's probe interval; 1s, 30s.
	ProbeMin, ProbeMax time.Duration
	// NoBreaker measures the behaviour before the breaker (each batch
	// retries on its own).
	NoBreaker bool
	// Baseline sends the same burst to a healthy CRM: the normal cost.
	Baseline bool
	// RetryWait and BackoffMin compress time in tests: the Salesforce
	// client's first retry wait and the pipeline's first record backoff
	// (defaults: the client's and the pipeline's).
	RetryWait, BackoffMin time.Duration
	// Logger is the pipeline's; default none.
	Logger *slog.Logger
}

// OutagePhase is the figures of a burst during an outage.
type OutagePhase struct {
	Name     string
	Patients int
	// Requests are the CRM API requests of the whole run (token, probes
	// and retries included); Probes the breaker's probes among them.
	Requests, Probes int64
	// Operations are, on Dataverse, the Web API operations the CRM ran,
	// each request inside a $batch counted on its own (a $batch refused
	// as a whole runs none): what Microsoft's entitlement counts ("Entitlement
	// limits are based on CRUD operations and accrue whether or not they are
	// included in a batch operation", Service protection API limits,
	// learn.microsoft.com/power-apps/developer/data-platform/api-limits).
	// Zero on Salesforce, whose API allocation counts a Composite or
	// Collections request once: Requests is its count.
	Operations int64
	// DrainStart is from the CRM's recovery to the first record done;
	// Elapsed from the burst to the last.
	DrainStart, Elapsed time.Duration
	// ProbeInterval is the breaker's probe interval when the CRM came
	// back: the drain must begin within it.
	ProbeInterval time.Duration
}

// PerPatient is CRM requests per patient.
func (o OutagePhase) PerPatient() float64 { return float64(o.Requests) / float64(max(o.Patients, 1)) }

// Outage measures a burst of Patients messages arriving as the CRM
// starts answering 503 for Outage: the CRM requests it costs in all, and
// how soon after the CRM is back the drain begins.
func Outage(ctx context.Context, opts OutageOptions) (OutagePhase, error) {
	if opts.Patients <= 0 {
		opts.Patients = 2000
	}
	if opts.Outage <= 0 {
		opts.Outage = 15 * time.Second
	}
	set, err := mappings.Load([]string{opts.Mappings}, mappings.Options{Zone: time.UTC})
	if err != nil {
		return OutagePhase{}, fmt.Errorf("bench: mappings: %w", err)
	}
	dir, err := os.MkdirTemp(opts.Dir, "ehrbridge-outage-bench-")
	if err != nil {
		return OutagePhase{}, err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)
	l, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Logger: quiet})
	if err != nil {
		return OutagePhase{}, err
	}
	defer l.Close()
	sb, err := sandbox.New(sandbox.Options{Logger: quiet})
	if err != nil {
		return OutagePhase{}, err
	}
	defer sb.Close()
	sink, faultURL, hc, err := benchSinkWait(sb, opts.CRM, quiet, opts.RetryWait)
	if err != nil {
		return OutagePhase{}, err
	}
	name := "burst during a " + opts.Outage.String() + " outage"
	if opts.Baseline {
		name = "burst, no outage"
	} else if opts.NoBreaker {
		name += ", no breaker"
	}
	ph := OutagePhase{Name: name, Patients: opts.Patients}
	plog := quiet
	if opts.Logger != nil {
		plog = opts.Logger
	}
	p := pipeline.New(pipeline.Options{Log: l, Mappings: func() *mappings.Set { return set }, Sink: sink, Logger: plog,
		ProbeMin: opts.ProbeMin, ProbeMax: opts.ProbeMax, NoBreaker: opts.NoBreaker, BackoffMin: opts.BackoffMin})
	back := time.Now()
	if !opts.Baseline {
		back = back.Add(opts.Outage)
		resp, err := hc.Post(faultURL, "application/json", strings.NewReader(fmt.Sprintf(`{"status":503,"seconds":%g}`, opts.Outage.Seconds())))
		if err != nil {
			return ph, err
		}
		resp.Body.Close()
	}
	start := time.Now()
	pctx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = p.Run(pctx) }()
	defer func() { stop(); <-stopped }()
	intervalAtBack := make(chan time.Duration, 1)
	go func() {
		sleep(pctx, time.Until(back))
		intervalAtBack <- p.Breaker().Interval
	}()
	// The burst: appended by 16 senders at once (group commits), as many
	// EHR connections would.
	next := make(chan int)
	errs := make(chan error, 16)
	for range 16 {
		go func() {
			var err error
			for n := range next {
				if err == nil {
					err = appendPatient(ctx, l, n)
					p.Notify()
				}
			}
			errs <- err
		}()
	}
	for n := range opts.Patients {
		next <- n
	}
	close(next)
	for range 16 {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		return ph, err
	}
	for ctx.Err() == nil {
		st, err := l.Stats()
		if err != nil {
			return ph, err
		}
		if st.States[checkpoint.Done] == int64(opts.Patients) {
			break
		}
		if st.States[checkpoint.Dead] > 0 {
			return ph, fmt.Errorf("%s: %d records dead", name, st.States[checkpoint.Dead])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := ctx.Err(); err != nil {
		return ph, err
	}
	ph.Elapsed = time.Since(start)
	var first time.Time
	err = l.All(func(r *checkpoint.Record) bool {
		if r.State == checkpoint.Done && (first.IsZero() || r.DoneAt.Before(first)) {
			first = r.DoneAt
		}
		return true
	})
	if err != nil {
		return ph, err
	}
	ph.DrainStart = first.Sub(back)
	st := sb.Stats()
	ph.Requests, ph.Probes = st.RequestsTotal, p.Breaker().Probes
	if opts.CRM == "dataverse" {
		ph.Operations = dataverseOperations(st.ByEndpoint)
	}
	select {
	case ph.ProbeInterval = <-intervalAtBack:
	default:
	}
	return ph, nil
}

// appendPatient appends patient n's ADT^A08 to l.
func appendPatient(ctx context.Context, l *checkpoint.Log, n int) error {
	msg := crmMessage(n, n)
	m, err := hl7.Parse(msg)
	if err != nil {
		return err
	}
	_, err = l.Append(ctx, checkpoint.Entry{Key: ehr.RecordKey("bench", m.Header()), Source: "bench", Kind: checkpoint.KindHL7v2,
		Hash: ehr.ContentHash(m, nil), Lane: ehr.LaneKey(m), Payload: msg, Ack: []byte("AA")})
	return err
}

// dataverseOperations counts the Dataverse Web API operations the sandbox
// ran (single requests and each part of a $batch, probes included), not
// the $batch envelopes nor token requests.
func dataverseOperations(by map[string]int64) int64 {
	var n int64
	for k, v := range by {
		if strings.HasPrefix(k, "dv_") && k != "dv_batch" && k != "dv_token" {
			n += v
		}
	}
	return n
}

// writeOutage prints the outage phases (the same burst to a healthy CRM,
// during the outage without the breaker and with it), and the goal.
func writeOutage(w io.Writer, healthy, with, without OutagePhase) error {
	var b strings.Builder
	dv := healthy.Operations > 0
	opsHead := ""
	if dv {
		opsHead = fmt.Sprintf(" %10s %11s", "operations", "ops/patient")
	}
	fmt.Fprintf(&b, "\n%-48s %8s %9s %7s %12s %10s%s\n", "outage phase", "patients", "requests", "probes", "req/patient", "drain in", opsHead)
	for _, p := range []OutagePhase{healthy, without, with} {
		ops := ""
		if dv {
			ops = fmt.Sprintf(" %10d %11.4f", p.Operations, float64(p.Operations)/float64(max(p.Patients, 1)))
		}
		fmt.Fprintf(&b, "%-48s %8d %9d %7d %12.4f %10s%s\n", p.Name, p.Patients, p.Requests, p.Probes, p.PerPatient(), p.DrainStart.Round(10*time.Millisecond), ops)
	}
	ratio := 0.0
	if without.PerPatient() > 0 {
		ratio = with.PerPatient() / without.PerPatient()
	}
	fmt.Fprintf(&b, "outage: %.4f requests per patient, all retries, probes and tokens included (goal ≤ %g) %s; %.2f of the cost without the breaker\n",
		with.PerPatient(), GoalOutageRequests, verdict(with.PerPatient() <= GoalOutageRequests), ratio)
	fmt.Fprintf(&b, "outage: %+d requests over the same burst to a healthy CRM (%.4f per patient), %d of them probes\n",
		with.Requests-healthy.Requests, float64(with.Requests-healthy.Requests)/float64(max(with.Patients, 1)), with.Probes)
	if dv {
		fmt.Fprintf(&b, "outage: Dataverse ran %+d operations over the healthy burst (entitlement counts operations, in a $batch or not)\n",
			with.Operations-healthy.Operations)
	}
	fmt.Fprintf(&b, "outage: drain began %s after the CRM was back (probe interval then %s) %s\n", with.DrainStart.Round(10*time.Millisecond),
		with.ProbeInterval, verdict(with.DrainStart <= with.ProbeInterval+time.Second))
	_, err := io.WriteString(w, b.String())
	return err
}

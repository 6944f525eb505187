package bench

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/dynamics"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/connectors/salesforce"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/pipeline"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// CRM benchmark goals.
const (
	GoalBacklogRequests          = 0.02 // Salesforce requests per record, draining a backlog
	GoalBacklogRequestsDataverse = 0.1  // Dataverse requests per record, draining a backlog
	GoalTrickleRequests          = 0.2  // CRM requests per record, at 10 msg/s
	GoalTrickleLatency           = time.Second
)

// CRMOptions configure CRM. Zero values select the defaults.
type CRMOptions struct {
	// CRM is the sandbox side the pipeline writes to: "salesforce" (the
	// default) or "dataverse".
	CRM string
	// Mappings is the mapping set directory (Health Cloud, or Dataverse
	// for the dataverse side).
	Mappings string
	// Backlog is the number of records queued during an outage; 2000.
	Backlog int
	// Patients spreads the messages; 200.
	Patients int
	// TrickleRate (msg/s) and TrickleFor; 10 msg/s for 20s.
	TrickleRate float64
	TrickleFor  time.Duration
	// Latency is the CRM latency injected in the last phase; 50ms.
	Latency time.Duration
	Dir     string
	// Outage is the length of the 503 outage of the outage phases (a
	// burst of OutagePatients, one message each, as the outage starts,
	// with the breaker and without); 15s, negative to skip them.
	Outage         time.Duration
	OutagePatients int
	// ProbeMax caps the breaker's probe interval; 30s.
	ProbeMax time.Duration
}

// CRMPhase is one phase's figures.
type CRMPhase struct {
	Name     string
	Records  int
	Ops      int
	Requests int64 // CRM API requests, token included
	Elapsed  time.Duration
	Rate     float64 // records per second
	// Latency from a record's arrival to its being done.
	P50, P99 time.Duration
}

// PerRecord is requests per record.
func (p CRMPhase) PerRecord() float64 { return float64(p.Requests) / float64(max(p.Records, 1)) }

// CRMReport holds the phases.
type CRMReport struct {
	Backlog, Trickle, Slow CRMPhase
	// Outage is the burst during an outage with the breaker, NoBreaker
	// the same without (the behaviour before issue 27), Healthy the same
	// burst to a healthy CRM; zero when skipped.
	Outage, NoBreaker, Healthy OutagePhase
}

// CRM measures how economically and how fast the pipeline sends records to
// the CRM sandbox: a backlog drained after an outage, a trickle, and a
// backlog with CRM latency. It prints a table to w.
func CRM(ctx context.Context, opts CRMOptions, w io.Writer) (CRMReport, error) {
	if opts.Backlog <= 0 {
		opts.Backlog = 2000
	}
	if opts.Patients <= 0 {
		opts.Patients = 200
	}
	if opts.TrickleRate <= 0 {
		opts.TrickleRate = 10
	}
	if opts.TrickleFor <= 0 {
		opts.TrickleFor = 20 * time.Second
	}
	if opts.Latency <= 0 {
		opts.Latency = 50 * time.Millisecond
	}
	goal, setName := GoalBacklogRequests, "Health Cloud"
	if opts.CRM == "dataverse" {
		goal, setName = GoalBacklogRequestsDataverse, "Dataverse"
	}
	set, err := mappings.Load([]string{opts.Mappings}, mappings.Options{Zone: time.UTC})
	if err != nil {
		return CRMReport{}, fmt.Errorf("bench: mappings: %w", err)
	}
	root, err := os.MkdirTemp(opts.Dir, "ehrbridge-crm-bench-")
	if err != nil {
		return CRMReport{}, err
	}
	defer os.RemoveAll(root)
	var rep CRMReport
	if rep.Backlog, err = crmPhase(ctx, root, set, "backlog of "+fmt.Sprint(opts.Backlog)+" after an outage", opts, 0, 0); err != nil {
		return rep, err
	}
	if rep.Trickle, err = crmPhase(ctx, root, set, fmt.Sprintf("trickle at %g msg/s", opts.TrickleRate), opts, opts.TrickleRate, 0); err != nil {
		return rep, err
	}
	if rep.Slow, err = crmPhase(ctx, root, set, fmt.Sprintf("backlog with %v CRM latency", opts.Latency), opts, 0, opts.Latency); err != nil {
		return rep, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ehrbridge CRM benchmark: ADT^A08 messages for %d patients, %s mappings, the CRM sandbox (%s side) on loopback\n\n", opts.Patients, setName, cmp.Or(opts.CRM, "salesforce"))
	fmt.Fprintf(&b, "%-36s %8s %6s %9s %9s %9s %9s %9s\n", "phase", "records", "ops", "requests", "req/rec", "rec/s", "p50 ms", "p99 ms")
	for _, p := range []CRMPhase{rep.Backlog, rep.Trickle, rep.Slow} {
		fmt.Fprintf(&b, "%-36s %8d %6d %9d %9.4f %9.0f %9s %9s\n", p.Name, p.Records, p.Ops, p.Requests, p.PerRecord(), p.Rate, ms(p.P50), ms(p.P99))
	}
	fmt.Fprintf(&b, "\nbacklog: %.4f requests per record (one request per op would be %.2f) (goal ≤ %g) %s\n",
		rep.Backlog.PerRecord(), float64(rep.Backlog.Ops)/float64(rep.Backlog.Records), goal, verdict(rep.Backlog.PerRecord() <= goal))
	fmt.Fprintf(&b, "trickle: %.4f requests per record (goal ≤ %g) %s; arrival to done p99 %s ms (goal ≤ %s ms) %s\n",
		rep.Trickle.PerRecord(), GoalTrickleRequests, verdict(rep.Trickle.PerRecord() <= GoalTrickleRequests), ms(rep.Trickle.P99), ms(GoalTrickleLatency),
		verdict(rep.Trickle.P99 <= GoalTrickleLatency+200*time.Millisecond))
	if rep.Backlog.Rate > 0 {
		fmt.Fprintf(&b, "drain with %v CRM latency: %.0f records/s, %.2f of the rate without\n", opts.Latency, rep.Slow.Rate, rep.Slow.Rate/rep.Backlog.Rate)
	}
	if _, err = io.WriteString(w, b.String()); err != nil || opts.Outage < 0 {
		return rep, err
	}
	oo := OutageOptions{CRM: opts.CRM, Mappings: opts.Mappings, Dir: opts.Dir, Patients: opts.OutagePatients, Outage: opts.Outage, ProbeMax: opts.ProbeMax}
	healthy := oo
	healthy.Baseline = true
	if rep.Healthy, err = Outage(ctx, healthy); err != nil {
		return rep, err
	}
	if rep.Outage, err = Outage(ctx, oo); err != nil {
		return rep, err
	}
	oo.NoBreaker = true
	if rep.NoBreaker, err = Outage(ctx, oo); err != nil {
		return rep, err
	}
	return rep, writeOutage(w, rep.Healthy, rep.Outage, rep.NoBreaker)
}

// crmPhase runs one phase in a fresh log and sandbox: a backlog (rate 0)
// appended before the pipeline starts, or a trickle at rate msg/s.
func crmPhase(ctx context.Context, root string, set *mappings.Set, name string, opts CRMOptions, rate float64, latency time.Duration) (CRMPhase, error) {
	dir, err := os.MkdirTemp(root, "phase-")
	if err != nil {
		return CRMPhase{}, err
	}
	quiet := slog.New(slog.DiscardHandler)
	l, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Logger: quiet})
	if err != nil {
		return CRMPhase{}, err
	}
	defer l.Close()
	sb, err := sandbox.New(sandbox.Options{Logger: quiet})
	if err != nil {
		return CRMPhase{}, err
	}
	defer sb.Close()
	sink, faultURL, hc, err := benchSink(sb, opts.CRM, quiet)
	if err != nil {
		return CRMPhase{}, err
	}
	if latency > 0 {
		resp, err := hc.Post(faultURL, "application/json", strings.NewReader(fmt.Sprintf(`{"latency_ms":%d}`, latency.Milliseconds())))
		if err != nil {
			return CRMPhase{}, err
		}
		resp.Body.Close()
	}
	p := pipeline.New(pipeline.Options{Log: l, Mappings: func() *mappings.Set { return set }, Sink: sink, Logger: quiet})
	pctx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	startPipeline := func() {
		go func() { defer close(stopped); _ = p.Run(pctx) }()
	}
	defer func() { stop(); <-stopped }()

	ops := 0
	appendOne := func(n int) error {
		msg := crmMessage(n, n%opts.Patients)
		m, err := hl7.Parse(msg)
		if err != nil {
			return err
		}
		res, err := set.Map(mappings.Input{HL7: m})
		if err != nil {
			return err
		}
		ops += len(res.Ops)
		_, err = l.Append(ctx, checkpoint.Entry{Key: ehr.RecordKey("bench", m.Header()), Source: "bench", Kind: checkpoint.KindHL7v2,
			Hash: ehr.ContentHash(m, nil), Lane: ehr.LaneKey(m), Payload: msg, Ack: []byte("AA")})
		p.Notify()
		return err
	}
	records := opts.Backlog
	start := time.Now()
	if rate == 0 {
		for n := range records {
			if err := appendOne(n); err != nil {
				return CRMPhase{}, err
			}
		}
		start = time.Now()
		startPipeline()
	} else {
		startPipeline()
		records = int(rate * opts.TrickleFor.Seconds())
		gap := time.Duration(float64(time.Second) / rate)
		next := time.Now()
		for n := range records {
			sleep(ctx, time.Until(next))
			if err := appendOne(n); err != nil {
				return CRMPhase{}, err
			}
			next = next.Add(gap)
		}
	}
	// Wait for every record to be done.
	for ctx.Err() == nil {
		st, err := l.Stats()
		if err != nil {
			return CRMPhase{}, err
		}
		if st.States[checkpoint.Done] == int64(records) {
			break
		}
		if st.States[checkpoint.Dead] > 0 {
			return CRMPhase{}, fmt.Errorf("%s: %d records dead", name, st.States[checkpoint.Dead])
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	var lat []time.Duration
	err = l.All(func(r *checkpoint.Record) bool {
		if r.State == checkpoint.Done {
			lat = append(lat, r.DoneAt.Sub(r.Received))
		}
		return true
	})
	if err != nil {
		return CRMPhase{}, err
	}
	slices.Sort(lat)
	ph := CRMPhase{Name: name, Records: records, Ops: ops, Requests: sb.Stats().RequestsTotal, Elapsed: elapsed,
		P50: percentile(lat, 0.5), P99: percentile(lat, 0.99)}
	if rate == 0 {
		ph.Rate = float64(records) / elapsed.Seconds()
	} else {
		ph.Rate = rate
	}
	return ph, nil
}

// crmMessage is an ADT^A08 with a visit: a patient and an encounter.
func crmMessage(n, p int) []byte {
	ts := "20260105103000"
	return []byte(fmt.Sprintf("MSH|^~\\&|EHR|GENHOSP|EHRBRIDGE|CRM|%s||ADT^A08^ADT_A01|B%07d|P|2.5.1\r", ts, n) +
		"EVN|A08|" + ts + "\r" +
		fmt.Sprintf("PID|1||P%05d^^^GENHOSP^MR||PATIENT%05d^V%07d||19700101|F\r", p, p, n) +
		fmt.Sprintf("PV1|1|I|4WEST^401^B||||||||||||||||V%05d^^^GENHOSP^VN|||||||||||||||||||||||||%s\r", p, ts))
}

// benchSink serves the sandbox's side for crm and returns a sink on it,
// the fault endpoint and an HTTP client that reaches it.
func benchSink(sb *sandbox.Server, crm string, quiet *slog.Logger) (connectors.Sink, string, *http.Client, error) {
	return benchSinkWait(sb, crm, quiet, 0)
}

// benchSinkWait is benchSink with the Salesforce client's first retry
// wait (tests compress time with it); zero keeps the client's default.
func benchSinkWait(sb *sandbox.Server, crm string, quiet *slog.Logger, retryWait time.Duration) (connectors.Sink, string, *http.Client, error) {
	if crm != "dataverse" {
		addr, err := sb.Listen("127.0.0.1:0")
		if err != nil {
			return nil, "", nil, err
		}
		base := "http://" + addr.String()
		client, err := salesforce.New(salesforce.Config{LoginURL: base, ClientID: "sandbox-client", ClientSecret: "sandbox-secret",
			Auth: salesforce.Auth{ClientCredentials: true}, Logger: quiet, RetryWaitMin: retryWait})
		if err != nil {
			return nil, "", nil, err
		}
		return &salesforce.Sink{Client: client}, base + "/sandbox/v1/faults", http.DefaultClient, nil
	}
	certPEM, keyPEM, err := sandbox.NewCert()
	if err != nil {
		return nil, "", nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "", nil, err
	}
	addr, err := sb.ListenTLS("127.0.0.1:0", cert)
	if err != nil {
		return nil, "", nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 32}, Timeout: time.Minute}
	base := "https://" + addr.String()
	cred, err := dynamics.NewCredential(dynamics.Auth{TenantID: "sandbox-tenant", ClientID: "sandbox-client", ClientSecret: "sandbox-secret",
		AuthorityHost: base, HTTPClient: hc})
	if err != nil {
		return nil, "", nil, err
	}
	client, err := dynamics.New(dynamics.Config{URL: base, Credential: cred, HTTPClient: hc, Logger: quiet})
	if err != nil {
		return nil, "", nil, err
	}
	return &dynamics.Sink{Client: client}, base + "/sandbox/v1/faults", hc, nil
}

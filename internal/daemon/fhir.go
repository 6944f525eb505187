package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/robfig/cron/v3"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// fhirSources polls the configured FHIR servers on their schedules and
// serves their subscription endpoints.
type fhirSources struct {
	cron      *cron.Cron
	cancel    context.CancelFunc
	startup   sync.WaitGroup // the polls at start, and catch-up polls
	sources   []fhirEntry    // in configuration order, for /status and /metrics
	endpoints []*notifyEndpoint
	log       *slog.Logger
	// cp is the log the polls store into: while it has a storage problem
	// they are skipped (fhirPoll.skipped) and catchUp runs them once it
	// ends.
	cp      *checkpoint.Log
	mu      sync.Mutex // guards stopped, and startup.Add against stop's Wait
	stopped bool
	polls   []*fhirPoll
}

// fhirPoll is one source's poll job and whether a poll was skipped for a
// storage problem.
type fhirPoll struct {
	job     cron.Job
	skipped atomic.Bool
}

// fhirEntry is one running FHIR source.
type fhirEntry struct {
	cfg config.FHIRSource
	src *ehr.FHIRSource
}

// notifyEndpoint is one source's subscription endpoint.
type notifyEndpoint struct {
	source   string
	server   *http.Server
	listener net.Listener
}

// NewFHIRSource builds the poller of a configured FHIR source (the daemon
// and `ehrbridge backfill` share it).
func NewFHIRSource(sc config.FHIRSource, cp *checkpoint.Log, maps func() *mappings.Set, log *slog.Logger) (*ehr.FHIRSource, error) {
	auth, err := sc.AuthConfig.TokenSource("system/*.read")
	if err != nil {
		return nil, err
	}
	client := &fhirhttp.Client{Base: sc.BaseURL, Auth: auth}
	return &ehr.FHIRSource{Cfg: sc.FHIRSourceConfig,
		Client: client, Log: cp, Mappings: maps, Logger: log.With("component", "fhir", "source", sc.Name)}, nil
}

// newFHIRSources builds every configured FHIR source, by name.
func newFHIRSources(cfg *config.Config, cp *checkpoint.Log, maps func() *mappings.Set, log *slog.Logger) (map[string]*ehr.FHIRSource, error) {
	out := map[string]*ehr.FHIRSource{}
	for _, sc := range cfg.Sources.FHIR {
		src, err := NewFHIRSource(sc, cp, maps, log)
		if err != nil {
			return nil, fmt.Errorf("sources.fhir %s: %w", sc.Name, err)
		}
		out[sc.Name] = src
	}
	return out, nil
}

// patientResolvers gives the pipeline each FHIR source's resolver of
// patient references.
func patientResolvers(srcs map[string]*ehr.FHIRSource) func(string) mappings.PatientResolver {
	return func(name string) mappings.PatientResolver {
		if s, ok := srcs[name]; ok {
			return s
		}
		return nil
	}
}

// startFHIR polls each FHIR source at once (catching up on what changed
// while the daemon was down) and then on its schedule, and opens the
// subscription endpoints; nil when there is no FHIR source.
func startFHIR(cfg *config.Config, cp *checkpoint.Log, srcs map[string]*ehr.FHIRSource, notify func(), errc chan<- error, log *slog.Logger) (*fhirSources, error) {
	if len(cfg.Sources.FHIR) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fhirSources{cron: cron.New(), cancel: cancel, log: log, cp: cp}
	fail := func(err error) (*fhirSources, error) {
		cancel()
		for _, ep := range f.endpoints {
			ep.listener.Close()
		}
		return nil, err
	}
	for _, sc := range cfg.Sources.FHIR {
		src := srcs[sc.Name]
		src.Appended = notify
		f.sources = append(f.sources, fhirEntry{cfg: sc, src: src})
		if sub := sc.Subscription; sub != nil {
			ep, err := newNotifyEndpoint(sc.Name, sub, src, log)
			if err != nil {
				return fail(fmt.Errorf("sources.fhir %s subscription: %w", sc.Name, err))
			}
			f.endpoints = append(f.endpoints, ep)
		}
		srcLog := src.Logger
		fp := &fhirPoll{}
		// One chain per source: a scheduled poll is skipped while the
		// previous one (or the one at start) still runs.
		poll := cron.NewChain(cron.SkipIfStillRunning(cron.DiscardLogger)).Then(cron.FuncJob(func() {
			guard(srcLog, errc, "sources.fhir "+sc.Name+" poll", func() { runFHIRPoll(ctx, cp, src, fp, srcLog) })
		}))
		sched, err := config.ParseSchedule(sc.Schedule)
		if err != nil {
			return fail(fmt.Errorf("sources.fhir %s schedule: %w", sc.Name, err))
		}
		f.cron.Schedule(sched, poll)
		fp.job = poll
		f.polls = append(f.polls, fp)
		log.Info("fhir source polling", "source", sc.Name, "schedule", sc.Schedule, "types", len(sc.Types))
	}
	for _, ep := range f.endpoints {
		go guard(log, errc, "sources.fhir "+ep.source+" subscription endpoint", func() {
			var err error
			if ep.server.TLSConfig != nil {
				err = ep.server.ServeTLS(ep.listener, "", "")
			} else {
				err = ep.server.Serve(ep.listener)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("sources.fhir %s subscription endpoint: %w", ep.source, err)
			}
		})
		log.Info("fhir subscription endpoint listening", "source", ep.source, "listen", ep.listener.Addr().String(),
			"tls", ep.server.TLSConfig != nil)
	}
	f.cron.Start()
	for _, fp := range f.polls {
		f.startup.Add(1)
		go func() {
			defer f.startup.Done()
			fp.job.Run()
		}()
	}
	return f, nil
}

// runFHIRPoll is one scheduled poll of a FHIR source.
func runFHIRPoll(ctx context.Context, cp *checkpoint.Log, src *ehr.FHIRSource, fp *fhirPoll, srcLog *slog.Logger) {
	if cp.StorageProblem() != nil {
		// What it found could not be stored: no request is spent.
		// storageLoop reports the problem and runs the poll when it
		// ends (catchUp).
		fp.skipped.Store(true)
		return
	}
	fp.skipped.Store(false)
	st, err := src.Poll(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		srcLog.Warn("polling the FHIR server failed; the next poll resumes from the last stored page", "err", err, "added", st.Added)
	case st.Added > 0:
		srcLog.Info("FHIR resources received", "added", st.Added, "pages", st.Pages)
	}
}

// catchUp runs the polls skipped while the log could not be written
// (storageLoop calls it when the problem ends); safe on nil.
func (f *fhirSources) catchUp() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	for _, fp := range f.polls {
		if fp.skipped.Load() {
			f.startup.Add(1)
			go func() {
				defer f.startup.Done()
				fp.job.Run()
			}()
		}
	}
}

// newNotifyEndpoint binds a source's subscription endpoint (failing at
// once when the address is taken).
func newNotifyEndpoint(name string, sub *config.FHIRSubscription, src *ehr.FHIRSource, log *slog.Logger) (*notifyEndpoint, error) {
	secret := ""
	if sub.Secret.IsSet() {
		var err error
		if secret, err = sub.Secret.Resolve(); err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle(sub.Path, src.NotifyHandler(sub.Header, secret))
	srv := &http.Server{Handler: mux}
	harden(srv, log.With("source", name), "fhir subscription endpoint")
	if sub.TLS != nil {
		tc, err := sub.TLS.Config()
		if err != nil {
			return nil, err
		}
		srv.TLSConfig = tc
		srv.ConnState = logTLSClient(log.With("source", name))
	}
	l, err := net.Listen("tcp", sub.Listen)
	if err != nil {
		return nil, err
	}
	return &notifyEndpoint{source: name, server: srv, listener: l}, nil
}

// closeIntake stops the subscription endpoints: no new notification is
// taken, those in flight are stored and answered (within ctx).
func (f *fhirSources) closeIntake(ctx context.Context) {
	if f == nil {
		return
	}
	for _, ep := range f.endpoints {
		if err := ep.server.Shutdown(ctx); err != nil {
			f.log.Warn("fhir subscription endpoint did not drain in time; connections closed", "source", ep.source)
		}
	}
}

// stop ends the polls; one under way stops at its next page.
func (f *fhirSources) stop() {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	f.cancel()
	<-f.cron.Stop().Done()
	f.startup.Wait()
}

// NotifyAddrs returns the bound address of each subscription endpoint, by
// source name.
func (d *Daemon) NotifyAddrs() map[string]net.Addr {
	out := map[string]net.Addr{}
	if d.fhir != nil {
		for _, ep := range d.fhir.endpoints {
			out[ep.source] = ep.listener.Addr()
		}
	}
	return out
}

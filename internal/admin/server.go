package admin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/console"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
	"github.com/ehrbridge/ehrbridge/internal/pipeline"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// Status is what the admin endpoint reports on: the daemon implements it
// by asking each of its parts for its status, read at the request (or
// scrape). Counts, states, names and addresses only, never message data.
type Status interface {
	// Ready is whether every part has started.
	Ready() bool
	// StorageProblem says why the data directory cannot be written, ""
	// when it can.
	StorageProblem() string
	// Mappings is the running mapping set and its reloads.
	Mappings() Mappings
	// MLLPSources are the MLLP sources, in configuration order.
	MLLPSources() []MLLPSource
	// FHIRSources are the FHIR sources, in configuration order; nil
	// without any.
	FHIRSources() []FHIRSource
	// CRM is the CRM side, nil when no CRM is configured.
	CRM() *CRM
	// Insecure lists the plaintext opt-outs in use (insecure_plaintext).
	Insecure() []config.InsecureSetting
	// Writeback is the write-back of notes, nil when it is off.
	Writeback() *Writeback
}

// Writeback is the write-back's status: its poller of CRM notes and the
// EHR target it files them in. Counts, times and addresses only.
type Writeback struct {
	Schedule string
	// Target names the EHR target: "MLLP host:port", "file drop DIR" or
	// "FHIR URL" (URL credentials are redacted by the admin endpoint).
	Target                    string
	Polls, PollsFailed, Found int64
	LastPoll, LastPollOK      time.Time
	LastError                 string
}

// Mappings is the mapping set's status.
type Mappings struct {
	Names           []string // of the running set's mappings
	Loaded, Refused int64    // set loads since start, by result
	LastOK          bool     // the last reload was accepted
	LastReload      int64    // when the running set was loaded (Unix seconds)
	LastProblem     string   // why the last reload was refused
}

// MLLPSource is one MLLP source in /status. Counts only: no message data.
type MLLPSource struct {
	Name             string `json:"name"`
	Listen           string `json:"listen"`
	ConnectionsOpen  int64  `json:"connections_open"`
	ConnectionsTotal int64  `json:"connections_total"`
	Frames           int64  `json:"frames"`
	FramesTooLarge   int64  `json:"frames_too_large"`
	JunkBytes        int64  `json:"junk_bytes"`
	Accepted         int64  `json:"accepted"`
	Duplicates       int64  `json:"duplicates"`
	Conflicts        int64  `json:"conflicts"`
	Rejected         int64  `json:"rejected"`
	Errored          int64  `json:"errored"`
}

// FHIRSource is one FHIR source in /status: counts and times, no
// resource data. BaseURL and LastError are shown with URL credentials
// redacted.
type FHIRSource struct {
	Name                 string               `json:"name"`
	BaseURL              string               `json:"base_url"`
	Schedule             string               `json:"schedule"`
	Subscription         string               `json:"subscription,omitempty"` // the endpoint's address
	Deletes              string               `json:"deletes"`
	LastPoll             *time.Time           `json:"last_poll,omitempty"`
	LastPollOK           *time.Time           `json:"last_poll_ok,omitempty"`
	LastError            string               `json:"last_error,omitempty"`
	Polls                int64                `json:"polls"`
	PollsFailed          int64                `json:"polls_failed"`
	Stored               int64                `json:"stored"`
	Repeats              int64                `json:"repeats"`
	DeletesStored        int64                `json:"deletes_stored"`
	Notifications        int64                `json:"notifications"`
	NotificationsRefused int64                `json:"notifications_refused"`
	NotificationsFailed  int64                `json:"notifications_failed"`
	Watermarks           map[string]time.Time `json:"watermarks"`
	BulkExportPending    bool                 `json:"bulk_export_pending,omitempty"`
}

// CRM is the CRM side's status: the connector and the pipeline feeding it.
type CRM struct {
	Kind        string // "Salesforce" or "Dataverse"
	SandboxAddr string // the embedded sandbox's address, "" without one
	Breaker     pipeline.BreakerStatus
	PausedUntil time.Time // zero unless sending waits for the API allocation
	Requests    int64     // API requests sent
	// APIUsed and APILimit are the org's daily API usage as it last
	// reported it; APILimit 0 when none was reported.
	APIUsed, APILimit int
	// What the pipeline settled since start.
	Done, Retried, Dead, Skipped, Echoes, Warned int64
	// BySource is the same per record source (a source's name; "crm" for
	// notes).
	BySource map[string]pipeline.Settled
}

// Options configure the admin endpoint.
type Options struct {
	Config  *config.Config  // the admin section and the data directory
	TLS     *tls.Config     // admin.tls made by the caller; nil serves plain HTTP
	Log     *checkpoint.Log // the log the status and the log API read
	Status  Status
	Version string // reported by /status and the page
	Logger  *slog.Logger
	// Harden sets an HTTP server's limits, error log and panic recovery
	// (the daemon's, shared with its other HTTP servers); nil leaves the
	// server as made.
	Harden func(srv *http.Server, log *slog.Logger, component string)
	// ConnState logs the TLS client of each connection when TLS is on.
	ConnState func(log *slog.Logger) func(net.Conn, http.ConnState)
	// Mappings is the running mapping set (the console's patient search
	// and workbench); nil: none.
	Mappings func() *mappings.Set
	// MappingOptions load the set's files for the console's lint and
	// tests.
	MappingOptions mappings.Options
}

// Server serves /healthz, /readyz and /status on loopback by default, and
// the same on the admin socket (Linux) or pipe (Windows).
type Server struct {
	srv     *http.Server
	l       net.Listener // TCP; nil when admin.listen is off
	sock    net.Listener // the admin socket; nil when off or not served
	tls     bool         // l serves TLS (admin.tls)
	st      Status
	cp      *checkpoint.Log
	version string
	access  *logadmin.Access
	console *console.Console
}

// newServer listens on addr (TCP, "" for none; over TLS only when tc is
// set) and the socket (sock, a listener already made, or nil). /healthz and /readyz are open; /, /status
// and /metrics need the viewer role (or show counts with public_counts);
// the log API checks each call's role.
func newServer(addr string, tc *tls.Config, sock net.Listener, opts Options, access *logadmin.Access, logAPI http.Handler) (*Server, error) {
	log := opts.Logger
	a := &Server{sock: sock, st: opts.Status, cp: opts.Log, version: opts.Version, access: access}
	if addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("admin: listen on %s: %w", addr, err)
		}
		if tc != nil {
			// The TCP listener alone: the socket is local and the OS
			// names its caller. A plain HTTP request fails the
			// handshake and is answered 400 by net/http.
			tc = tc.Clone()
			tc.NextProtos = []string{"http/1.1"}
			l = tls.NewListener(l, tc)
			a.tls = true
		}
		a.l = l
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("GET /status", a.gate("status", a.status, a.statusCounts))
	metrics := metricsHandler(a, log).ServeHTTP
	mux.HandleFunc("GET /metrics", a.gate("metrics", metrics, metrics)) // counts only
	mux.HandleFunc("GET /{$}", a.gate("page", a.page, a.pageCounts))
	mux.Handle("/api/v1/log/", logAPI)
	con, err := console.New(console.Options{Log: opts.Log, Access: access, Overview: a.overview, Version: opts.Version,
		TLS: a.tls, Logger: log.With("component", "console"), Mappings: opts.Mappings, MappingPaths: opts.Config.Mappings.Paths,
		MappingOptions: opts.MappingOptions})
	if err != nil {
		if a.l != nil {
			a.l.Close()
		}
		return nil, err
	}
	a.console = con
	mux.Handle(console.Prefix, con)
	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext:       connContext,
	}
	if a.tls && opts.ConnState != nil {
		a.srv.ConnState = opts.ConnState(log.With("component", "admin"))
	}
	if opts.Harden != nil {
		opts.Harden(a.srv, log, "admin") // timeouts, redacted error log, panics recovered
	}
	return a, nil
}

// Serve serves the socket and the TCP listener until shutdown.
func (a *Server) Serve() error {
	ctx, cancel := context.WithCancel(context.Background())
	go a.console.Run(ctx) // samples the dashboard's rates until Serve returns
	defer cancel()
	errc := make(chan error, 2)
	n := 0
	for _, l := range []net.Listener{a.l, a.sock} {
		if l == nil {
			continue
		}
		n++
		go func() {
			if err := a.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
				return
			}
			errc <- nil
		}()
	}
	for range n {
		if err := <-errc; err != nil {
			return err
		}
	}
	return nil
}

// Addr is the TCP address, nil when admin.listen is off.
func (a *Server) Addr() net.Addr {
	if a.l == nil {
		return nil
	}
	return a.l.Addr()
}

// Shutdown stops serving within ctx and closes the listeners, also those
// never served (a start that failed after they were bound).
func (a *Server) Shutdown(ctx context.Context) {
	_ = a.srv.Shutdown(ctx)
	for _, l := range []net.Listener{a.l, a.sock} {
		if l != nil {
			_ = l.Close()
		}
	}
}

func (a *Server) readyz(w http.ResponseWriter, r *http.Request) {
	switch {
	case a.st.Ready():
		if p := a.st.StorageProblem(); p != "" {
			// Serving, but what arrives is answered AE: a balancer
			// should send it elsewhere.
			http.Error(w, "not ready: "+p, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ready")
	default:
		http.Error(w, "starting", http.StatusServiceUnavailable)
	}
}

// fhirStatus is the FHIR sources' status with the credentials of URLs
// redacted.
func (a *Server) fhirStatus() []FHIRSource {
	out := a.st.FHIRSources()
	for i := range out {
		out[i].BaseURL, out[i].LastError = redactURL(out[i].BaseURL), redactURLs(out[i].LastError)
	}
	return out
}

func (a *Server) status(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Version    string              `json:"version"`
		Sources    []MLLPSource        `json:"sources"`
		FHIR       []FHIRSource        `json:"fhir_sources,omitempty"`
		Checkpoint *logadmin.StatsView `json:"checkpoint,omitempty"`
		Commits    commitStatus        `json:"checkpoint_commits"`
		Mappings   mappingStatus       `json:"mappings"`
		Forwarding string              `json:"forwarding"`
		Storage    storageStatus       `json:"storage"`
		CRM        *crmStatus          `json:"crm,omitempty"`
		// Insecure lists the plaintext opt-outs in use (insecure_plaintext).
		Insecure []config.InsecureSetting `json:"insecure_settings,omitempty"`
	}{Version: a.version, Forwarding: a.forwarding(), FHIR: a.fhirStatus(), Commits: commitStatusOf(a.cp.CommitStats()),
		Storage: a.storageStatus(), Insecure: a.st.Insecure(), Sources: a.st.MLLPSources()}
	ms := a.st.Mappings()
	out.Mappings = mappingStatus{Names: ms.Names, LastReloadOK: ms.LastOK, LastProblem: ms.LastProblem}
	if st, err := a.cp.Stats(); err == nil {
		v := logadmin.StatsViewOf(st, time.Now())
		out.Checkpoint = &v
	}
	if c := a.st.CRM(); c != nil {
		out.CRM = &crmStatus{Kind: c.Kind, Breaker: breakerStatusOf(c.Breaker)}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

// storageStatus is /status's view of the data directory.
type storageStatus struct {
	Writable bool   `json:"writable"`
	Problem  string `json:"problem,omitempty"`
}

func (a *Server) storageStatus() storageStatus {
	p := a.st.StorageProblem()
	return storageStatus{Writable: p == "", Problem: p}
}

// crmStatus is the CRM side in /status.
type crmStatus struct {
	Kind    string        `json:"kind"`
	Breaker breakerStatus `json:"breaker"`
}

// breakerStatus is the pipeline's CRM breaker in /status: its state
// (closed: batches are sent; open: the CRM failed, no batch is sent until
// a probe is answered; probing: a probe is in flight), since when, and
// its probes. States, times, counts and CRM error codes only.
type breakerStatus struct {
	State         string     `json:"state"`
	Since         *time.Time `json:"since,omitempty"`
	Opened        int64      `json:"opened"`
	Probes        int64      `json:"probes"`
	NextProbe     *time.Time `json:"next_probe,omitempty"`
	ProbeInterval string     `json:"probe_interval,omitempty"`
	Reason        string     `json:"reason,omitempty"`
}

func breakerStatusOf(b pipeline.BreakerStatus) breakerStatus {
	if !b.Enabled {
		return breakerStatus{State: "disabled"}
	}
	out := breakerStatus{State: b.State.String(), Opened: b.Opened, Probes: b.Probes, Reason: b.Reason}
	if !b.Since.IsZero() {
		t := b.Since.UTC()
		out.Since = &t
	}
	if b.State != pipeline.BreakerClosed {
		out.ProbeInterval = b.Interval.String()
		if !b.Next.IsZero() {
			t := b.Next.UTC()
			out.NextProbe = &t
		}
	}
	return out
}

// commitStatus is the checkpoint log's group commits since start, for
// /status: what /metrics has as a histogram, for a reader without one.
type commitStatus struct {
	Count     uint64  `json:"count"`
	Appends   uint64  `json:"appends"`
	Failures  uint64  `json:"failures"`
	MeanBatch float64 `json:"mean_batch"`
	MeanMs    float64 `json:"mean_ms"`
	// Over100ms counts the commits that took longer than 100 ms: every
	// sender waiting on one waited as long for its ACK.
	Over100ms uint64 `json:"over_100ms"`
}

func commitStatusOf(s checkpoint.CommitStats) commitStatus {
	c := commitStatus{Count: s.Commits, Appends: s.Appends, Failures: s.Failures}
	if s.Commits > 0 {
		c.MeanBatch = float64(s.Appends) / float64(s.Commits)
		c.MeanMs = float64(s.Total) / float64(time.Millisecond) / float64(s.Commits)
	}
	c.Over100ms = s.Over(100 * time.Millisecond)
	return c
}

type mappingStatus struct {
	Names        []string `json:"names"`
	LastReloadOK bool     `json:"last_reload_ok"`
	// LastProblem is why the last reload was refused: file:line:col
	// messages about the mapping files.
	LastProblem string `json:"last_problem,omitempty"`
}

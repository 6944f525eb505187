package daemon

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
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
	"github.com/ehrbridge/ehrbridge/internal/pipeline"
)

// admin serves /healthz, /readyz and /status on loopback by default, and
// the same on the admin socket (Linux).
type admin struct {
	srv    *http.Server
	l      net.Listener // TCP; nil when admin.listen is off
	sock   net.Listener // the admin socket; nil when off or not served
	tls    bool         // l serves TLS (admin.tls)
	d      *Daemon
	access *logadmin.Access
}

// newAdmin listens on addr (TCP, "" for none; over TLS only when tc is
// set) and the socket (sock, a listener already made, or nil). /healthz and /readyz are open; /, /status
// and /metrics need the viewer role (or show counts with public_counts);
// the log API checks each call's role.
func newAdmin(addr string, tc *tls.Config, sock net.Listener, d *Daemon, access *logadmin.Access, logAPI http.Handler, log *slog.Logger) (*admin, error) {
	a := &admin{sock: sock, d: d, access: access}
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
	metrics := metricsHandler(d, log).ServeHTTP
	mux.HandleFunc("GET /metrics", a.gate("metrics", metrics, metrics)) // counts only
	mux.HandleFunc("GET /{$}", a.gate("page", a.page, a.pageCounts))
	mux.Handle("/api/v1/log/", logAPI)
	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext:       connContext,
	}
	if a.tls {
		a.srv.ConnState = logTLSClient(log.With("component", "admin"))
	}
	harden(a.srv, log, "admin") // timeouts, redacted error log, panics recovered (httpserver.go)
	return a, nil
}

// serve serves the socket and the TCP listener until shutdown.
func (a *admin) serve() error {
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

// addr is the TCP address, nil when admin.listen is off.
func (a *admin) addr() net.Addr {
	if a.l == nil {
		return nil
	}
	return a.l.Addr()
}

// shutdown stops serving within ctx and closes the listeners, also those
// never served (a start that failed after they were bound).
func (a *admin) shutdown(ctx context.Context) {
	_ = a.srv.Shutdown(ctx)
	for _, l := range []net.Listener{a.l, a.sock} {
		if l != nil {
			_ = l.Close()
		}
	}
}

func (a *admin) readyz(w http.ResponseWriter, r *http.Request) {
	select {
	case <-a.d.ready:
		if p := a.d.storageProblem(); p != "" {
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

// sourceStatus is one MLLP source in /status. Counts only: no message data.
type sourceStatus struct {
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

// fhirStatus is one FHIR source in /status: counts and times, no
// resource data.
type fhirStatus struct {
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

func (a *admin) fhirStatus() []fhirStatus {
	if a.d.fhir == nil {
		return nil
	}
	addrs := a.d.NotifyAddrs()
	var out []fhirStatus
	for _, e := range a.d.fhir.sources {
		c := &e.src.Counters
		st := fhirStatus{Name: e.cfg.Name, BaseURL: redactURL(e.cfg.BaseURL), Schedule: e.cfg.Schedule, Deletes: e.cfg.Deletes,
			LastError: redactURLs(c.LastError()), Polls: c.Polls.Load(), PollsFailed: c.PollsFailed.Load(), Stored: c.Stored.Load(),
			Repeats: c.Repeats.Load(), DeletesStored: c.Deletes.Load(), Notifications: c.Notifications.Load(),
			NotificationsRefused: c.Refused.Load(), NotificationsFailed: c.NotificationsFailed.Load(),
			Watermarks: map[string]time.Time{}}
		if st.Deletes == "" {
			st.Deletes = "ignore"
		}
		if addr, ok := addrs[e.cfg.Name]; ok {
			st.Subscription = addr.String()
		}
		if t := c.LastPoll(); !t.IsZero() {
			st.LastPoll = &t
		}
		if t := c.LastPollOK(); !t.IsZero() {
			st.LastPollOK = &t
		}
		for _, typ := range e.cfg.Types {
			if wm, err := e.src.Watermark(typ); err == nil && !wm.IsZero() {
				st.Watermarks[typ] = wm
			}
		}
		st.BulkExportPending, _ = e.src.BulkPending()
		out = append(out, st)
	}
	return out
}

func (a *admin) status(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Version    string              `json:"version"`
		Sources    []sourceStatus      `json:"sources"`
		FHIR       []fhirStatus        `json:"fhir_sources,omitempty"`
		Checkpoint *logadmin.StatsView `json:"checkpoint,omitempty"`
		Commits    commitStatus        `json:"checkpoint_commits"`
		Mappings   mappingStatus       `json:"mappings"`
		Forwarding string              `json:"forwarding"`
		Storage    storageStatus       `json:"storage"`
		CRM        *crmStatus          `json:"crm,omitempty"`
		// Insecure lists the plaintext opt-outs in use (insecure_plaintext).
		Insecure []config.InsecureSetting `json:"insecure_settings,omitempty"`
	}{Version: Version, Forwarding: a.forwarding(), FHIR: a.fhirStatus(), Commits: commitStatusOf(a.d.cp.CommitStats()),
		Storage: a.storageStatus(), Insecure: a.insecureStatus()}
	ms := a.d.maps
	for _, m := range ms.Current().Mappings {
		out.Mappings.Names = append(out.Mappings.Names, m.Name)
	}
	out.Mappings.LastReloadOK = ms.lastOK.Load()
	if p := ms.lastProblem.Load(); p != nil {
		out.Mappings.LastProblem = *p
	}
	for _, s := range a.d.sources {
		st := s.server.Stats()
		out.Sources = append(out.Sources, sourceStatus{
			Name: s.cfg.Name, Listen: s.listener.Addr().String(),
			ConnectionsOpen: st.ConnectionsOpen.Load(), ConnectionsTotal: st.ConnectionsTotal.Load(),
			Frames: st.Frames.Load(), FramesTooLarge: st.FramesTooLarge.Load(), JunkBytes: st.JunkBytes.Load(),
			Accepted: s.handler.Accepted.Load(), Duplicates: s.handler.Duplicates.Load(), Conflicts: s.handler.Conflicts.Load(),
			Rejected: s.handler.Rejected.Load(), Errored: s.handler.Errored.Load(),
		})
	}
	if st, err := a.d.cp.Stats(); err == nil {
		v := logadmin.StatsViewOf(st, time.Now())
		out.Checkpoint = &v
	}
	if c := a.d.crm; c != nil {
		out.CRM = &crmStatus{Kind: c.conn.Kind, Breaker: breakerStatusOf(c.pipe.Breaker())}
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

func (a *admin) storageStatus() storageStatus {
	p := a.d.storageProblem()
	return storageStatus{Writable: p == "", Problem: p}
}

// Version is reported by /status and recorded in the checkpoint log as
// the program that last wrote it; the command sets it at start.
var Version = "dev"

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

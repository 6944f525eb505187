package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/admin"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/crms"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// ShutdownTimeout bounds how long in-flight frames get to finish on stop.
const ShutdownTimeout = 15 * time.Second

// Daemon is a started configuration. Create it with Start.
type Daemon struct {
	log       *slog.Logger
	cp        *checkpoint.Log
	sources   []*source
	admin     *admin.Server // nil when admin.listen and admin.socket are off
	errc      chan error
	ready     chan struct{}
	stopSweep chan struct{}
	swept     chan struct{}
	maps      *mappingSet
	stopWatch chan struct{}
	crm       *crm
	fhir      *fhirSources
	insecure  []config.InsecureSetting // plaintext opt-outs in use, for /status
	// drainTimeout bounds the pipeline's sending after intake closes.
	drainTimeout time.Duration
	dataDir      string
	// storageLoop (storage.go) retries writes a full disk refused.
	stopStorage chan struct{}
	storageDone chan struct{}
	// group is the table of parts, started in order, stopped in reverse.
	group *runGroup
	// running is set once every part started: a stop then drains the
	// pipeline (a failed start does not).
	running atomic.Bool
}

type source struct {
	cfg      config.MLLPSource
	handler  *ehr.MLLPSource
	server   *mllp.Server
	listener net.Listener
}

// Start binds every listener (failing at once if one cannot be bound) and
// starts serving. The data directory is created if missing.
func Start(cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	return StartWith(cfg, log, StartOptions{})
}

// StartWith is Start with the command line's options. It refuses to start
// against a CRM other than the one the log's pending records were queued
// for (checkpoint.ErrCRMChanged) unless opts.AcceptCRMChange.
//
// The daemon is a table of parts (parts.go) started in order; when one
// fails to start, those already started are stopped in reverse and its
// error is returned, so a failed start leaves no listener bound.
func StartWith(cfg *config.Config, log *slog.Logger, opts StartOptions) (*Daemon, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		if checkpoint.StorageKindOf(err) == 0 {
			return nil, fmt.Errorf("creating data directory: %w", err)
		}
		// A file system mounted read-only (or full) before the start:
		// the log reports it and opens once the directory can be made.
		log.Warn("the data directory cannot be created; the checkpoint log opens once it can",
			"problem", describeStorage(checkpoint.StorageKindOf(err), cfg.DataDir))
	}
	d := &Daemon{log: log, errc: make(chan error, len(cfg.Sources.MLLP)+len(cfg.Sources.FHIR)+1), ready: make(chan struct{}),
		stopSweep: make(chan struct{}), swept: make(chan struct{}), stopWatch: make(chan struct{}),
		dataDir: cfg.DataDir, stopStorage: make(chan struct{}), storageDone: make(chan struct{})}
	if cfg.CRM != nil {
		d.drainTimeout = cfg.CRM.Pipeline.DrainTimeout.Std()
	}
	d.group = d.parts(cfg, opts)
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := d.group.start(ctx); err != nil {
		return nil, err
	}
	d.running.Store(true)
	// Every part has started: ready before the admin endpoint serves
	// (a run hook), so that its first /readyz answer is not "starting".
	close(d.ready)
	d.group.run()
	log.Info("mappings loaded", "mappings", len(d.maps.Current().Mappings), "watch", cfg.Mappings.Watch)
	switch {
	case d.crm == nil:
		log.Warn("no CRM is configured (crm section): messages are stored in the checkpoint log and acknowledged, not sent on")
	case d.crm.conn.SandboxAddr != "":
		log.Info("CRM: the embedded sandbox", "side", d.crm.conn.Kind, "listen", d.crm.conn.SandboxAddr)
	default:
		log.Info("CRM: " + d.crm.conn.Kind)
	}
	return d, nil
}

// parts is the daemon's table of parts in start order; they stop in
// reverse, which is the order a stop needs for exactly-once: intake (MLLP
// and FHIR) closes first, then the pipeline drains what is ready and
// stops, then the background loops and the admin endpoint end, and the
// checkpoint log closes last.
func (d *Daemon) parts(cfg *config.Config, opts StartOptions) *runGroup {
	log := d.log
	g := &runGroup{}
	g.add(part{name: "mappings", start: func() (err error) {
		d.maps, err = newMappingSet(cfg, log)
		return err
	}})
	g.add(part{name: "checkpoint log", start: func() error {
		copts := checkpoint.Options{
			Writer: "ehrbridge " + Version, Logger: log.With("component", "checkpoint"),
			// A log the disk keeps from opening (a first start on a full
			// disk, a migration, a read-only data directory) does not
			// stop the start: it is answered AE until storageLoop opens
			// it.
			DeferStorageErrors: true,
			CRM:                crms.Identity(cfg.CRM), AcceptCRMChange: opts.AcceptCRMChange,
		}
		if err := cfg.Checkpoint.Apply(&copts); err != nil {
			return err
		}
		var err error
		d.cp, err = checkpoint.Open(filepath.Join(cfg.DataDir, checkpoint.FileName), copts)
		if err != nil {
			return err
		}
		if copts.Keyring == nil {
			log.Warn("checkpoint payloads are stored unencrypted: configure checkpoint.encryption with key_env or key_file")
		}
		d.insecure = warnInsecure(cfg, log)
		return nil
	}, stop: func(context.Context) {
		if err := d.cp.Close(); err != nil {
			log.Error("closing the checkpoint log", "err", err)
		}
	}})
	// The admin endpoint binds here and serves once every part it
	// reports on is set.
	g.add(part{name: "admin endpoint", start: func() (err error) {
		d.admin, err = d.newAdmin(cfg)
		return err
	}, run: func() {
		if d.admin == nil {
			return
		}
		go guard(log, d.errc, "admin endpoint", func() {
			if err := d.admin.Serve(); err != nil {
				d.errc <- fmt.Errorf("admin: %w", err)
			}
		})
		d.admin.LogListening(log)
	}, stop: func(ctx context.Context) {
		if d.admin != nil {
			d.admin.Shutdown(ctx)
		}
	}})
	var looping bool
	g.add(part{name: "background loops", run: func() {
		looping = true
		go guard(log, d.errc, "checkpoint retention", func() { d.sweepLoop(cfg.Checkpoint.SweepInterval.Std()) })
		go guard(log, d.errc, "storage check", func() { d.storageLoop(StorageCheckInterval) })
		if cfg.Mappings.Watch {
			go guard(log, d.errc, "mapping watcher", func() { d.maps.watch(2*time.Second, d.stopWatch) })
		}
	}, stop: func(context.Context) {
		if !looping {
			return
		}
		close(d.stopSweep)
		close(d.stopWatch)
		close(d.stopStorage)
		<-d.swept
		<-d.storageDone
	}})
	var fhirSrcs map[string]*ehr.FHIRSource
	g.add(part{name: "FHIR clients", start: func() (err error) {
		fhirSrcs, err = newFHIRSources(cfg, d.cp, d.maps.Current, log)
		return err
	}})
	g.add(part{name: "CRM side", start: func() error {
		c, err := startCRM(cfg, d.cp, d.maps.Current, patientResolvers(fhirSrcs), d.errc, log)
		if err != nil {
			return fmt.Errorf("crm: %w", err)
		}
		d.crm = c
		return nil
	}, stop: func(context.Context) {
		if d.running.Load() {
			// No new records can arrive: let the pipeline send what is
			// ready, up to the drain deadline, then settle its batch
			// and stop.
			d.crm.drain(d.cp, d.drainTimeout, log)
		}
		d.crm.stop()
	}})
	g.add(part{name: "intake", start: func() error { return d.startIntake(cfg, fhirSrcs) }, stop: d.stopIntake})
	return g
}

// startIntake binds and serves the MLLP sources and starts the FHIR
// sources (their polls and subscription endpoints). On an error nothing of
// them stays bound.
func (d *Daemon) startIntake(cfg *config.Config, fhirSrcs map[string]*ehr.FHIRSource) error {
	log := d.log
	for _, sc := range cfg.Sources.MLLP {
		s, err := newSource(sc, d.cp, log, d.maps)
		if err != nil {
			d.closeListeners()
			return fmt.Errorf("source %s: %w", sc.Name, err)
		}
		s.handler.Appended = d.crm.notify
		d.sources = append(d.sources, s)
	}
	for _, s := range d.sources {
		go guard(log, d.errc, "source "+s.cfg.Name, func() {
			if err := s.server.Serve(s.listener); err != nil && !errors.Is(err, mllp.ErrServerClosed) {
				d.errc <- fmt.Errorf("source %s: %w", s.cfg.Name, err)
			}
		})
		log.Info("mllp source listening", "source", s.cfg.Name, "listen", s.listener.Addr().String(), "tls", tlsMode(s.cfg))
	}
	f, err := startFHIR(cfg, d.cp, fhirSrcs, d.crm.notify, d.errc, log)
	if err != nil {
		d.closeListeners()
		return err
	}
	d.fhir = f
	return nil
}

// stopIntake stops intake on every source, letting in-flight frames and
// notifications finish within ctx, then ends the FHIR polls.
func (d *Daemon) stopIntake(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range d.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.server.Shutdown(ctx); err != nil {
				d.log.Warn("mllp source did not drain in time; connections closed", "source", s.cfg.Name)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.fhir.closeIntake(ctx)
	}()
	wg.Wait()
	d.fhir.stop()
}

// newAdmin binds the admin endpoint (nil when it is off); it reads the
// parts through statusView.
func (d *Daemon) newAdmin(cfg *config.Config) (*admin.Server, error) {
	var tc *tls.Config
	if cfg.Admin.Listen != "" && cfg.Admin.TLS != nil {
		var err error
		if tc, err = cfg.Admin.TLS.Config(); err != nil {
			return nil, fmt.Errorf("admin.tls: %w", err)
		}
	}
	mopts, err := MappingOptions(cfg) // the set loaded with them: no error now
	if err != nil {
		return nil, err
	}
	return admin.New(admin.Options{Config: cfg, TLS: tc, Log: d.cp, Status: statusView{d}, Version: Version, Logger: d.log,
		Harden: harden, ConnState: logTLSClient, Mappings: d.maps.Current, MappingOptions: mopts})
}

// Version is reported by /status and recorded in the checkpoint log as
// the program that last wrote it; the command sets it at start.
var Version = "dev"

// sweepLoop applies retention at start and then every interval. A
// storage problem is storageLoop's to report: a sweep it refuses is not
// logged again.
func (d *Daemon) sweepLoop(every time.Duration) {
	defer close(d.swept)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		res, err := d.cp.Sweep()
		switch {
		case errors.Is(err, checkpoint.ErrStorage):
			d.log.Debug("checkpoint retention postponed: the data directory cannot be written", "err", err)
		case err != nil:
			d.log.Error("checkpoint retention failed; will retry", "err", err)
		case res.PayloadsDropped+res.RecordsDeleted+res.ConflictsPurged > 0:
			d.log.Info("checkpoint retention applied", "payloads_dropped", res.PayloadsDropped,
				"records_deleted", res.RecordsDeleted, "conflicts_purged", res.ConflictsPurged)
		}
		select {
		case <-d.stopSweep:
			return
		case <-t.C:
		}
	}
}

func tlsMode(sc config.MLLPSource) string {
	switch {
	case sc.TLS == nil:
		return "off"
	case sc.TLS.ClientCAFile != "":
		return "mutual"
	}
	return "on"
}

func newSource(sc config.MLLPSource, cp *checkpoint.Log, log *slog.Logger, maps *mappingSet) (*source, error) {
	hashIgnore, err := sc.HashIgnorePaths()
	if err != nil {
		return nil, err
	}
	h := &ehr.MLLPSource{Name: sc.Name, Logger: log, Log: cp, HashIgnore: hashIgnore, Lane: maps.lane}
	var tc *tls.Config
	if sc.TLS != nil {
		if tc, err = sc.TLS.Config(); err != nil {
			return nil, err
		}
	}
	srv := sc.NewServer(h, tc, log.With("source", sc.Name))
	l, err := srv.Listen(sc.Listen)
	if err != nil {
		return nil, err
	}
	return &source{cfg: sc, handler: h, server: srv, listener: l}, nil
}

// Wait blocks until ctx ends (a stop signal) or a part fails, then shuts
// down. It returns the failure, or nil after a requested stop.
func (d *Daemon) Wait(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
		d.log.Info("stopping")
	case err = <-d.errc:
		d.log.Error("a component failed; stopping", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	d.Shutdown(sctx)
	return err
}

// Shutdown stops the parts in reverse start order (see parts): intake
// closes and in-flight frames finish within ctx, the pipeline drains, the
// admin endpoint stops, the log closes. A second call does nothing.
func (d *Daemon) Shutdown(ctx context.Context) {
	d.group.stop(ctx)
	d.log.Info("stopped")
}

// MLLPAddrs returns the bound address of each MLLP source, by name.
func (d *Daemon) MLLPAddrs() map[string]net.Addr {
	out := map[string]net.Addr{}
	for _, s := range d.sources {
		out[s.cfg.Name] = s.listener.Addr()
	}
	return out
}

// AdminAddr returns the admin endpoint's address, or nil when disabled.
func (d *Daemon) AdminAddr() net.Addr {
	if d.admin == nil {
		return nil
	}
	return d.admin.Addr()
}

func (d *Daemon) closeListeners() {
	for _, s := range d.sources {
		s.listener.Close()
	}
}

// ReloadMappings re-reads the mapping files (SIGHUP). On problems the
// running mappings stay in use and the problems are returned.
func (d *Daemon) ReloadMappings() error { return d.maps.Reload("SIGHUP") }

// Mappings returns the running mapping set.
func (d *Daemon) Mappings() *mappings.Set { return d.maps.Current() }

// SandboxAddr returns the embedded CRM sandbox's address, or "".
func (d *Daemon) SandboxAddr() string {
	if d.crm == nil {
		return ""
	}
	return d.crm.conn.SandboxAddr
}

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
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
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
	admin     *admin
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
	maps, err := newMappingSet(cfg, log)
	if err != nil {
		return nil, err
	}
	keyring, err := Keyring(cfg.Checkpoint.Encryption)
	if err != nil {
		return nil, err
	}
	cp, err := checkpoint.Open(filepath.Join(cfg.DataDir, checkpoint.FileName), checkpoint.Options{
		Writer: "ehrbridge " + Version, Keyring: keyring, DedupeWindow: cfg.Checkpoint.DedupeWindow.Std(),
		PayloadRetention: cfg.Checkpoint.PayloadRetention.Std(), Logger: log.With("component", "checkpoint"),
		// A log the disk keeps from opening (a first start on a full disk,
		// a migration, a read-only data directory) does not stop the
		// start: it is answered AE until storageLoop opens it.
		DeferStorageErrors: true,
		CRM:                crms.Identity(cfg.CRM), AcceptCRMChange: opts.AcceptCRMChange,
	})
	if err != nil {
		return nil, err
	}
	if keyring == nil {
		log.Warn("checkpoint payloads are stored unencrypted: configure checkpoint.encryption with key_env or key_file")
	}
	d := &Daemon{log: log, cp: cp, errc: make(chan error, len(cfg.Sources.MLLP)+len(cfg.Sources.FHIR)+1), ready: make(chan struct{}),
		stopSweep: make(chan struct{}), swept: make(chan struct{}), maps: maps, stopWatch: make(chan struct{}),
		dataDir: cfg.DataDir, stopStorage: make(chan struct{}), storageDone: make(chan struct{})}
	if cfg.CRM != nil {
		d.drainTimeout = cfg.CRM.Pipeline.DrainTimeout.Std()
	}
	d.insecure = warnInsecure(cfg, log)
	fail := func(err error) (*Daemon, error) {
		d.closeListeners()
		d.crm.stop()
		cp.Close()
		return nil, err
	}
	fhirSrcs, err := newFHIRSources(cfg, cp, maps.Current, log)
	if err != nil {
		return fail(err)
	}
	crmSide, err := startCRM(cfg, cp, maps.Current, patientResolvers(fhirSrcs), d.errc, log)
	if err != nil {
		return fail(fmt.Errorf("crm: %w", err))
	}
	d.crm = crmSide
	for _, sc := range cfg.Sources.MLLP {
		s, err := newSource(sc, cp, log, maps)
		if err != nil {
			return fail(fmt.Errorf("source %s: %w", sc.Name, err))
		}
		s.handler.Appended = d.crm.notify
		d.sources = append(d.sources, s)
	}
	if d.admin, err = d.startAdmin(cfg, cp); err != nil {
		return fail(err)
	}
	for _, s := range d.sources {
		go guard(log, d.errc, "source "+s.cfg.Name, func() {
			if err := s.server.Serve(s.listener); err != nil && !errors.Is(err, mllp.ErrServerClosed) {
				d.errc <- fmt.Errorf("source %s: %w", s.cfg.Name, err)
			}
		})
		log.Info("mllp source listening", "source", s.cfg.Name, "listen", s.listener.Addr().String(), "tls", tlsMode(s.cfg))
	}
	if d.fhir, err = startFHIR(cfg, cp, fhirSrcs, d.crm.notify, d.errc, log); err != nil {
		return fail(err)
	}
	// The admin endpoint serves once everything it reports on is set.
	if d.admin != nil {
		go guard(log, d.errc, "admin endpoint", func() {
			if err := d.admin.serve(); err != nil {
				d.errc <- fmt.Errorf("admin: %w", err)
			}
		})
		d.admin.logListening(log)
	}
	go guard(log, d.errc, "checkpoint retention", func() { d.sweepLoop(cfg.Checkpoint.SweepInterval.Std()) })
	go guard(log, d.errc, "storage check", func() { d.storageLoop(StorageCheckInterval) })
	if cfg.Mappings.Watch {
		go guard(log, d.errc, "mapping watcher", func() { maps.watch(2*time.Second, d.stopWatch) })
	}
	log.Info("mappings loaded", "mappings", len(maps.Current().Mappings), "watch", cfg.Mappings.Watch)
	close(d.ready)
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

// Keyring builds the checkpoint keyring from the encryption config; nil
// config gives nil.
func Keyring(e *config.EncryptionConfig) (*checkpoint.Keyring, error) {
	if e == nil {
		return nil, nil
	}
	parse := func(what string, ref config.SecretRef) ([]byte, error) {
		if err := checkpoint.CheckKeyFile(ref.File); ref.File != "" && err != nil {
			return nil, fmt.Errorf("checkpoint encryption %s: %w", what, err)
		}
		s, err := ref.Resolve()
		if err != nil {
			return nil, fmt.Errorf("checkpoint encryption %s: %w", what, err)
		}
		k, err := checkpoint.ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("checkpoint encryption %s: %w", what, err)
		}
		return k, nil
	}
	active, err := parse("key", e.Key)
	if err != nil {
		return nil, err
	}
	var prev [][]byte
	for i, pk := range e.PreviousKeys {
		k, err := parse(fmt.Sprintf("previous_keys[%d]", i), pk.Key)
		if err != nil {
			return nil, err
		}
		prev = append(prev, k)
	}
	return checkpoint.NewKeyring(active, prev...)
}

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
	h := &ehr.MLLPSource{Name: sc.Name, Logger: log, Log: cp, HashIgnore: []hl7.Path{}, Lane: maps.lane}
	for _, p := range sc.HashIgnore {
		path, err := hl7.ParsePath(p)
		if err != nil {
			return nil, err
		}
		h.HashIgnore = append(h.HashIgnore, path)
	}
	srv := &mllp.Server{
		Handler:                  h,
		MaxFrameSize:             int(sc.MaxFrameSize),
		ReadTimeout:              time.Duration(sc.ReadTimeout),
		IdleTimeout:              time.Duration(sc.IdleTimeout),
		FirstFrameTimeout:        time.Duration(sc.FirstFrameTimeout),
		WriteTimeout:             time.Duration(sc.WriteTimeout),
		MaxConnections:           sc.MaxConnections,
		MaxConnectionsPerAddress: sc.MaxConnectionsPerAddress,
		Logger:                   log.With("source", sc.Name),
	}
	if sc.TLS != nil {
		tc, err := serverTLS(sc.TLS)
		if err != nil {
			return nil, err
		}
		srv.TLSConfig = tc
	}
	l, err := srv.Listen(sc.Listen)
	if err != nil {
		return nil, err
	}
	return &source{cfg: sc, handler: h, server: srv, listener: l}, nil
}

func serverTLS(t *config.TLSServer) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: loading certificate and key: %w", err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.MinVersion == "1.3" {
		conf.MinVersion = tls.VersionTLS13
	}
	if t.ClientCAFile != "" {
		pool, err := certPool(t.ClientCAFile, "client CA file")
		if err != nil {
			return nil, err
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
		if len(t.AllowedClients) > 0 {
			conf.VerifyConnection = mllp.AllowClients(t.AllowedClients)
		}
	}
	return conf, nil
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

// Shutdown stops intake on every source, lets in-flight frames finish
// within ctx, then stops the admin endpoint.
func (d *Daemon) Shutdown(ctx context.Context) {
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
	// No new records can arrive: let the pipeline send what is ready, up
	// to the drain deadline, then settle its batch and stop.
	d.crm.drain(d.cp, d.drainTimeout, d.log)
	d.crm.stop()
	close(d.stopSweep)
	close(d.stopWatch)
	close(d.stopStorage)
	<-d.swept
	<-d.storageDone
	if d.admin != nil {
		d.admin.shutdown(ctx)
	}
	if err := d.cp.Close(); err != nil {
		d.log.Error("closing the checkpoint log", "err", err)
	}
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
	return d.admin.addr()
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

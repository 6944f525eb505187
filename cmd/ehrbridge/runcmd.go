package main

import (
	ks "github.com/kardianos/service"

	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/ehrbridge/ehrbridge/installer"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/daemon"
	"github.com/ehrbridge/ehrbridge/internal/logging"
)

// loadConfig loads and lints a config file, printing every problem.
func loadConfig(file string, stderr io.Writer) (*config.Config, bool) {
	cfg, err := config.Load(file)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				fmt.Fprintln(stderr, p.String())
			}
		} else {
			fmt.Fprintf(stderr, "%s: %v\n", file, err)
		}
		return nil, false
	}
	return cfg, true
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fileFlag := fs.String("config", "", "config file (required)")
	acceptCRM := fs.Bool("accept-crm-change", false, "start although the CRM (org, environment) differs from the one the log's pending records were queued for: they go to the configured one")
	svcName := fs.String("service-name", installer.DefaultName, "the instance's service name (set by ehrbridge service install; names the Windows Event Log source)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ehrbridge run --config FILE [--accept-crm-change]\nRuns the daemon until SIGINT or SIGTERM (a second one forces the stop); SIGHUP reloads the mappings.\nRefuses a config that does not lint, and a CRM other than the one records pending in the log were queued for\n(unless --accept-crm-change). Under systemd (Type=notify) it reports ready, reloading and stopping;\nstarted by the Windows service manager it runs as that service.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	file := *fileFlag
	if file == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	if runtime.GOOS == "windows" && !ks.Interactive() {
		return runWindowsService(file, *svcName, daemon.StartOptions{AcceptCRMChange: *acceptCRM}, stderr)
	}
	cfg, ok := loadConfig(file, stderr)
	if !ok {
		fmt.Fprintf(stderr, "ehrbridge run: %s does not lint; not starting\n", file)
		return exitFailure
	}
	log, closeLog, err := newLogger(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "ehrbridge run: %v\n", err)
		return exitFailure
	}
	defer closeLog()
	// Signals are caught before the daemon reports ready: a supervisor
	// may stop or reload it as soon as /readyz answers.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := serve(ctx, cfg, file, daemon.StartOptions{AcceptCRMChange: *acceptCRM}, log, hup); err != nil {
		fmt.Fprintf(stderr, "ehrbridge run: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// serve runs the daemon until ctx ends, reloading the mappings on each
// value of reload, and keeps the service manager informed (sd_notify).
// After ctx ends, a second interrupt or termination signal forces the
// stop: the log is crash-safe, so nothing acknowledged is lost.
func serve(ctx context.Context, cfg *config.Config, file string, opts daemon.StartOptions, log *slog.Logger, reload <-chan os.Signal) error {
	daemon.Version = version
	log.Info("ehrbridge starting", "version", version, "config", file, "gomaxprocs", runtime.GOMAXPROCS(0))
	d, err := daemon.StartWith(cfg, log, opts)
	if err != nil {
		log.Error("ehrbridge could not start", "err", err)
		return err
	}
	notify := func(state string) {
		if _, err := installer.Notify(state); err != nil {
			log.Warn("could not tell the service manager", "state", strings.SplitN(state, "=", 2)[0], "err", err)
		}
	}
	notify("READY=1\nSTATUS=ready; ehrbridge " + version)
	stopping := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				notify("STOPPING=1\nSTATUS=stopping: intake closed, draining the pipeline")
				close(stopping)
				force := make(chan os.Signal, 1)
				signal.Notify(force, os.Interrupt, syscall.SIGTERM)
				<-force
				log.Warn("second stop signal: stopping now; records not yet sent stay in the log")
				os.Exit(exitFailure)
			case <-reload:
				notify("RELOADING=1")
				_ = d.ReloadMappings() // logged either way; the running set stays on failure
				notify("READY=1\nSTATUS=ready; mappings reloaded")
			}
		}
	}()
	err = d.Wait(ctx)
	if ctx.Err() != nil {
		<-stopping // the service manager has heard STOPPING=1
	} else {
		notify("STOPPING=1\nSTATUS=a component failed")
	}
	return err
}

// runWindowsService runs the daemon under the Windows service control
// manager, logging to the Windows Event Log (source: the service name)
// unless the config names a log file.
func runWindowsService(file, name string, opts daemon.StartOptions, stderr io.Writer) int {
	prg := &windowsProgram{file: file, opts: opts}
	s, err := ks.New(prg, &ks.Config{Name: name})
	if err != nil {
		fmt.Fprintf(stderr, "ehrbridge run: %v\n", err)
		return exitFailure
	}
	prg.svc = s
	if err := s.Run(); err != nil {
		return exitFailure
	}
	return prg.exit
}

// windowsProgram is the daemon as a kardianos service body.
type windowsProgram struct {
	file   string
	opts   daemon.StartOptions
	svc    ks.Service
	cancel context.CancelFunc
	done   chan struct{}
	exit   int
}

func (p *windowsProgram) Start(s ks.Service) error {
	cfg, err := config.Load(p.file)
	if err != nil {
		return fmt.Errorf("%s does not lint: %w", p.file, err)
	}
	var w io.Writer = os.Stderr
	if el, err := s.Logger(nil); err == nil && (cfg.Log.Output == "" || cfg.Log.Output == "stderr") {
		w = installer.EventLogWriter(el)
	}
	log, closeLog, err := newLogger(cfg, w)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		defer closeLog()
		if err := serve(ctx, cfg, p.file, p.opts, log, nil); err != nil {
			p.exit = exitFailure
			_ = s.Stop()
		}
	}()
	return nil
}

func (p *windowsProgram) Stop(ks.Service) error {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	return nil
}

// newLogger opens the configured log output and builds the redacting
// logger on it.
func newLogger(cfg *config.Config, stderr io.Writer) (*slog.Logger, func(), error) {
	level, err := logging.ParseLevel(cfg.Log.Level)
	if err != nil {
		return nil, nil, err
	}
	opts := logging.Options{Format: cfg.Log.Format, Level: level}
	if cfg.Log.HashKey.IsSet() {
		k, err := cfg.Log.HashKey.Resolve()
		if err != nil {
			return nil, nil, fmt.Errorf("log hash key: %w", err)
		}
		opts.HashKey = []byte(k)
	}
	var w io.Writer
	closeFn := func() {}
	switch cfg.Log.Output {
	case "", "stderr":
		w = stderr
	case "stdout":
		w = os.Stdout
	default:
		f, err := os.OpenFile(cfg.Log.Output, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("opening log output: %w", err)
		}
		w, closeFn = f, func() { f.Close() }
	}
	log, err := logging.New(w, opts)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return log, closeFn, nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

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

// configFlag parses the single --config flag of lint and run, printing
// usage (the command line, then what the command does) when it is missing.
func configFlag(name, what string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "config file (required)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ehrbridge %s --config FILE\n%s\n", name, what)
	}
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if *file == "" || fs.NArg() > 0 {
		fs.Usage()
		return "", false
	}
	return *file, true
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	file, ok := configFlag("run", "Runs the daemon until SIGINT or SIGTERM. Refuses a config that does not lint.", args, stderr)
	if !ok {
		return exitUsage
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
	daemon.Version = version
	log.Info("ehrbridge starting", "version", version, "config", file)
	// Signals are caught before the daemon reports ready: a supervisor
	// may stop or reload it as soon as /readyz answers.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	d, err := daemon.Start(cfg, log)
	if err != nil {
		log.Error("ehrbridge could not start", "err", err)
		fmt.Fprintf(stderr, "ehrbridge run: %v\n", err)
		return exitFailure
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = d.ReloadMappings() // logged either way; the running set stays on failure
			}
		}
	}()
	if err := d.Wait(ctx); err != nil {
		return exitFailure
	}
	return exitOK
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

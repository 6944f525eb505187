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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/daemon"
	"github.com/ehrbridge/ehrbridge/mappings"
)

const backfillUsage = `usage: ehrbridge backfill --config F --source NAME [--since DATE] [--types Patient,Encounter,...]

Loads what a FHIR source's server holds into the checkpoint log, type by
type, page by page (paged search sorted by _lastUpdated), so that the
daemon sends it to the CRM; then the daemon's polls follow changes from
where the backfill ended, with no gap and no duplicate. Each page is
stored before the source's watermark passes it: a backfill that is
stopped (even by SIGKILL) resumes where it stopped when run again.
--since limits a type that was never loaded to resources changed after
DATE (2006-01-02 or RFC 3339). Run it with the daemon stopped.`

func cmdBackfill(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", "", "config file (required)")
	source := fs.String("source", "", "name of the FHIR source (sources.fhir[].name)")
	sinceFlag := fs.String("since", "", "only resources changed after this date, for types never loaded")
	typesFlag := fs.String("types", "", "resource types, comma-separated (default: the source's types)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, backfillUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *cfgFile == "" || *source == "" {
		if err == nil {
			fs.Usage()
		}
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "ehrbridge backfill: %v\n", err)
		return exitFailure
	}
	cfg, ok := loadConfig(*cfgFile, stderr)
	if !ok {
		return exitFailure
	}
	var since time.Time
	if *sinceFlag != "" {
		var err error
		if since, err = time.Parse("2006-01-02", *sinceFlag); err != nil {
			if since, err = time.Parse(time.RFC3339, *sinceFlag); err != nil {
				return fail(fmt.Errorf("--since %q: give a date (2024-01-31) or an RFC 3339 time", *sinceFlag))
			}
		}
	}
	idx := -1
	var names []string
	for i, s := range cfg.Sources.FHIR {
		names = append(names, s.Name)
		if s.Name == *source {
			idx = i
		}
	}
	if idx < 0 {
		return fail(fmt.Errorf("no FHIR source %q in %s (sources.fhir: %s)", *source, *cfgFile, strings.Join(names, ", ")))
	}
	sc := cfg.Sources.FHIR[idx]
	types := sc.Types
	if *typesFlag != "" {
		types = strings.Split(*typesFlag, ",")
	}
	keyring, err := daemon.Keyring(cfg.Checkpoint.Encryption)
	if err != nil {
		return fail(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	cp, err := checkpoint.Open(filepath.Join(cfg.DataDir, checkpoint.FileName), checkpoint.Options{Writer: "ehrbridge backfill " + version,
		Keyring: keyring, LockTimeout: 300 * time.Millisecond, Logger: quiet})
	if errors.Is(err, checkpoint.ErrLocked) {
		return fail(errors.New("the daemon is running: stop it for the backfill (its polls then go on from where the backfill ends)"))
	}
	if err != nil {
		return fail(err)
	}
	defer cp.Close()
	maps, err := daemon.LoadInbound(cfg)
	if err != nil {
		return fail(fmt.Errorf("mappings: %w", err))
	}
	src, err := daemon.NewFHIRSource(sc, cp, func() *mappings.Set { return maps }, quiet)
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prog := newProgress(stdout, isTerminal(stdout))
	src.Progress = prog.page
	for _, typ := range types {
		// With deletes: inactivate, the deletes watermark starts before
		// the load, so that a delete during the backfill is not missed.
		if _, err := src.PollDeletes(ctx, typ); err != nil {
			return fail(fmt.Errorf("%s history (deletes): %w", typ, err))
		}
		prog.start(typ)
		st, err := src.PollType(ctx, typ, since)
		prog.done(typ, st.Added, st.Seen)
		if err != nil {
			return fail(fmt.Errorf("%s: %w (run the backfill again: it resumes after the last stored page)", typ, err))
		}
	}
	fmt.Fprintf(stdout, "backfill of %s done: %d resources stored; start the daemon to send them and to follow changes\n", sc.Name, prog.total)
	return exitOK
}

// progress shows a backfill's counts and rate: a line rewritten in place
// on a terminal, a line every few seconds otherwise.
type progress struct {
	w            io.Writer
	tty          bool
	typ          string
	seen, added  int
	total        int
	began, shown time.Time
}

func newProgress(w io.Writer, tty bool) *progress { return &progress{w: w, tty: tty} }

func (p *progress) start(typ string) {
	p.typ, p.seen, p.added, p.began, p.shown = typ, 0, 0, time.Now(), time.Time{}
}

func (p *progress) page(_ string, seen, added int) {
	p.seen += seen
	p.added += added
	p.total += added
	if !p.tty && time.Since(p.shown) < 5*time.Second {
		return
	}
	p.shown = time.Now()
	rate := float64(p.seen) / max(time.Since(p.began).Seconds(), 0.001)
	if p.tty {
		fmt.Fprintf(p.w, "\r%-20s %8d read %8d new %8.0f/s", p.typ, p.seen, p.added, rate)
	} else {
		fmt.Fprintf(p.w, "%s: %d read, %d new, %.0f/s\n", p.typ, p.seen, p.added, rate)
	}
}

func (p *progress) done(typ string, added, seen int) {
	if p.tty {
		fmt.Fprintln(p.w)
	}
	fmt.Fprintf(p.w, "%s: %d read, %d new in %s\n", typ, seen, added, time.Since(p.began).Round(time.Millisecond))
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

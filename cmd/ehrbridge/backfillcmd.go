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
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/internal/daemon"
	"github.com/ehrbridge/ehrbridge/mappings"
)

const backfillUsage = `usage: ehrbridge backfill --config F --source NAME [--since DATE] [--types Patient,Encounter,...] [--bulk auto|never]

Loads what a FHIR source's server holds into the checkpoint log, so that
the daemon sends it to the CRM; then the daemon's polls follow changes
from where the backfill ended, with no gap and no duplicate.

On a first load, when the server's CapabilityStatement offers the Bulk
Data $export operation (and --bulk is auto), the backfill exports: it
kicks off a system-level $export of the types, waits for the server, and
stores the NDJSON files it lists, patients first; then each type's
watermark is the export's transactionTime. Otherwise, or for types
already loaded, it searches type by type, page by page (sorted by
_lastUpdated). Either way nothing is skipped when it is stopped (even by
SIGKILL): run it again and it resumes (the same export, the files not yet
finished; or the search after the last stored page).
--since limits a first load to resources changed after DATE (2006-01-02
or RFC 3339). Run it with the daemon stopped.`

func cmdBackfill(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", "", "config file (required)")
	source := fs.String("source", "", "name of the FHIR source (sources.fhir[].name)")
	sinceFlag := fs.String("since", "", "only resources changed after this date, for types never loaded")
	typesFlag := fs.String("types", "", "resource types, comma-separated (default: the source's types)")
	bulkFlag := fs.String("bulk", "auto", "auto: use Bulk Data $export for a first load when the server offers it; never: always search")
	fs.Usage = func() {
		fmt.Fprintln(stderr, backfillUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *cfgFile == "" || *source == "" || *bulkFlag != "auto" && *bulkFlag != "never" {
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
	keyring, err := cfg.Checkpoint.Encryption.Keyring()
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
	src.Total = prog.expect
	// With deletes: inactivate, the deletes watermarks start before the
	// load, so that a delete during the backfill is not missed.
	for _, typ := range types {
		if _, err := src.PollDeletes(ctx, typ); err != nil {
			return fail(fmt.Errorf("%s history (deletes): %w", typ, err))
		}
	}
	if *bulkFlag == "auto" {
		use, err := useBulk(ctx, src, types)
		if err != nil {
			return fail(err)
		}
		if use {
			fmt.Fprintln(stdout, "the server offers Bulk Data: exporting (a stopped backfill resumes the same export)")
			lastStatus := ""
			st, err := src.Bulk(ctx, types, since, func(status string) {
				if status != lastStatus && status != "" {
					fmt.Fprintf(stdout, "export: the server reports %q\n", status)
					lastStatus = status
				}
			})
			prog.finish()
			if err != nil {
				return fail(fmt.Errorf("bulk export: %w (run the backfill again: it resumes the export)", err))
			}
			fmt.Fprintf(stdout, "export of %s: %d files, %d resources, as of %s", sc.Name, st.Files, st.Resources, st.TransactionTime.UTC().Format(time.RFC3339))
			if st.Errors > 0 {
				fmt.Fprintf(stdout, "; the server reported %d error files (not loaded)", st.Errors)
			}
			fmt.Fprintln(stdout, "; searching for changes since")
		}
	}
	for _, typ := range types {
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

// useBulk decides whether a backfill exports: an export is under way, or
// the server offers $export and none of the types was loaded before (a
// later backfill searches from the watermarks, which costs less).
func useBulk(ctx context.Context, src *ehr.FHIRSource, types []string) (bool, error) {
	if pending, err := src.BulkPending(); err != nil || pending {
		return pending, err
	}
	for _, typ := range types {
		if wm, err := src.Watermark(typ); err != nil || !wm.IsZero() {
			return false, err
		}
	}
	ok, err := src.BulkAvailable(ctx)
	if err != nil {
		return false, nil // no CapabilityStatement: search
	}
	return ok, nil
}

// progress shows a backfill's counts and rate, with a bar when the total
// is known (Bundle.total, an export file's count): a line rewritten in
// place on a terminal, a line every few seconds otherwise.
type progress struct {
	w            io.Writer
	tty          bool
	typ          string
	seen, added  int
	want         int // the type's total, when the server said; else 0
	total        int
	began, shown time.Time
}

func newProgress(w io.Writer, tty bool) *progress { return &progress{w: w, tty: tty} }

func (p *progress) start(typ string) {
	p.typ, p.seen, p.added, p.want, p.began, p.shown = typ, 0, 0, 0, time.Now(), time.Time{}
}

// expect adds to the type's known total.
func (p *progress) expect(typ string, n int) {
	if typ != p.typ {
		p.switchTo(typ)
	}
	p.want += n
}

// switchTo ends the current type's line and starts typ's (an export's
// files arrive type after type).
func (p *progress) switchTo(typ string) {
	if p.typ != "" {
		p.done(p.typ, p.added, p.seen)
	}
	p.start(typ)
}

// finish ends the last type of an export.
func (p *progress) finish() {
	if p.typ != "" {
		p.done(p.typ, p.added, p.seen)
		p.typ = ""
	}
}

func (p *progress) page(typ string, seen, added int) {
	if typ != p.typ {
		p.switchTo(typ)
	}
	p.seen += seen
	p.added += added
	p.total += added
	if !p.tty && time.Since(p.shown) < 5*time.Second {
		return
	}
	p.shown = time.Now()
	rate := float64(p.seen) / max(time.Since(p.began).Seconds(), 0.001)
	switch {
	case p.tty && p.want > 0:
		const width = 30
		frac := min(float64(p.seen)/float64(p.want), 1)
		bar := strings.Repeat("#", int(frac*width)) + strings.Repeat(".", width-int(frac*width))
		fmt.Fprintf(p.w, "\r%-20s [%s] %3.0f%% %8d/%d read %8d new %8.0f/s", p.typ, bar, frac*100, p.seen, p.want, p.added, rate)
	case p.tty:
		fmt.Fprintf(p.w, "\r%-20s %8d read %8d new %8.0f/s", p.typ, p.seen, p.added, rate)
	case p.want > 0:
		fmt.Fprintf(p.w, "%s: %d of %d read (%.0f%%), %d new, %.0f/s\n", p.typ, p.seen, p.want, 100*min(float64(p.seen)/float64(p.want), 1), p.added, rate)
	default:
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

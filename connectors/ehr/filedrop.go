package ehr

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// The file-drop outbox holds whole MDM messages: the patient's name,
// identifiers and the note. The EHR's interface engine normally takes
// each file away (moves or deletes it) when it has read it; one that
// copies and leaves them would let the outbox collect every note ever
// filed. With a Retention, files older than it are removed, and so are
// temporary files a crash left half written (older than
// staleTempAge). A file still there after the retention was not taken
// away by the EHR: its removal is logged with counts (never names or
// contents), so that an engine that stopped reading is noticed.

// staleTempAge is when a temporary file of File (".mdm-*") counts as left
// by a crash: File renames or removes it within one write.
const staleTempAge = time.Hour

// sweepEvery bounds how often File sweeps.
const sweepEvery = time.Minute

// FileDrop writes each message atomically (temp file, fsync, rename) into
// Dir as <MSH-10>.hl7: filing a version again rewrites the same file.
// With Retention, files the EHR left there longer are removed (Sweep).
type FileDrop struct {
	FileDropConfig
	Logger  *slog.Logger
	sweeper fileDropSweeper
}

// FileDropConfig is where a FileDrop writes and how long files may stay:
// declared once, with the keys of the config file's writeback.target
// section that are the file drop's (internal/config embeds it there,
// inline).
type FileDropConfig struct {
	// Dir is the file-drop directory.
	Dir string `yaml:"dir"`
	// Retention removes messages the EHR left in Dir longer than this
	// (its interface engine normally takes each away); 0 keeps them.
	Retention configvalue.Duration `yaml:"retention"`
}

var _ connectors.EHRTarget = (*FileDrop)(nil)

// File implements connectors.EHRTarget.
func (f *FileDrop) File(_ context.Context, doc *connectors.Document) error {
	f.sweepNow()
	msg := doc.MDM
	if err := os.MkdirAll(f.Dir, 0o750); err != nil {
		return err
	}
	name := filepath.Join(f.Dir, msg.Header().ControlID+".hl7")
	tmp, err := os.CreateTemp(f.Dir, ".mdm-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(msg.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

type fileDropSweeper struct {
	mu   sync.Mutex
	last time.Time
	now  func() time.Time // tests: replaces time.Now
}

// SweepResult reports a Sweep.
type SweepResult struct {
	Removed    int // messages older than the retention
	StaleTemps int // half-written temporary files of a crash
}

// Sweep removes from Dir the messages older than Retention (none without
// one) and the temporary files a crash left. Only files FileDrop writes
// are touched: *.hl7 and .mdm-* directly in Dir.
func (f *FileDrop) Sweep(now time.Time) (SweepResult, error) {
	var res SweepResult
	entries, err := os.ReadDir(f.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		name := e.Name()
		msg := strings.HasSuffix(name, ".hl7") && !strings.HasPrefix(name, ".")
		temp := strings.HasPrefix(name, ".mdm-")
		if !msg && !temp {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // gone meanwhile: the EHR took it
		}
		age := now.Sub(info.ModTime())
		switch {
		case msg && f.Retention > 0 && age > f.Retention.Std():
		case temp && age > staleTempAge:
		default:
			continue
		}
		if err := os.Remove(filepath.Join(f.Dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if msg {
			res.Removed++
		} else {
			res.StaleTemps++
		}
	}
	return res, errors.Join(errs...)
}

// sweepNow sweeps when the last sweep is older than sweepEvery; File
// calls it, so that the outbox is swept while notes are filed (and at the
// first note after a start); an outbox with no note filed is not swept.
func (f *FileDrop) sweepNow() {
	s := &f.sweeper
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	t := now()
	s.mu.Lock()
	if t.Sub(s.last) < sweepEvery {
		s.mu.Unlock()
		return
	}
	s.last = t
	s.mu.Unlock()
	res, err := f.Sweep(t)
	log := f.Logger
	if log == nil {
		log = slog.Default()
	}
	if err != nil {
		log.Warn("write-back outbox: removing old files failed", "err", err)
	}
	if res.Removed > 0 {
		log.Warn("write-back outbox: removed messages older than the retention that the EHR had not taken away; check that its interface engine reads the outbox",
			"files", res.Removed, "retention", f.Retention.Std())
	}
	if res.StaleTemps > 0 {
		log.Info("write-back outbox: removed half-written files left by a crash", "files", res.StaleTemps)
	}
}

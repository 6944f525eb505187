package ehr

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// Messages the EHR left in the outbox longer than the retention are
// removed, with half-written files of a crash; newer ones, and files
// FileDrop did not write, stay. Without a retention nothing filed is
// removed.
func TestFileDropRetention(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	write := func(name string, age time.Duration) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("MSH|^~\\&|...PID|1||MRN1||DOE^JANE"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	old := write("EHRB-1.hl7", 8*24*time.Hour)
	recent := write("EHRB-2.hl7", time.Hour)
	temp := write(".mdm-123", 2*time.Hour)
	freshTemp := write(".mdm-456", time.Minute)
	other := write("README.txt", 30*24*time.Hour)

	keep := &FileDrop{FileDropConfig: FileDropConfig{Dir: dir}}
	if res, err := keep.Sweep(now); err != nil || res.Removed != 0 || res.StaleTemps != 1 {
		t.Errorf("sweep without retention: %+v %v", res, err)
	}
	if _, err := os.Stat(old); err != nil {
		t.Errorf("without a retention a filed message was removed: %v", err)
	}
	f := &FileDrop{FileDropConfig: FileDropConfig{Dir: dir, Retention: configvalue.Duration(7 * 24 * time.Hour)}, Logger: slog.New(slog.DiscardHandler)}
	res, err := f.Sweep(now)
	if err != nil || res.Removed != 1 {
		t.Errorf("sweep: %+v %v", res, err)
	}
	for p, want := range map[string]bool{old: false, recent: true, temp: false, freshTemp: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s present: %v, want %v", filepath.Base(p), err == nil, want)
		}
	}

	// File sweeps as it files (at most once a minute).
	old = write("EHRB-3.hl7", 10*24*time.Hour)
	f.sweeper.now = func() time.Time { return now.Add(2 * time.Minute) }
	msg, err := hl7.Parse([]byte("MSH|^~\\&|EHRBRIDGE|CRM|EHR|HOSP|20260105||MDM^T02|EHRB-9|P|2.5.1\rTXA|1|CN"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.File(context.Background(), &connectors.Document{MDM: msg}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); err == nil {
		t.Error("filing did not sweep the outbox")
	}
	if _, err := os.Stat(filepath.Join(dir, "EHRB-9.hl7")); err != nil {
		t.Errorf("the message filed: %v", err)
	}
}

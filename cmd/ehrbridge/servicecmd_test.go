package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `ehrbridge service install --help` documents the flags; `service unit`
// prints the unit for a config that lints and refuses one that does not.
func TestServiceCommandHelpAndUnit(t *testing.T) {
	_, errOut, code := runCLI(t, "service", "install", "--help")
	for _, flag := range []string{"--name", "--config", "--data-dir", "--user", "install", "uninstall", "status", "journalctl"} {
		if !strings.Contains(errOut, flag) {
			t.Errorf("service --help lacks %s:\n%s", flag, errOut)
		}
	}
	if code != exitUsage {
		t.Errorf("--help exit %d", code)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(cfg, []byte("data_dir: "+filepath.Join(dir, "lab-data")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "service", "unit", "--name", "ehrbridge-lab", "--config", cfg)
	if code != exitOK || !strings.Contains(out, "ReadWritePaths="+filepath.Join(dir, "lab-data")) || !strings.Contains(out, "--service-name ehrbridge-lab") {
		t.Errorf("service unit: %d\n%s%s", code, out, errOut)
	}
	if err := os.WriteFile(cfg, []byte("data_dri: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runCLI(t, "service", "install", "--config", cfg); code != exitFailure || !strings.Contains(errOut, "cannot start is not installed") {
		t.Errorf("install of a config that does not lint: %d %s", code, errOut)
	}
}

type fakeEventLog struct{ got []string }

func (f *fakeEventLog) Error(v ...any) error {
	f.got = append(f.got, "E "+fmt.Sprint(v...))
	return nil
}
func (f *fakeEventLog) Warning(v ...any) error {
	f.got = append(f.got, "W "+fmt.Sprint(v...))
	return nil
}
func (f *fakeEventLog) Info(v ...any) error { f.got = append(f.got, "I "+fmt.Sprint(v...)); return nil }
func (f *fakeEventLog) Errorf(format string, a ...any) error {
	return f.Error(fmt.Sprintf(format, a...))
}
func (f *fakeEventLog) Warningf(format string, a ...any) error {
	return f.Warning(fmt.Sprintf(format, a...))
}
func (f *fakeEventLog) Infof(format string, a ...any) error { return f.Info(fmt.Sprintf(format, a...)) }

// As a Windows service, each log line goes to the Event Log at its level
// (text and JSON formats alike).
func TestEventLogWriter(t *testing.T) {
	f := &fakeEventLog{}
	w := eventLogWriter{f}
	for _, line := range []string{"time=x level=ERROR msg=a\n", "time=x level=WARN msg=b\n", "time=x level=INFO msg=c\n",
		`{"level":"ERROR","msg":"d"}` + "\n", `{"level":"WARN","msg":"e"}` + "\n"} {
		if n, err := w.Write([]byte(line)); err != nil || n != len(line) {
			t.Fatalf("write %q: %d %v", line, n, err)
		}
	}
	want := []string{"E time=x level=ERROR msg=a", "W time=x level=WARN msg=b", "I time=x level=INFO msg=c", `E {"level":"ERROR","msg":"d"}`, `W {"level":"WARN","msg":"e"}`}
	if strings.Join(f.got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q", f.got)
	}
}

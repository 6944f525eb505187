package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// Under systemd (Type=notify) the daemon reports READY=1 once it serves,
// RELOADING=1 then READY=1 around a SIGHUP, and STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	bin := ehrbridgeBinary(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	adminAddr := freeAddr(t)
	cfg := filepath.Join(dir, "e.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir: %s\nadmin:\n  listen: %s\n", filepath.Join(dir, "data"), adminAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	logs := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	next := func(want string) {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil || !strings.HasPrefix(string(buf[:n]), want) {
			t.Fatalf("notify: got %q (%v), want %q\n%s", buf[:n], err, want, logs)
		}
	}
	next("READY=1")
	_ = cmd.Process.Signal(syscall.SIGHUP)
	next("RELOADING=1")
	next("READY=1")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, logs)
	}
}

// On stop the pipeline drains what it can within drain_timeout; with the
// CRM down that takes the whole timeout, and a second SIGTERM ends the wait
// at once. The records stay in the log.
func TestSecondSignalForcesStop(t *testing.T) {
	bin := ehrbridgeBinary(t)
	dir := t.TempDir()
	mllpAddr, adminAddr, crmAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cfgFile := filepath.Join(dir, "e.yaml")
	cfg := fmt.Sprintf(`data_dir: %s
admin:
  listen: %s
mappings:
  paths: [%s]
crm:
  sandbox:
    embed: false
    listen: %s
  pipeline:
    drain_timeout: 5m
sources:
  mllp:
    - name: s
      listen: %s
`, filepath.Join(dir, "data"), adminAddr, filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud"), crmAddr, mllpAddr)
	d := startCrashDaemon(t, bin, cfgFile, cfg, adminAddr)
	c := &mllp.Client{Addr: mllpAddr, AckTimeout: 10 * time.Second}
	msg, _, _ := eoMessage(1, 1)
	if resp, err := c.Send(t.Context(), msg); err != nil || resp.Code != "AA" {
		t.Fatalf("send: %v %v", resp, err)
	}
	c.Close()
	cmd, exited := d.current()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		t.Fatal("stopped at once although a record was waiting to be sent and drain_timeout is 5m")
	case <-time.After(time.Second):
	}
	began := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("a second SIGTERM did not force the stop")
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("forced stop took %v", took)
	}
	if !strings.Contains(d.logs.String(), "second stop signal") {
		t.Errorf("no forced-stop message:\n%s", crashTail(d.logs.String(), 2000))
	}
	out, _, _ := runBin(t, bin, "log", "stats", "--json", "--config", cfgFile)
	if !strings.Contains(out, `"done": 0`) && !strings.Contains(out, `"done":0`) {
		t.Errorf("log after the forced stop: %s", out)
	}
}

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

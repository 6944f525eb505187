package tests

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
	msg, _, _ := eoMessage(1, 1, false)
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

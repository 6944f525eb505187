// Daemons and sandboxes under test: started as processes, waited for
// until ready, killed, restarted and stopped.

package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// runningDaemon is an `ehrbridge run` a test started; the test's cleanup
// kills it if it is still running.
type runningDaemon struct {
	cmd    *exec.Cmd
	logs   *syncbuf.Buffer
	exited chan struct{}
	err    error // the exit error, once exited is closed
}

// startDaemon runs `ehrbridge run --config cfg` with env and waits until
// the admin endpoint at adminAddr is ready.
func startDaemon(t *testing.T, bin, cfg, adminAddr string, env []string) *runningDaemon {
	t.Helper()
	d := &runningDaemon{cmd: exec.Command(bin, "run", "--config", cfg), logs: &syncbuf.Buffer{}, exited: make(chan struct{})}
	d.cmd.Env = env
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	})
	waitReady(t, "http://"+adminAddr+"/readyz", d.exited, d.logs)
	return d
}

// stop sends SIGTERM and waits up to wait for the daemon to exit; if it
// does not, it is killed and stop reports false.
func (d *runningDaemon) stop(wait time.Duration) bool {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return true
	case <-time.After(wait):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return false
	}
}

func waitReady(t *testing.T, url string, exited chan struct{}, logs *syncbuf.Buffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("daemon exited during start\n%s", logs)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("daemon not ready within 20s\n%s", logs)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// crashDaemon is the ehrbridge process under test, restarted after every
// kill with the same config and data directory.
type crashDaemon struct {
	bin, config, readyURL string
	logs                  *syncbuf.Buffer

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// startCrashDaemon writes cfg to cfgFile, starts the daemon on it, waits
// until it is ready, and kills it when the test ends if it still runs.
func startCrashDaemon(t *testing.T, bin, cfgFile, cfg, adminAddr string) *crashDaemon {
	t.Helper()
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &crashDaemon{bin: bin, config: cfgFile, readyURL: "http://" + adminAddr + "/readyz", logs: &syncbuf.Buffer{}}
	t.Cleanup(func() {
		if cmd, exited := d.current(); cmd != nil {
			select {
			case <-exited:
			default:
				_ = cmd.Process.Kill()
				<-exited
			}
		}
	})
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	if err := d.waitReady(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, d.logs)
	}
	return d
}

func (d *crashDaemon) start() error {
	cmd := exec.Command(d.bin, "run", "--config", d.config)
	cmd.Stdout, cmd.Stderr = d.logs, d.logs
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		d.mu.Lock()
		d.waitErr = err
		d.mu.Unlock()
		close(exited)
	}()
	d.mu.Lock()
	d.cmd, d.exited, d.waitErr = cmd, exited, nil
	d.mu.Unlock()
	return nil
}

func (d *crashDaemon) current() (*exec.Cmd, chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd, d.exited
}

// waitReady polls /readyz until it answers 200 or the process exits.
func (d *crashDaemon) waitReady(ctx context.Context) error {
	_, exited := d.current()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("daemon exited while starting")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := client.Get(d.readyURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("daemon not ready within 20s")
}

// kill sends SIGKILL and waits for the process to be reaped. It fails if
// the process had already exited by itself or died of something else.
func (d *crashDaemon) kill() error {
	cmd, exited := d.current()
	select {
	case <-exited:
		return fmt.Errorf("daemon exited by itself before the kill: %v", d.exitErr())
	default:
	}
	if err := cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill: %w", err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		return errors.New("daemon still running 10s after SIGKILL")
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return fmt.Errorf("daemon did not die of SIGKILL: %v", cmd.ProcessState)
	}
	return nil
}

// killAndRestart SIGKILLs the daemon, starts it again and waits until it
// is ready, failing the test with the log's tail if any step fails.
func (d *crashDaemon) killAndRestart(t *testing.T) {
	t.Helper()
	if err := d.kill(); err != nil {
		t.Fatalf("kill: %v\n%s", err, crashTail(d.logs.String(), 3000))
	}
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	if err := d.waitReady(context.Background()); err != nil {
		t.Fatalf("restart: %v\n%s", err, crashTail(d.logs.String(), 3000))
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *crashDaemon) stop(t *testing.T) {
	t.Helper()
	cmd, exited := d.current()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not stop on SIGTERM")
	}
	if err := d.exitErr(); err != nil {
		t.Fatalf("daemon exit: %v\n%s", err, crashTail(d.logs.String(), 2000))
	}
}

func (d *crashDaemon) exitErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waitErr
}

// startSandboxProcess runs `ehrbridge sandbox ARGS...` (ARGS include
// --listen addr) apart from the daemon, so that killing the daemon leaves
// the CRM's state alone; it waits until the sandbox answers on addr, stops
// it when the test ends, and returns its base URL.
func startSandboxProcess(t *testing.T, bin, addr string, args []string) string {
	t.Helper()
	sb := exec.Command(bin, append([]string{"sandbox"}, args...)...)
	logs := &syncbuf.Buffer{}
	sb.Stdout, sb.Stderr = logs, logs
	if err := sb.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = sb.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = sb.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = sb.Process.Kill()
		}
	})
	base := "http://" + addr
	waitFor(t, 10*time.Second, "the sandbox", func() bool {
		resp, err := http.Get(base + "/sandbox/v1/stats")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return base
}

// objects lists a sandbox object's (or Dataverse table's) records; nil
// while the sandbox cannot answer.
func objects(sandboxAddr, name string) []map[string]any {
	resp, err := http.Get("http://" + sandboxAddr + "/sandbox/v1/objects/" + name)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var recs []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&recs)
	return recs
}

// totalRecords sums the states of `log stats --json` output.
func totalRecords(t *testing.T, statsJSON string) int64 {
	t.Helper()
	var st struct {
		States map[string]int64 `json:"states"`
	}
	if err := json.Unmarshal([]byte(statsJSON), &st); err != nil {
		t.Fatalf("log stats --json: %v\n%s", err, statsJSON)
	}
	var n int64
	for _, c := range st.States {
		n += c
	}
	return n
}

func crashTail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

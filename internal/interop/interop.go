// Package interop runs third-party programs that tests talk to: the npm
// peers in node/ (installed by "make peers" from the committed
// package-lock.json) and Debian's python3-hl7. A missing peer fails the
// test with the command that installs it; it is never skipped, because a
// suite that silently drops its interop checks proves nothing.
package interop

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// NodeDir returns the directory holding the npm peers.
func NodeDir(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not installed: run `make peers` (or install nodejs)")
	}
	dir := filepath.Join(shared.ModuleRoot(t), "internal", "interop", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@medplum", "hl7")); err != nil {
		t.Fatalf("npm peers are not installed in %s: run `make peers`", dir)
	}
	return dir
}

// PythonHL7 returns the Python interpreter that has Debian's python3-hl7
// (with its mllp_send module).
func PythonHL7(t testing.TB) string {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import hl7.client").Run(); err != nil {
		t.Fatalf("%s cannot import hl7 (Debian python3-hl7): run `make peers`", py)
	}
	return py
}

// Proc is a background peer process whose stdout is read line by line.
type Proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	mu     sync.Mutex
	stderr bytes.Buffer
	out    []string
}

// Start runs name with args in dir and stops it when the test ends: stdin
// is closed (the peers exit on EOF) and, if it is still running a moment
// later, the process is killed.
func Start(t testing.TB, dir, name string, args ...string) *Proc {
	t.Helper()
	p := &Proc{lines: make(chan string, 1024)}
	p.cmd = exec.Command(name, args...)
	p.cmd.Dir = dir
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.out = append(p.out, sc.Text())
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		close(p.lines)
	}()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		p.stdin.Close()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, p.Stderr())
		}
	})
	return p
}

// WaitFor returns the first stdout line starting with prefix, failing the
// test after timeout.
func (p *Proc) WaitFor(t testing.TB, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("peer exited before printing %q; stderr:\n%s", prefix, p.Stderr())
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			t.Fatalf("peer did not print %q within %v; stderr:\n%s", prefix, timeout, p.Stderr())
		}
	}
}

// Output returns every stdout line so far.
func (p *Proc) Output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.out...)
}

// Stderr returns what the process wrote to stderr so far.
func (p *Proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// Run runs a command to completion within timeout and returns its stdout,
// stderr and exit code (-1 if it could not run or timed out).
func Run(t testing.TB, dir string, timeout time.Duration, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return RunEnv(t, dir, timeout, nil, name, args...)
}

// RunEnv is Run with extra environment variables (NAME=value).
func RunEnv(t testing.TB, dir string, timeout time.Duration, env []string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok && ctx.Err() == nil {
			code = ee.ExitCode()
		}
	}
	return out.String(), errb.String(), code
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

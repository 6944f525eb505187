package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/logging"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// phiMarker stands for patient data in a panic value.
const phiMarker = "ROE^RICHARD^MRN-90017"

// shortLimits shortens the HTTP server limits for one test.
func shortLimits(t *testing.T) httpLimits {
	t.Helper()
	old := serverLimits
	serverLimits = httpLimits{ReadHeader: 300 * time.Millisecond, Read: time.Second, Write: 300 * time.Millisecond,
		Idle: 300 * time.Millisecond, MaxHeaderBytes: 8 << 10}
	t.Cleanup(func() { serverLimits = old })
	return serverLimits
}

// closedWithin reports whether the server closes c (read gives EOF or a
// reset, after any bytes it sends) within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// startAdminDaemon starts a daemon with an admin endpoint and one MLLP
// source on loopback and returns the admin address and the daemon's log.
func startAdminDaemon(t *testing.T) (string, *syncbuf.Buffer) {
	t.Helper()
	d, logs := startTestDaemon(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	})
	return d.AdminAddr().String(), logs
}

// startTestDaemon starts a daemon with an admin endpoint and one MLLP
// source on loopback; the test stops it.
func startTestDaemon(t *testing.T) (*Daemon, *syncbuf.Buffer) {
	t.Helper()
	adminAddr := freePort(t)
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, "data_dir: %s\nadmin:\n  listen: %s\nsources:\n  mllp:\n    - name: ehr\n      listen: %s\n",
		t.TempDir(), adminAddr, freePort(t)), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	log, err := logging.New(logs, logging.Options{Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return d, logs
}

// A component goroutine's panic stops a running daemon as a component
// failure: Wait returns the failure (the process exits non-zero), the
// daemon shuts down, and its log has the panic's type and site but not its
// value.
func TestComponentPanicStopsDaemon(t *testing.T) {
	d, logs := startTestDaemon(t)
	go guard(d.log, d.errc, "mapping watcher", func() { sweepPanic(phiMarker) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := d.Wait(ctx)
	if !errors.Is(err, ErrPanicked) || !strings.Contains(err.Error(), "mapping watcher") {
		t.Fatalf("Wait = %v, want the watcher's panic as the failure", err)
	}
	out := logs.String()
	if strings.Contains(out, "MRN-90017") {
		t.Fatalf("the panic value reached the log:\n%s", out)
	}
	for _, want := range []string{`"msg":"a component panicked and has stopped","part":"mapping watcher","panic_type":"runtime.boundsError","where":"daemon.sweepPanic (httpserver_test.go:`,
		`"msg":"a component failed; stopping"`, `"msg":"stopped"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

// The admin endpoint cuts off a client that sends its headers slowly (it
// had only a 10 s header timeout) and closes a keep-alive connection left
// idle (it had no idle or read timeout: an idle connection stayed open for
// ever); a request on time is answered.
func TestAdminServerTimeouts(t *testing.T) {
	lim := shortLimits(t)
	addr, _ := startAdminDaemon(t)

	t.Run("slow headers", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		// One header byte every 50 ms, never the blank line.
		cut := false
		for time.Since(start) < 10*lim.ReadHeader {
			if _, err := io.WriteString(c, "X"); err != nil {
				cut = true
				break
			}
			time.Sleep(50 * time.Millisecond)
			_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					cut = true
					break
				}
			}
		}
		if !cut {
			t.Fatalf("a client trickling its headers kept the connection for %v (header timeout %v)", time.Since(start), lim.ReadHeader)
		}
	})

	t.Run("idle keep-alive", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
			t.Fatalf("/healthz: %d %q", resp.StatusCode, body)
		}
		if !closedWithin(c, 10*lim.Idle) {
			t.Fatalf("an idle keep-alive connection stayed open past %v (idle timeout %v)", 10*lim.Idle, lim.Idle)
		}
	})
}

// The FHIR subscription endpoint gets the same limits and error log.
func TestNotifyEndpointHardened(t *testing.T) {
	lim := shortLimits(t)
	ep, err := newNotifyEndpoint("epic", &config.FHIRSubscription{Listen: "127.0.0.1:0", Path: "/fhir/notify"},
		&ehr.FHIRSource{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ep.listener.Close()
	s := ep.server
	if s.ReadHeaderTimeout != lim.ReadHeader || s.ReadTimeout != lim.Read || s.WriteTimeout != lim.Write ||
		s.IdleTimeout != lim.Idle || s.MaxHeaderBytes != lim.MaxHeaderBytes || s.ErrorLog == nil {
		t.Fatalf("notification endpoint limits: header %v read %v write %v idle %v max header %d error log %v",
			s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout, s.IdleTimeout, s.MaxHeaderBytes, s.ErrorLog != nil)
	}
}

// A handler's panic is logged with its type and where, never its value
// (net/http printed the value through the error log), the request is
// aborted and the server serves the next one. A response that keeps
// flowing for longer than the write timeout is not cut: each write moves
// the deadline on (the admin backup streams a whole log).
func TestHardenedServerPanicAndStreaming(t *testing.T) {
	lim := shortLimits(t)
	logs := &syncbuf.Buffer{}
	log, err := logging.New(logs, logging.Options{Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/boom", func(w http.ResponseWriter, r *http.Request) {
		var m map[string]int
		m[phiMarker]++ // assignment to a nil map: a runtime panic
	})
	mux.HandleFunc("/boom2", func(w http.ResponseWriter, r *http.Request) {
		panic(errors.New("cannot file note for " + phiMarker))
	})
	chunks := 8
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		for i := range chunks {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(lim.Write / 3)
		}
	})
	srv := &http.Server{Handler: mux}
	harden(srv, log, "test")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	base := "http://" + l.Addr().String()

	for _, path := range []string{"/boom", "/boom2"} {
		if resp, err := http.Get(base + path); err == nil {
			resp.Body.Close()
			t.Errorf("%s: a panicking handler answered %d, want the request aborted", path, resp.StatusCode)
		}
	}
	start := time.Now()
	resp, err := http.Get(base + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || strings.Count(string(body), "chunk") != chunks {
		t.Fatalf("a response streaming for %v (write timeout %v) was cut: %v, %q", time.Since(start), lim.Write, err, body)
	}
	out := logs.String()
	if strings.Contains(out, "MRN-90017") || strings.Contains(out, "RICHARD") {
		t.Fatalf("a panic value reached the log:\n%s", out)
	}
	var panics []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "http handler panicked; request aborted" {
			panics = append(panics, m)
		}
	}
	if len(panics) != 2 {
		t.Fatalf("want 2 panic lines, got log:\n%s", out)
	}
	if !strings.HasPrefix(fmt.Sprint(panics[0]["panic_type"]), "runtime.") {
		t.Errorf("panic_type = %v", panics[0]["panic_type"])
	}
	if panics[1]["panic_type"] != "*errors.errorString" {
		t.Errorf("panic_type = %v", panics[1]["panic_type"])
	}
	for _, p := range panics {
		if w, _ := p["where"].(string); !strings.Contains(w, "TestHardenedServerPanicAndStreaming") || !strings.Contains(w, "httpserver_test.go:") {
			t.Errorf("where = %q, want the handler in this file", w)
		}
	}
}

// A panic in a component goroutine is recovered: one line with its type
// and where, without its value, and the component's failure on the error
// channel (the daemon stops and exits non-zero); with a failure already
// pending, another does not block.
func TestGuardRecoversComponentPanic(t *testing.T) {
	logs := &syncbuf.Buffer{}
	log, err := logging.New(logs, logging.Options{Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	done := make(chan bool)
	go func() {
		done <- guard(log, errc, "checkpoint retention", func() { sweepPanic(phiMarker) })
	}()
	if !<-done {
		t.Fatal("guard did not report the panic")
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrPanicked) || !strings.Contains(err.Error(), "checkpoint retention") || strings.Contains(err.Error(), "MRN") {
			t.Errorf("failure = %v", err)
		}
	default:
		t.Fatal("no failure reported")
	}
	errc <- errors.New("already failing")
	if !guard(log, errc, "pipeline", func() { panic(phiMarker) }) {
		t.Fatal("second panic not reported")
	}
	if guard(log, errc, "quiet", func() {}) {
		t.Error("guard reported a panic for a function that returned")
	}
	out := logs.String()
	if strings.Contains(out, "MRN-90017") || strings.Contains(out, "ROE") {
		t.Fatalf("the panic value reached the log:\n%s", out)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["msg"] != "a component panicked and has stopped" || first["part"] != "checkpoint retention" ||
		first["panic_type"] != "runtime.boundsError" || !strings.HasPrefix(fmt.Sprint(first["where"]), "daemon.sweepPanic (httpserver_test.go:") {
		t.Errorf("panic line: %v", first)
	}
}

func sweepPanic(s string) byte {
	i := len(s) + 1
	return s[i]
}

// freePort is a free 127.0.0.1 address for a test server.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

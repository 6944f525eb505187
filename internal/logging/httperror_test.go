package logging

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
	"github.com/ehrbridge/ehrbridge/internal/testcerts"
)

// phiMarker stands for patient data inside a panic value.
const phiMarker = "DOE^JANE^MRN-55501234"

// jsonLines parses a JSON log.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func withMsg(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// serve runs srv on a loopback port until the test ends.
func serve(t *testing.T, srv *http.Server, tlsOn bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if tlsOn {
			_ = srv.ServeTLS(l, "", "")
		} else {
			_ = srv.Serve(l)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// A handler's panic reaches net/http's error log with its value and the
// stack: through NewHTTPErrorLog it is one line naming the peer and the
// function that panicked, without the value. (slog.NewLogLogger, used
// before, printed the value as the record's message, which is not
// redacted.)
func TestHTTPErrorLogPanicValueNotLogged(t *testing.T) {
	var buf syncbuf.Buffer
	log, err := New(&buf, Options{Format: "json", HashKey: testHashKey})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ErrorLog: NewHTTPErrorLog(log, nil), ReadHeaderTimeout: time.Second,
		Handler: http.HandlerFunc(panickingHandler)}
	addr := serve(t, srv, false)
	resp, err := http.Get("http://" + addr + "/")
	if err == nil {
		resp.Body.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "panicked") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := buf.String()
	if strings.Contains(out, "MRN-55501234") || strings.Contains(out, "DOE") {
		t.Fatalf("the panic value reached the log:\n%s", out)
	}
	lines := withMsg(jsonLines(t, out), "http handler panicked; request aborted")
	if len(lines) != 1 {
		t.Fatalf("want one panic line, got log:\n%s", out)
	}
	if w, _ := lines[0]["where"].(string); !strings.Contains(w, "panickingHandler") || !strings.Contains(w, "httperror_test.go:") {
		t.Errorf("where = %q, want the handler and its file:line", w)
	}
	if r, _ := lines[0]["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
		t.Errorf("remote = %q", r)
	}
}

func panickingHandler(w http.ResponseWriter, r *http.Request) {
	panic(fmt.Sprintf("cannot map PID-5 %s\ngoroutine 1 [running]:\npanic(x)\nPID|1||%s\n\tx.go:1 +0x1", phiMarker, phiMarker))
}

// Other lines of net/http are logged as an error value: the tripwire and
// length cap of errors apply, and the message is constant.
func TestHTTPErrorLogOtherLines(t *testing.T) {
	var buf syncbuf.Buffer
	log, _ := New(&buf, Options{Format: "json", HashKey: testHashKey})
	el := NewHTTPErrorLog(log, nil)
	el.Printf("http: Accept error: %v; retrying in %v", "too many open files", time.Second)
	el.Printf("http: superfluous write PID|1||12345^^^HOSP^MR")
	lines := jsonLines(t, buf.String())
	if len(lines) != 2 || lines[0]["msg"] != "http server problem" || !strings.Contains(fmt.Sprint(lines[0]["err"]), "too many open files") {
		t.Fatalf("log:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), "12345") {
		t.Fatalf("HL7 content passed the error tripwire:\n%s", buf.String())
	}
}

// N failed TLS handshakes from one peer within the interval give one line
// at once (failures=1) and one when the interval ends (failures=N-1), not N
// lines; another peer is counted apart; a quiet peer is forgotten, and its
// next failure is logged at once again.
func TestHTTPErrorLogTLSHandshakesRateLimited(t *testing.T) {
	var buf syncbuf.Buffer
	log, _ := New(&buf, Options{Format: "json", HashKey: testHashKey})
	const every = 600 * time.Millisecond
	lim := &PeerLimiter{Log: log, Msg: "TLS handshake failed", Every: every}
	defer lim.Close()
	certs := testcerts.New(t)
	srv := &http.Server{ErrorLog: NewHTTPErrorLog(log, lim), ReadHeaderTimeout: time.Second,
		TLSConfig: certs.ServerConfig(false), Handler: http.NotFoundHandler()}
	addr := serve(t, srv, true)
	const n = 12
	badHandshake := func() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) // plaintext to a TLS port
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.Copy(io.Discard, c)
	}
	start := time.Now()
	for range n {
		badHandshake()
	}
	elapsed := time.Since(start)
	sum := func(lines []map[string]any) (total float64) {
		for _, l := range lines {
			f, _ := l["failures"].(float64)
			total += f
		}
		return total
	}
	var lines []map[string]any
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if lines = withMsg(jsonLines(t, buf.String()), "TLS handshake failed"); sum(lines) >= n {
			break
		}
	}
	if sum(lines) != n {
		t.Fatalf("the lines count %v failures, want %d:\n%s", sum(lines), n, buf.String())
	}
	// One line at once, one per interval after it: 2 when the burst
	// fits in one interval (as it does unless the machine is very slow).
	if maxLines := 2 + int(elapsed/every); len(lines) < 2 || len(lines) > maxLines {
		t.Fatalf("%d bad handshakes in %v gave %d lines, want 2..%d:\n%s", n, elapsed, len(lines), maxLines, buf.String())
	}
	if lines[0]["failures"] != float64(1) || lines[0]["remote"] != "127.0.0.1" {
		t.Fatalf("the first line must come at once with failures=1 from 127.0.0.1:\n%s", buf.String())
	}
	if elapsed < every && lines[1]["failures"] != float64(n-1) {
		t.Fatalf("want the second line with failures=%d:\n%s", n-1, buf.String())
	}
	if e, _ := lines[1]["err"].(string); !strings.Contains(e, "HTTP") {
		t.Errorf("err = %q, want net/http's reason", e)
	}
	seen := len(lines)
	// Two quiet intervals: the peer is forgotten, no line without failures.
	time.Sleep(2*every + 100*time.Millisecond)
	if got := len(withMsg(jsonLines(t, buf.String()), "TLS handshake failed")); got != seen {
		t.Fatalf("a quiet interval logged a line:\n%s", buf.String())
	}
	badHandshake()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if lines = withMsg(jsonLines(t, buf.String()), "TLS handshake failed"); len(lines) > seen {
			break
		}
	}
	if len(lines) != seen+1 || lines[seen]["failures"] != float64(1) {
		t.Fatalf("a failure after quiet intervals is logged at once with failures=1, got:\n%s", buf.String())
	}
}

// Hosts over MaxPeers are counted together under "other": a scan from many
// addresses cannot grow the limiter without bound.
func TestPeerLimiterBoundsPeers(t *testing.T) {
	var buf syncbuf.Buffer
	log, _ := New(&buf, Options{Format: "json", HashKey: testHashKey})
	lim := &PeerLimiter{Log: log, Msg: "TLS handshake failed", Every: time.Hour, MaxPeers: 3}
	defer lim.Close()
	for i := range 50 {
		lim.Fail(fmt.Sprintf("192.0.2.%d:443", i), io.EOF)
	}
	lines := jsonLines(t, buf.String())
	if len(lines) != 4 || lines[3]["remote"] != otherPeers {
		t.Fatalf("want 3 peers and one 'other' line, got:\n%s", buf.String())
	}
	if len(lim.peers) != 4 {
		t.Fatalf("tracked %d hosts, want 4", len(lim.peers))
	}
}

// PanicAttrs names the panic's type and the function that raised it, and
// not the value.
func TestPanicAttrs(t *testing.T) {
	var buf syncbuf.Buffer
	log, _ := New(&buf, Options{Format: "json", HashKey: testHashKey})
	func() {
		defer func() {
			if r := recover(); r != nil {
				log.Error("component panicked", PanicAttrs(r)...)
			}
		}()
		indexPanic([]string{phiMarker})
	}()
	out := buf.String()
	if strings.Contains(out, "MRN-55501234") {
		t.Fatalf("the panic value reached the log:\n%s", out)
	}
	l := jsonLines(t, out)[0]
	if l["panic_type"] != "runtime.boundsError" {
		t.Errorf("panic_type = %v", l["panic_type"])
	}
	if w, _ := l["where"].(string); !strings.HasPrefix(w, "logging.indexPanic (httperror_test.go:") {
		t.Errorf("where = %q, want logging.indexPanic (httperror_test.go:N)", w)
	}
}

func indexPanic(s []string) string {
	i := len(s) + 4
	return s[i]
}

// A worker goroutine's panic, caught with CatchWorkerPanic and raised
// again in the goroutine that waited, is logged with the worker's panic
// type and site, not the value.
func TestWorkerPanicKeepsTypeAndSite(t *testing.T) {
	var buf syncbuf.Buffer
	log, _ := New(&buf, Options{Format: "json", HashKey: testHashKey})
	func() {
		defer func() {
			if r := recover(); r != nil {
				log.Error("component panicked", PanicAttrs(r)...)
			}
		}()
		var caught atomic.Pointer[WorkerPanic]
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer CatchWorkerPanic(&caught)
				if i == 1 {
					indexPanic([]string{phiMarker})
				}
			}()
		}
		wg.Wait()
		if p := caught.Load(); p != nil {
			panic(p)
		}
		t.Fatal("the worker's panic was not caught")
	}()
	out := buf.String()
	if strings.Contains(out, "MRN-55501234") {
		t.Fatalf("the panic value reached the log:\n%s", out)
	}
	l := jsonLines(t, out)[0]
	if l["panic_type"] != "runtime.boundsError" || !strings.HasPrefix(fmt.Sprint(l["where"]), "logging.indexPanic (httperror_test.go:") {
		t.Errorf("logged %v", l)
	}
}

package mllp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/configvalue"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
	"github.com/ehrbridge/ehrbridge/internal/testcerts"
)

// A mutual-TLS listener with allowed_clients accepts a certificate whose
// CN, DNS name or URI name is on the list, logging who connected from
// where; it refuses another certificate of the same CA at the handshake,
// logging its identity, and nothing of its frames reaches the handler.
func TestAllowClients(t *testing.T) {
	certs := testcerts.New(t)
	spiffe, _ := url.Parse("spiffe://hospital.example/lab")
	_, _, byCN := certs.NewClient(t, "cn", "lab-engine", nil, nil)
	_, _, byDNS := certs.NewClient(t, "dns", "some engine", []string{"engine.hospital.example"}, nil)
	_, _, byURI := certs.NewClient(t, "uri", "", nil, []*url.URL{spiffe})
	_, _, other := certs.NewClient(t, "other", "pharmacy-engine", []string{"pharmacy.hospital.example"}, nil)
	_, _, caseDiffers := certs.NewClient(t, "case", "LAB-ENGINE", nil, nil)

	var handled atomic.Int64
	logs := &syncbuf.Buffer{}
	conf := certs.ServerConfig(true)
	conf.VerifyConnection = configvalue.AllowClients([]string{"lab-engine", "engine.hospital.example", "spiffe://hospital.example/lab"})
	srv := &Server{TLSConfig: conf, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		// The second refusal from 127.0.0.1 is logged when this
		// interval ends, with its reason (TestTLSHandshakeFailuresRateLimited).
		HandshakeLogInterval: 200 * time.Millisecond,
		Handler: HandlerFunc(func(ctx context.Context, req *Request) []byte {
			handled.Add(1)
			return ackHandler(ctx, req)
		})}
	addr := startServer(t, srv)
	send := func(cert tls.Certificate, id string) error {
		cc := certs.ClientConfig(false)
		cc.Certificates = []tls.Certificate{cert}
		c := &Client{Addr: addr, TLSConfig: cc, Logger: quietLogger(), Attempts: 1, AckTimeout: 3 * time.Second}
		defer c.Close()
		r, err := c.Send(context.Background(), msg(id))
		if err == nil && r.Code != hl7.AA {
			err = errors.New("answered " + string(r.Code))
		}
		return err
	}
	for _, tc := range []struct {
		name string
		cert tls.Certificate
		log  string
	}{
		{"CN", byCN, "CN=lab-engine"},
		{"DNS", byDNS, "DNS=engine.hospital.example"},
		{"URI", byURI, "URI=spiffe://hospital.example/lab"},
	} {
		if err := send(tc.cert, "OK"+tc.name); err != nil {
			t.Errorf("%s on the list: %v", tc.name, err)
		}
		if !strings.Contains(logs.String(), "level=INFO msg=\"mllp TLS client connected\" remote=127.0.0.1:") || !strings.Contains(logs.String(), tc.log) {
			t.Errorf("%s: accepted client not logged with its identity and address:\n%s", tc.name, logs.String())
		}
	}
	accepted := handled.Load()
	for _, tc := range []struct {
		name string
		cert tls.Certificate
		id   string
	}{{"other", other, "CN=pharmacy-engine DNS=pharmacy.hospital.example"}, {"case", caseDiffers, "CN=LAB-ENGINE"}} {
		if err := send(tc.cert, "NO"+tc.name); err == nil {
			t.Errorf("%s: a certificate not on the list was accepted", tc.name)
		}
		deadline := time.Now().Add(3 * time.Second)
		for !strings.Contains(logs.String(), "client certificate not in allowed_clients: "+tc.id) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(logs.String(), "level=WARN msg=\"mllp TLS handshake failed\" remote=127.0.0.1 ") ||
			!strings.Contains(logs.String(), "client certificate not in allowed_clients: "+tc.id) {
			t.Errorf("%s: refusal not logged with the identity:\n%s", tc.name, logs.String())
		}
	}
	if n := handled.Load(); n != accepted {
		t.Errorf("a refused client's frames reached the handler (%d, want %d)", n, accepted)
	}
}

// A client whose CA does not verify the server's certificate fails with a
// certificate error and sends nothing: no fallback to plain TCP.
func TestClientWrongCA(t *testing.T) {
	certs, otherCA := testcerts.New(t), testcerts.New(t)
	var handled atomic.Int64
	addr := startServer(t, &Server{TLSConfig: certs.ServerConfig(false), Handler: HandlerFunc(func(ctx context.Context, req *Request) []byte {
		handled.Add(1)
		return ackHandler(ctx, req)
	})})
	c := &Client{Addr: addr, TLSConfig: otherCA.ClientConfig(false), Logger: quietLogger(), Attempts: 2, MinBackoff: time.Millisecond}
	defer c.Close()
	_, err := c.Send(context.Background(), msg("W1"))
	var uae x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &uae) {
		t.Fatalf("send with the wrong CA: %v, want an unknown-authority error", err)
	}
	if handled.Load() != 0 {
		t.Error("a frame reached the server over an unverified connection")
	}
}

// Failed TLS handshakes from one host are logged at most once per interval
// with their count: N plaintext connections to a TLS listener give one
// line at once (failures=1) and one when the interval ends (failures=N-1),
// not N lines; the server goes on serving.
func TestTLSHandshakeFailuresRateLimited(t *testing.T) {
	certs := testcerts.New(t)
	logs := &syncbuf.Buffer{}
	const every = 600 * time.Millisecond
	srv := &Server{TLSConfig: certs.ServerConfig(false), Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Handler: HandlerFunc(ackHandler), HandshakeLogInterval: every}
	addr := startServer(t, srv)
	const n = 10
	start := time.Now()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = WriteFrame(c, msg("PLAIN")) // MLLP in clear to a TLS port
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, _ = io.Copy(io.Discard, c)
		c.Close()
	}
	elapsed := time.Since(start)
	lines := func() []string {
		var out []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `msg="mllp TLS handshake failed"`) {
				out = append(out, l)
			}
		}
		return out
	}
	counted := func(ls []string) int {
		total := 0
		for _, l := range ls {
			_, after, _ := strings.Cut(l, " failures=")
			f, _, _ := strings.Cut(after, " ")
			k, _ := strconv.Atoi(f)
			total += k
		}
		return total
	}
	deadline := time.Now().Add(5 * time.Second)
	for counted(lines()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := lines()
	if counted(got) != n {
		t.Fatalf("the lines count %d failures, want %d:\n%s", counted(got), n, logs.String())
	}
	if maxLines := 2 + int(elapsed/every); len(got) < 2 || len(got) > maxLines {
		t.Fatalf("%d failed handshakes in %v gave %d lines, want 2..%d:\n%s", n, elapsed, len(got), maxLines, logs.String())
	}
	if !strings.Contains(got[0], "remote=127.0.0.1 failures=1 ") {
		t.Errorf("first line: %s", got[0])
	}
	if elapsed < every && !strings.Contains(got[1], fmt.Sprintf("failures=%d ", n-1)) {
		t.Errorf("second line: %s", got[1])
	}
	c := &Client{Addr: addr, TLSConfig: certs.ClientConfig(false), Logger: quietLogger()}
	defer c.Close()
	if r, err := c.Send(context.Background(), msg("OK")); err != nil || r.Code != hl7.AA {
		t.Fatalf("a good client after the failures: %v", err)
	}
}

package mllp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
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
	conf.VerifyConnection = AllowClients([]string{"lab-engine", "engine.hospital.example", "spiffe://hospital.example/lab"})
	srv := &Server{TLSConfig: conf, Logger: slog.New(slog.NewTextHandler(logs, nil)),
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
		if !strings.Contains(logs.String(), "level=WARN msg=\"mllp TLS handshake failed\" remote=127.0.0.1:") ||
			!strings.Contains(logs.String(), "client certificate not in allowed_clients: "+tc.id) {
			t.Errorf("%s: refusal not logged with the identity:\n%s", tc.name, logs.String())
		}
	}
	if n := handled.Load(); n != accepted {
		t.Errorf("a refused client's frames reached the handler (%d, want %d)", n, accepted)
	}
}

// PeerIdentity of a plain or certificate-less connection is "", and the
// allow-list refuses a connection whose chain was not verified.
func TestAllowClientsNeedsAVerifiedChain(t *testing.T) {
	if PeerIdentity(nil) != "" || PeerIdentity(&tls.ConnectionState{}) != "" {
		t.Error("PeerIdentity without a certificate is not empty")
	}
	certs := testcerts.New(t)
	leaf := certs.Client.Leaf
	allow := AllowClients([]string{leaf.Subject.CommonName})
	if err := allow(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}); !errors.Is(err, ErrClientNotAllowed) {
		t.Errorf("unverified certificate: %v, want ErrClientNotAllowed", err)
	}
	if err := allow(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}); err != nil {
		t.Errorf("verified certificate on the list: %v", err)
	}
	if err := allow(tls.ConnectionState{}); !errors.Is(err, ErrClientNotAllowed) {
		t.Errorf("no certificate: %v", err)
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

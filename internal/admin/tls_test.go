package admin_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/daemon"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
	"github.com/ehrbridge/ehrbridge/internal/testcerts"
)

// startTLSAdmin starts a daemon whose admin endpoint serves HTTPS on a
// free loopback port with tlsExtra appended to admin.tls, an auditor
// account "alice" and one stored record; it returns the address, the
// data directory and the daemon's log.
func startTLSAdmin(t *testing.T, certs *testcerts.Set, tlsExtra string) (string, string, *syncbuf.Buffer) {
	t.Helper()
	dataDir := t.TempDir()
	l, err := checkpoint.Open(filepath.Join(dataDir, checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p := []byte("MSH|^~\\&|A|F\rPID|1||ZZTLSPATIENT")
	if _, err := l.Append(context.Background(), checkpoint.Entry{Key: "ehr|A|F|1", Source: "ehr", Type: "ADT^A01", Lane: "L1", Payload: p, Ack: []byte("MSA|AA|1"), Hash: sha256.Sum256(p)}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("TEST_ALICE_TOKEN", "alice-token-0123456789")
	yaml := "data_dir: " + dataDir + "\nadmin:\n  listen: " + addr + "\n  socket: \"off\"\n  tls:\n    cert_file: " + certs.ServerCert +
		"\n    key_file: " + certs.ServerKey + "\n" + tlsExtra +
		"  accounts:\n    - name: alice\n      role: auditor\n      token_env: TEST_ALICE_TOKEN\n"
	cfg, err := config.Parse(filepath.Join(dataDir, "t.yaml"), []byte(yaml), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Shutdown(context.Background()) })
	return addr, dataDir, logs
}

func tlsGet(t *testing.T, tc *tls.Config, url, user, pass string) (int, string, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	// As through a proxy: no OS identity from loopback, so that the
	// account alone decides (the test may run as the daemon's user).
	req.Header.Set("X-Forwarded-For", "192.0.2.7")
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// admin.tls serves the admin API over HTTPS: an account reveals a record
// and the audit log names it; without credentials 401; a plain HTTP
// request is answered 400 by the TLS server and reaches no handler.
func TestAdminOverTLS(t *testing.T) {
	certs := testcerts.New(t)
	addr, dataDir, logs := startTLSAdmin(t, certs, "")
	base := "https://" + addr
	status, body, err := tlsGet(t, certs.ClientConfig(false), base+"/api/v1/log/records/1?reveal=1", "alice", "alice-token-0123456789")
	if err != nil || status != 200 || !strings.Contains(body, "ZZTLSPATIENT") {
		t.Fatalf("reveal by the auditor account over TLS: %d %v %.200s", status, err, body)
	}
	if status, _, err := tlsGet(t, certs.ClientConfig(false), base+"/status", "", ""); err != nil || status != 401 {
		t.Errorf("/status over TLS without credentials: %d %v, want 401", status, err)
	}
	audit, err := os.ReadFile(filepath.Join(dataDir, logadmin.AuditFileName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(audit), `"action":"reveal"`) || !strings.Contains(string(audit), `"user":"alice"`) {
		t.Errorf("audit log does not name the account's reveal:\n%s", audit)
	}

	// Plain HTTP on the TLS port: refused before any handler.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/log/records/1?reveal=1", nil)
	req.SetBasicAuth("alice", "alice-token-0123456789")
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), "ZZTLSPATIENT") {
			t.Errorf("plain HTTP to the TLS port: %d %q, want 400", resp.StatusCode, b)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(dataDir, logadmin.AuditFileName)); len(after) != len(audit) {
		t.Errorf("the plain HTTP request reached the API (audit grew):\n%s", after[len(audit):])
	}
	if !strings.Contains(logs.String(), "tls=true") {
		t.Errorf("the start log does not say the admin endpoint serves TLS:\n%s", logs)
	}
}

// With client_ca_file and allowed_clients the admin endpoint takes only
// the listed client certificates; the account is still needed for a role.
func TestAdminMutualTLS(t *testing.T) {
	certs := testcerts.New(t)
	_, _, ops := certs.NewClient(t, "ops", "ops.hospital.example", []string{"ops.hospital.example"}, nil)
	addr, _, logs := startTLSAdmin(t, certs, "    client_ca_file: "+certs.CAFile+"\n    allowed_clients: [ops.hospital.example]\n")
	base := "https://" + addr
	if _, _, err := tlsGet(t, certs.ClientConfig(false), base+"/status", "alice", "alice-token-0123456789"); err == nil {
		t.Error("no client certificate: served")
	}
	if _, _, err := tlsGet(t, certs.ClientConfig(true), base+"/status", "alice", "alice-token-0123456789"); err == nil {
		t.Error("a client certificate not in allowed_clients: served")
	}
	tc := certs.ClientConfig(false)
	tc.Certificates = []tls.Certificate{ops}
	if status, _, err := tlsGet(t, tc, base+"/status", "alice", "alice-token-0123456789"); err != nil || status != 200 {
		t.Errorf("allowed client with an account: %d %v", status, err)
	}
	if status, _, err := tlsGet(t, tc, base+"/status", "", ""); err != nil || status != 401 {
		t.Errorf("allowed client without an account: %d %v, want 401", status, err)
	}
	if !strings.Contains(logs.String(), "ops.hospital.example") {
		t.Errorf("the client's identity is not logged:\n%s", logs)
	}
}

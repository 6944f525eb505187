package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
	"github.com/ehrbridge/ehrbridge/internal/testcerts"
)

// ehrReceiver is an EHR's MLLP receiver over TLS, configured as ehrbridge
// configures its own listener (TLSServer.Config of a tls section), that
// acknowledges every MDM with AA.
func ehrReceiver(t *testing.T, tlsCfg *config.TLSServer, logs *syncbuf.Buffer) (addr string, received *atomic.Int64) {
	t.Helper()
	tc, err := tlsCfg.Config()
	if err != nil {
		t.Fatal(err)
	}
	received = new(atomic.Int64)
	srv := &mllp.Server{TLSConfig: tc, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		// Refusals from 127.0.0.1 after the first are logged when this
		// interval ends (at most one line per interval per host).
		HandshakeLogInterval: 200 * time.Millisecond,
		Handler: mllp.HandlerFunc(func(_ context.Context, req *mllp.Request) []byte {
			m, err := hl7.ParseHeader(req.Payload)
			if err != nil {
				return nil
			}
			received.Add(1)
			return hl7.BuildAck(m, hl7.AA, "", nil, hl7.AckOptions{}).Bytes()
		})}
	l, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return l.Addr().String(), received
}

// writebackTarget loads a config whose write-back goes to addr with the
// given tls section (YAML, indented for writeback.target) and builds its
// target as the daemon does.
func writebackTarget(t *testing.T, addr, tlsYAML string) *ehr.MLLPTarget {
	t.Helper()
	dir := t.TempDir()
	data := "data_dir: " + dir + "\ncrm:\n  sandbox:\n    embed: true\nwriteback:\n  target:\n    mllp: " + addr + "\n" + tlsYAML
	file := filepath.Join(dir, "ehrbridge.yaml")
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	target, err := newMLLPTarget(cfg.Writeback.Target, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	target.Client.Attempts = 1
	target.Client.AckTimeout = 3 * time.Second
	t.Cleanup(func() { target.Client.Close() })
	return target
}

func mdmDoc(t *testing.T, id string) *connectors.Document {
	t.Helper()
	m, err := hl7.Parse([]byte("MSH|^~\\&|EHRBRIDGE|CRM|EHR|HOSP|20260101120000||MDM^T02^MDM_T02|" + id + "|P|2.5\rEVN|T02|20260101120000\rPID|1||M1^^^HOSP^MR\rTXA|1|CN|TX|20260101120000||||||||EHRB-" + id + "||||||AU\rOBX|1|TX|||note\r"))
	if err != nil {
		t.Fatal(err)
	}
	return &connectors.Document{ID: "EHRB-" + id, MDM: m}
}

// Write-back over MLLP with writeback.target.tls: TLS and mutual TLS to a
// receiver whose allow-list names ehrbridge's certificate; a wrong CA, a
// wrong server name, a missing or unlisted client certificate fail the
// handshake with a certificate error, and no message reaches the EHR in
// clear.
func TestWritebackMLLPOverTLS(t *testing.T) {
	ehr := testcerts.New(t) // the EHR's CA: its server and ehrbridge's client certificate
	otherCA := testcerts.New(t)
	spiffe, _ := url.Parse("spiffe://hospital.example/ehrbridge")
	unlistedCert, unlistedKey, _ := ehr.NewClient(t, "unlisted", "someone-else", nil, nil)
	listedCert, listedKey, _ := ehr.NewClient(t, "listed", "ehrbridge-writeback", nil, []*url.URL{spiffe})

	logs := &syncbuf.Buffer{}
	plainTLS, _ := ehrReceiver(t, &config.TLSServer{CertFile: ehr.ServerCert, KeyFile: ehr.ServerKey}, logs)
	mutual, mutualGot := ehrReceiver(t, &config.TLSServer{CertFile: ehr.ServerCert, KeyFile: ehr.ServerKey, ClientCAFile: ehr.CAFile,
		AllowedClients: []string{"spiffe://hospital.example/ehrbridge"}}, logs)

	ok := []struct{ name, addr, tls string }{
		{"TLS", plainTLS, "    tls:\n      ca_file: " + ehr.CAFile + "\n"},
		{"TLS 1.3 with server name", plainTLS, "    tls:\n      ca_file: " + ehr.CAFile + "\n      server_name: localhost\n      min_version: \"1.3\"\n"},
		{"mutual TLS", mutual, "    tls:\n      ca_file: " + ehr.CAFile + "\n      cert_file: " + listedCert + "\n      key_file: " + listedKey + "\n"},
	}
	for i, tc := range ok {
		target := writebackTarget(t, tc.addr, tc.tls)
		if err := target.File(context.Background(), mdmDoc(t, "OK"+string(rune('0'+i)))); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if !strings.Contains(logs.String(), `msg="mllp TLS client connected"`) || !strings.Contains(logs.String(), "URI=spiffe://hospital.example/ehrbridge") {
		t.Errorf("the receiver did not log the client's identity:\n%s", logs.String())
	}

	before := mutualGot.Load()
	bad := []struct {
		name, addr, tls string
		want            func(error) bool
	}{
		{"wrong CA", plainTLS, "    tls:\n      ca_file: " + otherCA.CAFile + "\n", func(err error) bool {
			var uae x509.UnknownAuthorityError
			return errors.As(err, &uae)
		}},
		{"system roots only", plainTLS, "    tls: {}\n", func(err error) bool {
			var uae x509.UnknownAuthorityError
			return errors.As(err, &uae)
		}},
		{"wrong server name", plainTLS, "    tls:\n      ca_file: " + ehr.CAFile + "\n      server_name: ehr.hospital.example\n", func(err error) bool {
			var he x509.HostnameError
			return errors.As(err, &he)
		}},
		{"no client certificate", mutual, "    tls:\n      ca_file: " + ehr.CAFile + "\n", func(err error) bool {
			return strings.Contains(err.Error(), "certificate")
		}},
		{"unlisted client certificate", mutual, "    tls:\n      ca_file: " + ehr.CAFile + "\n      cert_file: " + unlistedCert + "\n      key_file: " + unlistedKey + "\n", func(err error) bool {
			return err != nil
		}},
	}
	for i, tc := range bad {
		target := writebackTarget(t, tc.addr, tc.tls)
		err := target.File(context.Background(), mdmDoc(t, "NO"+string(rune('0'+i))))
		var u *connectors.Unreachable
		if err == nil || !errors.As(err, &u) || !tc.want(err) {
			t.Errorf("%s: %v, want a failed handshake (retried later)", tc.name, err)
		}
	}
	if n := mutualGot.Load(); n != before {
		t.Errorf("the mutual-TLS receiver took %d messages from refused clients", n-before)
	}
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(logs.String(), "not in allowed_clients: CN=someone-else") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "not in allowed_clients: CN=someone-else") {
		t.Errorf("the refusal of the unlisted certificate is not logged with its identity:\n%s", logs.String())
	}
}

// Each plaintext opt-out is warned about once at start, by key, and listed
// for /status; the warning holds no address.
func TestWarnInsecure(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ehrbridge.yaml")
	data := "data_dir: " + dir + "\nadmin:\n  listen: 10.9.8.7:8080\n  insecure_plaintext: true\nsources:\n  mllp:\n    - name: adt\n      listen: 0.0.0.0:2575\n      insecure_plaintext: true\n    - name: lab\n      listen: 127.0.0.1:2576\n"
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	got := warnInsecure(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	want := []config.InsecureSetting{{Key: "admin.insecure_plaintext", Excuses: "admin.listen"}, {Key: "sources.mllp[0].insecure_plaintext", Excuses: "sources.mllp[0].listen"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("warnInsecure = %v, want %v", got, want)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "key=admin.insecure_plaintext") ||
		!strings.Contains(lines[1], "key=sources.mllp[0].insecure_plaintext") {
		t.Errorf("warnings:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "10.9.8.7") || strings.Contains(logs.String(), "0.0.0.0") {
		t.Errorf("a warning shows an address:\n%s", logs.String())
	}
	if s := (statusView{&Daemon{insecure: got}}).Insecure(); len(s) != 2 {
		t.Errorf("/status lists %v", s)
	}
}

// The notification endpoint's mutual TLS (an http.Server configured by
// TLSServer.Config) honours allowed_clients and logs each accepted client's
// identity and address once per connection; a refused one is logged with
// its identity by the server's error log.
func TestHTTPMutualTLSIdentityLogged(t *testing.T) {
	ca := testcerts.New(t)
	_, _, listed := ca.NewClient(t, "listed", "fhir-server", []string{"fhir.hospital.example"}, nil)
	_, _, unlisted := ca.NewClient(t, "unlisted", "someone-else", nil, nil)
	tc, err := (&config.TLSServer{CertFile: ca.ServerCert, KeyFile: ca.ServerKey, ClientCAFile: ca.CAFile, AllowedClients: []string{"fhir.hospital.example"}}).Config()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	var served atomic.Int64
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	ts.TLS = tc
	ts.Config.ConnState = logTLSClient(log)
	ts.Config.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	ts.StartTLS()
	defer ts.Close()
	client := func(cert tls.Certificate) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.CAPool, Certificates: []tls.Certificate{cert}}}}
	}
	c := client(listed)
	for range 3 { // one connection, kept alive
		resp, err := c.Get(ts.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := strings.Count(logs.String(), `msg="TLS client connected" remote=127.0.0.1:`); n != 1 || !strings.Contains(logs.String(), `client="CN=fhir-server DNS=fhir.hospital.example"`) {
		t.Errorf("accepted client logged %d times, want once with its identity:\n%s", n, logs.String())
	}
	before := served.Load()
	if resp, err := client(unlisted).Get(ts.URL); err == nil {
		resp.Body.Close()
		t.Error("a certificate not on allowed_clients was accepted")
	}
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(logs.String(), "not in allowed_clients: CN=someone-else") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "not in allowed_clients: CN=someone-else") {
		t.Errorf("refusal not logged with the identity:\n%s", logs.String())
	}
	if served.Load() != before {
		t.Error("a refused client's request was served")
	}
}

package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/config"
)

// warnInsecure logs, once per opt-out, each plaintext connection the
// configuration allows with insecure_plaintext, and returns them for
// /status. Only key paths are logged: addresses may come from the
// environment and URLs may carry credentials.
func warnInsecure(cfg *config.Config, log *slog.Logger) []config.InsecureSetting {
	settings := cfg.Insecure()
	for _, s := range settings {
		log.Warn("plaintext connection allowed by the configuration: patient data crosses the network in clear; configure TLS and remove the opt-out",
			"key", s.Key, "excuses", s.Excuses)
	}
	return settings
}

// logTLSClient is an http.Server ConnState hook that logs at INFO, once
// per connection, the remote address and the identity of a client that
// presented a certificate (mutual TLS), as the MLLP server does for its
// connections. Refused certificates fail the handshake and are logged by
// the server's ErrorLog.
func logTLSClient(log *slog.Logger) func(net.Conn, http.ConnState) {
	var seen sync.Map
	return func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateActive:
			tc, ok := c.(*tls.Conn)
			if !ok {
				return
			}
			if _, dup := seen.LoadOrStore(c, struct{}{}); dup {
				return
			}
			st := tc.ConnectionState()
			if id := mllp.PeerIdentity(&st); id != "" {
				log.Info("TLS client connected", "remote", c.RemoteAddr().String(), "client", id)
			}
		case http.StateClosed, http.StateHijacked:
			seen.Delete(c)
		}
	}
}

// clientTLS builds the TLS configuration of an outgoing connection: the
// CAs to trust (the system's without ca_file), the client certificate for
// mutual TLS, the server name and the lowest version.
func clientTLS(t *config.TLSClient) (*tls.Config, error) {
	conf := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	if t.MinVersion == "1.3" {
		conf.MinVersion = tls.VersionTLS13
	}
	if t.CAFile != "" {
		pool, err := certPool(t.CAFile, "CA file")
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: loading client certificate and key: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// newMLLPTarget is the write-back target for the EHR's MLLP receiver,
// over TLS when the target has a tls section.
func newMLLPTarget(t config.WritebackTarget, log *slog.Logger) (*ehr.MLLPTarget, error) {
	var tc *tls.Config
	if t.TLS != nil {
		var err error
		if tc, err = clientTLS(t.TLS); err != nil {
			return nil, fmt.Errorf("writeback.target.tls: %w", err)
		}
	}
	return ehr.NewMLLPTarget(ehr.MLLPTargetConfig{Addr: t.MLLP, TLS: tc, MaxBackoff: t.MLLPMaxBackoff.Std(), Logger: log}), nil
}

// certPool reads the PEM certificates of file (what names it in errors).
func certPool(file, what string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: %s: %w", what, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", what)
	}
	return pool, nil
}

package daemon

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/configvalue"
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
			if id := configvalue.PeerIdentity(&st); id != "" {
				log.Info("TLS client connected", "remote", c.RemoteAddr().String(), "client", id)
			}
		case http.StateClosed, http.StateHijacked:
			seen.Delete(c)
		}
	}
}

// newMLLPTarget is the write-back target for the EHR's MLLP receiver,
// over TLS when the target has a tls section.
func newMLLPTarget(t config.WritebackTarget, log *slog.Logger) (*ehr.MLLPTarget, error) {
	cfg := t.MLLPTargetConfig
	cfg.Logger = log
	target, err := ehr.NewMLLPTarget(cfg)
	if err != nil {
		return nil, fmt.Errorf("writeback.target.tls: %w", err)
	}
	return target, nil
}

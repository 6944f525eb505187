package crmcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors/dynamics"
	"github.com/ehrbridge/ehrbridge/connectors/salesforce"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/crms"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
)

// requestTimeout bounds each request of the check.
const requestTimeout = 30 * time.Second

// newBackend connects as the daemon would: a real org or environment
// with the configured credentials, a sandbox running apart with its test
// credentials, or (embed: true) a sandbox started for the check.
func newBackend(ctx context.Context, cc *config.CRMConfig, log *slog.Logger) (backend, error) {
	switch {
	case cc.Salesforce != nil:
		scfg, err := crms.SalesforceClientConfig(cc.Salesforce)
		if err != nil {
			return nil, err
		}
		return newSalesforce(scfg, log, nil)
	case cc.Dynamics != nil:
		dcfg, auth, err := crms.DataverseClientConfig(cc.Dynamics)
		if err != nil {
			return nil, err
		}
		dcfg.Logger = log
		return newDataverse(dcfg, auth, nil)
	case cc.Sandbox != nil:
		return sandboxBackend(cc.Sandbox, log)
	}
	return nil, errors.New("the config names no CRM")
}

func sandboxBackend(sb *config.SandboxConfig, log *slog.Logger) (backend, error) {
	listen, tlsListen := sb.Listen, sb.TLSListen
	var done func()
	var certPEM []byte
	if sb.Embed {
		// The daemon would start its own: check a fresh one, on free
		// ports, without its data file (a check writes nothing).
		s, err := sandbox.New(sandbox.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		addr, err := s.Listen("127.0.0.1:0")
		if err != nil {
			s.Close()
			return nil, err
		}
		listen, done = addr.String(), func() { _ = s.Close() }
		if strings.EqualFold(sb.Flavor, "dataverse") {
			certPEM, keyPEM, err := sandbox.NewCert()
			if err != nil {
				done()
				return nil, err
			}
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				done()
				return nil, err
			}
			taddr, err := s.ListenTLS("127.0.0.1:0", cert)
			if err != nil {
				done()
				return nil, err
			}
			tlsListen = taddr.String()
			return dvSandbox(tlsListen, certPEM, log, done)
		}
	}
	if strings.EqualFold(sb.Flavor, "dataverse") {
		pemBytes, err := os.ReadFile(sb.TLSCert)
		if err != nil {
			return nil, fmt.Errorf("crm.sandbox.tls_cert (the running sandbox's certificate): %w", err)
		}
		certPEM = pemBytes
		return dvSandbox(tlsListen, certPEM, log, done)
	}
	return newSalesforce(salesforce.Config{LoginURL: "http://" + listen, ClientID: "sandbox-client", ClientSecret: "sandbox-secret",
		Auth: salesforce.Auth{ClientCredentials: true}}, log, done)
}

func dvSandbox(tlsListen string, certPEM []byte, log *slog.Logger, done func()) (backend, error) {
	hc, err := crms.HTTPClientTrusting(certPEM, false)
	if err != nil {
		if done != nil {
			done()
		}
		return nil, err
	}
	base := "https://" + tlsListen
	b, err := newDataverse(dynamics.Config{URL: base, HTTPClient: hc, Logger: log},
		dynamics.Auth{TenantID: "sandbox-tenant", ClientID: "sandbox-client", ClientSecret: "sandbox-secret", AuthorityHost: base, HTTPClient: hc}, done)
	if err != nil && done != nil {
		done()
	}
	return b, err
}

// probe finds why a host does not answer: a GET of its root (read-only),
// with the error classified. "" when it answers at all.
func probe(ctx context.Context, hc *http.Client, rawURL, key string) string {
	if hc == nil {
		hc = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return key + " is not a URL"
	}
	host := req.URL.Host
	resp, err := hc.Do(req)
	if err == nil {
		resp.Body.Close()
		return ""
	}
	var dnsErr *net.DNSError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	var opErr *net.OpError
	switch {
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("host %s not found (DNS): check %s", host, key)
	case errors.As(err, &unknownCA):
		return fmt.Sprintf("TLS failure: %s's certificate is not signed by a trusted CA (a TLS-inspecting proxy? give its CA as crm.dynamics.ca_file, or install it in the system store)", host)
	case errors.As(err, &hostErr):
		return fmt.Sprintf("TLS failure: %s's certificate is for other names (%s): check %s", host, firstLine(hostErr.Error()), key)
	case errors.As(err, &invalid):
		return fmt.Sprintf("TLS failure: %s's certificate is not valid (expired or not yet valid? check the host clock)", host)
	case errors.As(err, &recordErr):
		return fmt.Sprintf("TLS failure: %s does not speak TLS on that port: check %s (https:// to a plain HTTP port?)", host, key)
	case ctx.Err() != nil || isTimeout(err):
		return fmt.Sprintf("no answer from %s within 15s: a firewall or proxy between this host and the CRM?", host)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Sprintf("%s refused the connection (nothing listens there): check %s", host, key)
	case strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:"):
		return fmt.Sprintf("TLS failure talking to %s: check %s", host, key)
	}
	return fmt.Sprintf("%s is unreachable: check %s", host, key)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

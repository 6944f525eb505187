package configvalue

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/testcerts"
)

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

// TestTLSServerConfig checks the listener configuration a tls section
// builds: certificate and lowest version; with client_ca_file, client
// certificates required and verified, narrowed to allowed_clients; errors
// naming the setting.
func TestTLSServerConfig(t *testing.T) {
	certs := testcerts.New(t)
	c, err := (&TLSServer{CertFile: certs.ServerCert, KeyFile: certs.ServerKey}).Config()
	if err != nil || len(c.Certificates) != 1 || c.MinVersion != tls.VersionTLS12 || c.ClientAuth != tls.NoClientCert || c.ClientCAs != nil || c.VerifyConnection != nil {
		t.Fatalf("Config() = %+v, %v; want the certificate, TLS 1.2 and no client certificates", c, err)
	}
	c, err = (&TLSServer{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, ClientCAFile: certs.CAFile, MinVersion: "1.3"}).Config()
	if err != nil || c.MinVersion != tls.VersionTLS13 || c.ClientAuth != tls.RequireAndVerifyClientCert || c.ClientCAs == nil || c.VerifyConnection != nil {
		t.Fatalf("mutual TLS: %+v, %v; want TLS 1.3, client certificates required against the CA, no allow-list", c, err)
	}
	leaf := certs.Client.Leaf
	c, err = (&TLSServer{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, ClientCAFile: certs.CAFile, AllowedClients: []string{"someone-else"}}).Config()
	if err != nil || c.VerifyConnection == nil {
		t.Fatalf("allowed_clients: %+v, %v; want an allow-list", c, err)
	}
	verified := tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
	if err := c.VerifyConnection(verified); !errors.Is(err, ErrClientNotAllowed) {
		t.Errorf("a client not on the list: %v, want ErrClientNotAllowed", err)
	}
	if _, err := (&TLSServer{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, ClientCAFile: certs.ServerCert + ".missing"}).Config(); err == nil ||
		!strings.HasPrefix(err.Error(), "tls: client CA file: ") {
		t.Errorf("missing client CA file: %v", err)
	}
	if _, err := (&TLSServer{CertFile: certs.CAFile + ".missing", KeyFile: certs.ServerKey}).Config(); err == nil ||
		!strings.HasPrefix(err.Error(), "tls: loading certificate and key: ") {
		t.Errorf("missing certificate: %v", err)
	}
}

package configvalue

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrClientNotAllowed is the handshake error for a client certificate that
// the CAs verify but that names no identity of the allow-list
// ([AllowClients], which enforces [TLSServer.AllowedClients]).
var ErrClientNotAllowed = errors.New("client certificate not in allowed_clients")

// CertNames returns the identities a certificate asserts: its subject
// common name, then its DNS and URI subject alternative names. These name
// systems and services, never patients, so they may be logged.
func CertNames(c *x509.Certificate) []string {
	var names []string
	if c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	names = append(names, c.DNSNames...)
	for _, u := range c.URIs {
		names = append(names, u.String())
	}
	return names
}

// PeerIdentity describes the certificate a TLS peer presented, for logs:
// "CN=lab-engine DNS=lab.hospital.example URI=spiffe://..."; "" when it
// presented none.
func PeerIdentity(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return ""
	}
	c := cs.PeerCertificates[0]
	var parts []string
	if c.Subject.CommonName != "" {
		parts = append(parts, "CN="+c.Subject.CommonName)
	}
	for _, n := range c.DNSNames {
		parts = append(parts, "DNS="+n)
	}
	for _, u := range c.URIs {
		parts = append(parts, "URI="+u.String())
	}
	if len(parts) == 0 {
		return "serial=" + c.SerialNumber.String()
	}
	s := strings.Join(parts, " ")
	if len(s) > 256 { // a certificate with hundreds of names
		s = strings.ToValidUTF8(s[:256], "") + "..."
	}
	return s
}

// AllowClients returns a [tls.Config] VerifyConnection function that
// accepts a connection only when the client's verified certificate has a
// subject common name, DNS name or URI name equal to one of allowed
// (exactly: case and all). It runs after the chain is verified against
// ClientCAs, so the allow-list narrows the CAs, never widens them. The
// error, which the server logs with the remote address, names the
// certificate's identity.
func AllowClients(allowed []string) func(tls.ConnectionState) error {
	allow := slices.Clone(allowed)
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: no client certificate", ErrClientNotAllowed)
		}
		if len(cs.VerifiedChains) == 0 {
			// Only a chain verified against ClientCAs may be trusted
			// for its names.
			return fmt.Errorf("%w: the client certificate was not verified (set a client CA)", ErrClientNotAllowed)
		}
		for _, n := range CertNames(cs.PeerCertificates[0]) {
			if slices.Contains(allow, n) {
				return nil
			}
		}
		return fmt.Errorf("%w: %s", ErrClientNotAllowed, PeerIdentity(&cs))
	}
}

// Package testcerts makes a throw-away CA, server and client certificates
// for tests of TLS and mutual TLS, written as PEM files to a temp dir.
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// Set is a CA with one server certificate (for 127.0.0.1 and localhost)
// and one client certificate, as PEM files and as parsed values.
type Set struct {
	CAFile, ServerCert, ServerKey, ClientCert, ClientKey string
	CAPool                                               *x509.CertPool
	Server, Client                                       tls.Certificate

	dir   string
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

// New writes a fresh set to t.TempDir().
func New(t testing.TB) *Set {
	t.Helper()
	dir := t.TempDir()
	caKey := key(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ehrbridge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	s := &Set{CAFile: filepath.Join(dir, "ca.pem"), CAPool: x509.NewCertPool(), dir: dir, ca: ca, caKey: caKey}
	s.CAPool.AddCert(ca)
	write(t, s.CAFile, "CERTIFICATE", caDER)
	s.ServerCert, s.ServerKey, s.Server = leaf(t, dir, "server", ca, caKey, x509.ExtKeyUsageServerAuth, nil)
	s.ClientCert, s.ClientKey, s.Client = leaf(t, dir, "client", ca, caKey, x509.ExtKeyUsageClientAuth, nil)
	return s
}

// NewClient issues another client certificate from the set's CA with
// subject common name cn and the given DNS and URI names (no IP or
// "localhost" names), written as <file>.pem and <file>-key.pem.
func (s *Set) NewClient(t testing.TB, file, cn string, dnsNames []string, uris []*url.URL) (certFile, keyFile string, cert tls.Certificate) {
	t.Helper()
	return leaf(t, s.dir, file, s.ca, s.caKey, x509.ExtKeyUsageClientAuth, func(c *x509.Certificate) {
		c.Subject.CommonName, c.DNSNames, c.IPAddresses, c.URIs = cn, dnsNames, nil, uris
	})
}

// ServerConfig returns a server TLS config; with mutual set it requires
// and verifies client certificates signed by the CA.
func (s *Set) ServerConfig(mutual bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{s.Server}, MinVersion: tls.VersionTLS12}
	if mutual {
		c.ClientCAs = s.CAPool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c
}

// ClientConfig returns a client TLS config trusting the CA, presenting the
// client certificate when withCert is set.
func (s *Set) ClientConfig(withCert bool) *tls.Config {
	c := &tls.Config{RootCAs: s.CAPool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if withCert {
		c.Certificates = []tls.Certificate{s.Client}
	}
	return c
}

func key(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var serial atomic.Int64

func leaf(t testing.TB, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage, edit func(*x509.Certificate)) (string, string, tls.Certificate) {
	k := key(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(10 + serial.Add(1)), Subject: pkix.Name{CommonName: "ehrbridge test " + name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	write(t, certFile, "CERTIFICATE", der)
	write(t, keyFile, "EC PRIVATE KEY", kder)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

func write(t testing.TB, file, typ string, der []byte) {
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// RSASigning returns an RSA key and a self-signed certificate for it (PEM):
// what a Salesforce connected app holds for the JWT bearer flow.
func RSASigning(t testing.TB) (*rsa.PrivateKey, []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ehrbridge test signing"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

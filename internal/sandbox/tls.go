package sandbox

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/logging"
)

// The Dataverse side needs TLS: azidentity refuses an authority that is
// not https. The sandbox makes its own certificate, self-signed for
// 127.0.0.1, ::1 and localhost, and keeps it in a file that a config can
// trust (crm.sandbox.tls_ca_file), so clients verify it like any other.

// LoadOrCreateCert reads the certificate and key at certFile and keyFile
// (PEM), creating both when certFile does not exist. It returns the
// certificate for serving and its PEM for clients to trust.
func LoadOrCreateCert(certFile, keyFile string) (tls.Certificate, []byte, error) {
	if certPEM, err := os.ReadFile(certFile); err == nil {
		keyPEM, err := os.ReadFile(keyFile)
		if err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("sandbox TLS key: %w", err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("sandbox TLS certificate %s: %w", certFile, err)
		}
		return c, certPEM, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, nil, fmt.Errorf("sandbox TLS certificate: %w", err)
	}
	certPEM, keyPEM, err := NewCert()
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{keyFile, keyPEM, 0o600}, {certFile, certPEM, 0o644}} {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o750); err != nil {
			return tls.Certificate{}, nil, err
		}
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, f.data, f.mode); err != nil {
			return tls.Certificate{}, nil, err
		}
		if err := os.Rename(tmp, f.path); err != nil {
			return tls.Certificate{}, nil, err
		}
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	return c, certPEM, err
}

// NewCert makes a self-signed certificate (ECDSA P-256, ten years) for
// the loopback names, as PEM.
func NewCert() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "ehrbridge CRM sandbox", Organization: []string{"ehrbridge"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// ListenTLS binds addr and serves the sandbox over TLS with cert, in the
// background, beside a Listen on plain HTTP. It returns the bound address.
func (s *Server) ListenTLS(addr string, cert tls.Certificate) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen (TLS) on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:  logging.NewHTTPErrorLog(s.opts.Logger, nil)}
	s.mu.Lock()
	s.tlsSrv = srv
	s.mu.Unlock()
	go func() {
		if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("sandbox: serving TLS stopped", "err", err)
		}
	}()
	return l.Addr(), nil
}

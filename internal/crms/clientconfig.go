package crms

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors/dynamics"
	"github.com/ehrbridge/ehrbridge/connectors/salesforce"
	"github.com/ehrbridge/ehrbridge/internal/config"
)

// SalesforceClientConfig is the client configuration crm.salesforce
// gives: secrets resolved, the JWT key read. The daemon and
// `ehrbridge crm check` connect with the same settings.
func SalesforceClientConfig(sf *config.SalesforceConfig) (salesforce.Config, error) {
	c, err := sf.ClientConfig()
	if err != nil {
		return c, fmt.Errorf("crm.salesforce %w", err)
	}
	return c, nil
}

// DataverseClientConfig is the client configuration and credential
// settings crm.dynamics gives: secrets resolved, certificate files read,
// an HTTP client trusting ca_file besides the system's CAs.
func DataverseClientConfig(d *config.DynamicsConfig) (dynamics.Config, dynamics.Auth, error) {
	var extra []byte
	if d.CAFile != "" {
		b, err := os.ReadFile(d.CAFile)
		if err != nil {
			return dynamics.Config{}, dynamics.Auth{}, fmt.Errorf("crm.dynamics.ca_file: %w", err)
		}
		extra = b
	}
	hc, err := HTTPClientTrusting(extra, true)
	if err != nil {
		return dynamics.Config{}, dynamics.Auth{}, err
	}
	dcfg, auth, err := d.ClientConfig(hc)
	if err != nil {
		return dcfg, auth, fmt.Errorf("crm.dynamics %w", err)
	}
	return dcfg, auth, nil
}

// HTTPClientTrusting is an HTTP client that trusts the CAs in pemBytes,
// besides the system's when withSystem is set (the sandbox's own
// certificate, a TLS-inspecting proxy's CA).
func HTTPClientTrusting(pemBytes []byte, withSystem bool) (*http.Client, error) {
	pool := x509.NewCertPool()
	if withSystem {
		if sys, err := x509.SystemCertPool(); err == nil {
			pool = sys
		}
	}
	if len(pemBytes) > 0 && !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("no PEM certificate to trust")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}, nil
}

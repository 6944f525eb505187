// Package crms turns the crm section of the configuration into the
// connector of the CRM it names: the sink the pipeline sends records to,
// the note reader write-back polls, and their counters. It is the one place
// that knows every CRM: a new CRM is its directory under connectors and one
// case in kindOf. The daemon reads the result through the
// connectors interfaces only.
package crms

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/dynamics"
	"github.com/ehrbridge/ehrbridge/connectors/salesforce"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
)

// CRM is a connected CRM: what the daemon needs of it, whichever it is.
type CRM struct {
	// Kind is "Salesforce" or "Dataverse", for logs and the admin page.
	Kind string
	// Sink applies the pipeline's operations.
	Sink connectors.Sink
	// Notes reads the notes write-back files in the EHR.
	Notes connectors.NoteReader
	// Requests counts the API requests sent (retries included).
	Requests func() int64
	// Usage is the org's daily API usage as it last reported it; limit 0
	// when the CRM reports none (Dataverse, or not reported yet).
	Usage func() (used, limit int)
	// SandboxAddr is the embedded sandbox's address, "" without one.
	SandboxAddr string

	sandbox *sandbox.Server
}

// Close stops the embedded sandbox, if any; safe on nil.
func (c *CRM) Close() error {
	if c == nil || c.sandbox == nil {
		return nil
	}
	return c.sandbox.Close()
}

// Open connects to the CRM cc names (nil gives nil): Salesforce, Dataverse,
// or the sandbox's side of either (embedded when cc.Sandbox.Embed). On an
// error whatever it started is stopped.
func Open(cc *config.CRMConfig, log *slog.Logger) (*CRM, error) {
	if cc == nil {
		return nil, nil
	}
	c := &CRM{}
	if err := kindOf(cc).open(c, cc, log); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// kind is one CRM: how to connect to it and how the checkpoint log names
// it.
type kind struct {
	open     func(c *CRM, cc *config.CRMConfig, log *slog.Logger) error
	identity func(cc *config.CRMConfig) string // of a CRM that is not the sandbox
}

// kindOf is the CRM cc names, with one case per CRM: a new CRM is its
// directory under connectors and a case here.
func kindOf(cc *config.CRMConfig) kind {
	switch {
	case cc.Dynamics != nil || cc.Sandbox != nil && cc.Sandbox.Flavor == sandbox.FlavorDataverse:
		return kind{open: (*CRM).openDataverse, identity: func(cc *config.CRMConfig) string {
			return "dataverse " + normalURL(cc.Dynamics.URL)
		}}
	default:
		return kind{open: (*CRM).openSalesforce, identity: func(cc *config.CRMConfig) string {
			if cc.Salesforce == nil {
				return ""
			}
			id := "salesforce " + normalURL(cc.Salesforce.LoginURL)
			if u := cc.Salesforce.JWTUsername; u != "" {
				id += " as " + strings.ToLower(u)
			}
			return id
		}}
	}
}

// openSalesforce connects to Salesforce, or to the sandbox's Salesforce
// side.
func (c *CRM) openSalesforce(cc *config.CRMConfig, log *slog.Logger) error {
	c.Kind = "Salesforce"
	var scfg salesforce.Config
	if sb := cc.Sandbox; sb != nil && sb.Embed {
		// The daemon connects to its own sandbox with a secret made for
		// this run: nothing to configure, nothing to leak.
		secret := randomSecret()
		if _, err := c.embedSandbox(sandbox.Options{ClientSecret: secret, DataFile: sb.DataFile, Logger: log}, sb.Listen); err != nil {
			return err
		}
		scfg = salesforce.Config{LoginURL: "http://" + c.SandboxAddr, ClientID: "sandbox-client", ClientSecret: secret, Auth: salesforce.Auth{ClientCredentials: true}}
	} else if sb := cc.Sandbox; sb != nil {
		// A sandbox running apart, with its default test credentials
		// (they guard no real data).
		scfg = salesforce.Config{LoginURL: "http://" + sb.Listen, ClientID: "sandbox-client", ClientSecret: "sandbox-secret", Auth: salesforce.Auth{ClientCredentials: true}}
	} else {
		var err error
		if scfg, err = SalesforceClientConfig(cc.Salesforce); err != nil {
			return err
		}
	}
	scfg.Logger = log
	client, err := salesforce.New(scfg)
	if err != nil {
		return err
	}
	c.Sink, c.Notes, c.Requests, c.Usage = &salesforce.Sink{Client: client}, &salesforce.NoteReader{Client: client}, client.Requests.Load, client.Usage
	return nil
}

// openDataverse connects to Dataverse, or to the sandbox's Dataverse
// side (over TLS, trusting the sandbox's own certificate).
func (c *CRM) openDataverse(cc *config.CRMConfig, log *slog.Logger) error {
	c.Kind = "Dataverse"
	var dcfg dynamics.Config
	var auth dynamics.Auth
	if sb := cc.Sandbox; sb != nil {
		keyFile := strings.TrimSuffix(sb.TLSCert, ".pem") + "-key.pem"
		secret := "sandbox-secret"
		var certPEM []byte
		if sb.Embed {
			cert, pemBytes, err := sandbox.LoadOrCreateCert(sb.TLSCert, keyFile)
			if err != nil {
				return err
			}
			secret = randomSecret()
			s, err := c.embedSandbox(sandbox.Options{DataverseSecret: secret, DataFile: sb.DataFile, Logger: log}, sb.Listen)
			if err != nil {
				return err
			}
			taddr, err := s.ListenTLS(sb.TLSListen, cert)
			if err != nil {
				return err
			}
			sb.TLSListen, certPEM = taddr.String(), pemBytes
		} else {
			pemBytes, err := os.ReadFile(sb.TLSCert)
			if err != nil {
				return fmt.Errorf("crm.sandbox.tls_cert (the running sandbox's certificate; see its --tls-cert): %w", err)
			}
			certPEM = pemBytes
		}
		hc, err := HTTPClientTrusting(certPEM, false)
		if err != nil {
			return err
		}
		base := "https://" + sb.TLSListen
		auth = dynamics.Auth{TenantID: "sandbox-tenant", ClientID: "sandbox-client", ClientSecret: secret, AuthorityHost: base, HTTPClient: hc}
		dcfg = dynamics.Config{URL: base, HTTPClient: hc}
	} else {
		var err error
		if dcfg, auth, err = DataverseClientConfig(cc.Dynamics); err != nil {
			return err
		}
	}
	cred, err := dynamics.NewCredential(auth)
	if err != nil {
		return err
	}
	dcfg.Credential, dcfg.Logger = cred, log
	client, err := dynamics.New(dcfg)
	if err != nil {
		return err
	}
	c.Sink, c.Notes, c.Requests = &dynamics.Sink{Client: client}, &dynamics.NoteReader{Client: client}, client.Requests.Load
	c.Usage = func() (int, int) { return 0, 0 } // Dataverse reports no daily allocation
	return nil
}

// embedSandbox starts the embedded sandbox on listen (plain HTTP: the
// test endpoints, and the Salesforce side).
func (c *CRM) embedSandbox(opts sandbox.Options, listen string) (*sandbox.Server, error) {
	s, err := sandbox.New(opts)
	if err != nil {
		return nil, err
	}
	c.sandbox = s
	addr, err := s.Listen(listen)
	if err != nil {
		return nil, err
	}
	c.SandboxAddr = addr.String()
	return s, nil
}

func randomSecret() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

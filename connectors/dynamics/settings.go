package dynamics

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// Settings is a Dataverse environment (Dynamics 365) and the app
// registration ehrbridge signs in as, as the config file's crm.dynamics
// section gives them: declared once, here (internal/config embeds it),
// with secrets by reference. [Settings.ClientConfig] turns it into the
// client's [Config] and [Auth].
type Settings struct {
	// URL is the environment, like https://org.crm.dynamics.com.
	URL string `yaml:"url,required"`
	// APIVersion of the Web API, default "9.2".
	APIVersion string `yaml:"api_version"`
	// TenantID and ClientID of the app registration (Entra ID).
	TenantID string `yaml:"tenant_id"`
	ClientID string `yaml:"client_id"`
	// Exactly one credential: ClientSecret (client_secret_env / _file);
	// CertFile (and KeyFile unless the key follows the certificate in
	// CertFile), PEM; ManagedIdentity; WorkloadIdentity.
	ClientSecret     configvalue.SecretRef `yaml:"client_secret"`
	CertFile         string                `yaml:"cert_file"`
	KeyFile          string                `yaml:"key_file"`
	ManagedIdentity  bool                  `yaml:"managed_identity"`
	WorkloadIdentity bool                  `yaml:"workload_identity"`
	// AuthorityHost is the identity platform, default
	// https://login.microsoftonline.com/ (set it for a sovereign cloud).
	AuthorityHost string `yaml:"authority_host"`
	// CAFile adds trusted CAs (PEM) for a TLS-inspecting proxy.
	CAFile string `yaml:"ca_file"`
	// BatchSize is ops per $batch request, default 50; MaxConcurrent the
	// requests in flight, default 4 (at most 32; Dataverse allows 52).
	BatchSize     int `yaml:"batch_size"`
	MaxConcurrent int `yaml:"max_concurrent"`
	// EntitySets names the entity set of a table whose set name is not
	// its logical name in the plural.
	EntitySets map[string]string `yaml:"entity_sets"`
}

// Validate reports the settings' problems; keys are relative to the
// crm.dynamics section.
func (d Settings) Validate(r configvalue.Reporter) {
	if u, err := url.Parse(d.URL); d.URL != "" && (err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/")) {
		r.Add("url", "must be the environment's https URL like https://org.crm.dynamics.com, got %s", r.Show("url", configvalue.Quote(d.URL)))
	}
	creds := 0
	for _, set := range []bool{d.ClientSecret.IsSet(), d.CertFile != "", d.ManagedIdentity, d.WorkloadIdentity} {
		if set {
			creds++
		}
	}
	if creds != 1 {
		r.Add("", "choose one credential: client_secret_env/_file, cert_file (+ key_file), managed_identity: true or workload_identity: true")
	}
	if (d.ClientSecret.IsSet() || d.CertFile != "") && (d.TenantID == "" || d.ClientID == "") {
		r.Add("", "a client secret or certificate needs tenant_id and client_id")
	}
	r.Readable("cert_file", d.CertFile)
	r.Readable("key_file", d.KeyFile)
	r.Readable("ca_file", d.CAFile)
	if d.AuthorityHost != "" && !strings.HasPrefix(d.AuthorityHost, "https://") {
		r.Add("authority_host", "must be an https URL")
	}
	if d.BatchSize < 0 || d.BatchSize > 1000 {
		r.Add("batch_size", "must be between 1 and 1000 (Dataverse's limit per $batch)")
	}
	if d.MaxConcurrent < 0 || d.MaxConcurrent > 32 {
		r.Add("max_concurrent", "must be between 1 and 32 (Dataverse allows 52 concurrent requests per user)")
	}
}

// ClientConfig is the client configuration and the credential settings
// the settings give, sending with hc (which trusts CAFile: the caller
// builds it): secrets resolved, certificate files read. Errors name the
// key, never a secret.
func (d Settings) ClientConfig(hc *http.Client) (Config, Auth, error) {
	auth := Auth{TenantID: d.TenantID, ClientID: d.ClientID, ManagedIdentity: d.ManagedIdentity,
		WorkloadIdentity: d.WorkloadIdentity, AuthorityHost: d.AuthorityHost, HTTPClient: hc}
	if d.ClientSecret.IsSet() {
		secret, err := d.ClientSecret.Resolve()
		if err != nil {
			return Config{}, auth, fmt.Errorf("client secret: %w", err)
		}
		auth.ClientSecret = secret
	}
	if d.CertFile != "" {
		certPEM, err := os.ReadFile(d.CertFile)
		if err != nil {
			return Config{}, auth, fmt.Errorf("cert_file: %w", err)
		}
		auth.CertPEM = certPEM
		if d.KeyFile != "" {
			if auth.KeyPEM, err = os.ReadFile(d.KeyFile); err != nil {
				return Config{}, auth, fmt.Errorf("key_file: %w", err)
			}
		}
	}
	return Config{URL: d.URL, APIVersion: d.APIVersion, HTTPClient: hc, BatchSize: d.BatchSize,
		MaxConcurrent: d.MaxConcurrent, EntitySets: d.EntitySets}, auth, nil
}

package sandbox

import "github.com/ehrbridge/ehrbridge/internal/configvalue"

// Defaults of the sandbox's addresses.
const (
	// DefaultListen is the address of the sandbox's plain HTTP side (its
	// Salesforce side and the test endpoints).
	DefaultListen = "127.0.0.1:8089"
	// DefaultTLSListen is the address of its TLS (Dataverse) side.
	DefaultTLSListen = "127.0.0.1:8443"
)

// Flavors of the sandbox, the CRM side ehrbridge writes to.
const (
	// FlavorSalesforce is its Salesforce REST side, over plain HTTP.
	FlavorSalesforce = "salesforce"
	// FlavorDataverse is its Dataverse Web API side, over TLS.
	FlavorDataverse = "dataverse"
)

// Settings makes the sandbox the CRM (for demos and tests) as the config
// file's crm.sandbox section gives it: declared once, here
// (internal/config uses it as its SandboxConfig), with its defaults and
// checks. The listen addresses (their form, conflicts with the daemon's
// other listeners, plain HTTP off loopback) and the paths defaulting under
// data_dir are the config's to check and resolve, with every other
// listener and path.
type Settings struct {
	// Flavor is the side of the sandbox ehrbridge writes to: salesforce
	// (default) or dataverse.
	Flavor string `yaml:"flavor"`
	// TLSListen is the address of its TLS side (Dataverse), default
	// 127.0.0.1:8443; TLSCert the certificate to trust (made by the
	// sandbox), default <data_dir>/sandbox-tls.pem.
	TLSListen string `yaml:"tls_listen"`
	TLSCert   string `yaml:"tls_cert"`
	// Embed runs the sandbox inside the daemon; false connects to one
	// already running at Listen (ehrbridge sandbox), with its default test
	// credentials, so that a test can stop the daemon without touching
	// the CRM's state.
	Embed bool `yaml:"embed"`
	// Listen is its address; default 127.0.0.1:8089. Its Salesforce side
	// is plain HTTP, so an address that is not loopback needs
	// InsecurePlaintext.
	Listen string `yaml:"listen"`
	// InsecurePlaintext allows Listen on an address that is not loopback
	// (internal/config checks it with every other opt-out).
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
	// DataFile keeps its records; default <data_dir>/sandbox.json.
	DataFile string `yaml:"data_file"`
}

// Validate fills in the default addresses and flavor and reports a flavor
// the sandbox does not have; keys are relative to the crm.sandbox section.
func (s *Settings) Validate(r configvalue.Reporter) {
	if s.Listen == "" {
		s.Listen = DefaultListen
	}
	if s.TLSListen == "" {
		s.TLSListen = DefaultTLSListen
	}
	switch s.Flavor {
	case "":
		s.Flavor = FlavorSalesforce
	case FlavorSalesforce, FlavorDataverse:
	default:
		r.Add("flavor", "%s: use salesforce (the default) or dataverse", r.Show("flavor", configvalue.Quote(s.Flavor)))
	}
}

package crms

import (
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/config"
)

// The identity names the org or environment, not its spelling nor the
// embedded sandbox's port.
func TestCRMIdentity(t *testing.T) {
	for _, c := range []struct {
		cc   *config.CRMConfig
		want string
	}{
		{nil, ""},
		{&config.CRMConfig{Dynamics: &config.DynamicsConfig{URL: "https://Org.CRM.dynamics.com/"}}, "dataverse https://org.crm.dynamics.com"},
		{&config.CRMConfig{Salesforce: &config.SalesforceConfig{LoginURL: "https://Hospital.my.salesforce.com/", JWTUsername: "Integration@Hospital.example"}},
			"salesforce https://hospital.my.salesforce.com as integration@hospital.example"},
		{&config.CRMConfig{Salesforce: &config.SalesforceConfig{LoginURL: "https://hospital.my.salesforce.com"}}, "salesforce https://hospital.my.salesforce.com"},
		{&config.CRMConfig{Sandbox: &config.SandboxConfig{Embed: true, Listen: "127.0.0.1:1234"}}, "sandbox salesforce (embedded)"},
		{&config.CRMConfig{Sandbox: &config.SandboxConfig{Embed: true, Listen: "127.0.0.1:5678"}}, "sandbox salesforce (embedded)"},
		{&config.CRMConfig{Sandbox: &config.SandboxConfig{Flavor: "dataverse", Listen: "127.0.0.1:8089"}}, "sandbox dataverse at 127.0.0.1:8089"},
	} {
		if got := Identity(c.cc); got != c.want {
			t.Errorf("Identity = %q, want %q", got, c.want)
		}
	}
}

package config

import (
	"testing"
)

// The JWT audience is its own setting: an Experience Cloud site URL and
// the login servers are accepted, and login_url may stay the My Domain
// (the token endpoint). The refused forms are in testdata/bad/salesforce_audience*.
func TestSalesforceAudience(t *testing.T) {
	for _, aud := range []string{"", "https://login.salesforce.com", "https://test.salesforce.com/", "https://hospital.my.site.com/patients"} {
		data := []byte(`data_dir: /var/lib/ehrbridge
crm:
  salesforce:
    login_url: https://hospital.my.salesforce.com
    audience: "` + aud + `"
    client_id: 3MVG9example
    jwt_username: integration@hospital.example
    jwt_key_file: testdata/good/certs/server.key
`)
		cfg, err := Parse("salesforce.yaml", data, lookupTestEnv)
		if err != nil {
			t.Errorf("audience %q: %v", aud, err)
			continue
		}
		if sf := cfg.CRM.Salesforce; sf.Audience != aud || sf.LoginURL != "https://hospital.my.salesforce.com" {
			t.Errorf("audience %q: parsed %q, login_url %q", aud, sf.Audience, sf.LoginURL)
		}
	}
}

package crmcheck

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/connectors"
)

// Each Salesforce token error names the config key or the Setup page to
// change. Codes and texts as Salesforce answers them
// (https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_flow_errors.htm).
func TestExplainSalesforceLogin(t *testing.T) {
	for _, c := range []struct {
		code, desc string
		status     int
		jwt        bool
		want       string
	}{
		{"AUTH_INVALID_CLIENT_ID", "client identifier invalid", 400, false, "crm.salesforce.client_id"},
		{"AUTH_INVALID_GRANT", "client identifier invalid", 400, true, "crm.salesforce.client_id"},
		{"AUTH_INVALID_CLIENT", "invalid client credentials", 400, false, "crm.salesforce.client_secret"},
		{"AUTH_INVALID_GRANT", "user hasn't approved this consumer", 400, true, "Admin approved users are pre-authorized"},
		{"AUTH_INVALID_GRANT", "no client credentials user enabled", 400, false, "run-as user"},
		{"AUTH_INVALID_GRANT", "ip restricted or invalid login hours", 400, true, "IP restrictions"},
		{"AUTH_INVALID_GRANT", "expired access/refresh token", 400, false, "crm.salesforce.refresh_token"},
		{"AUTH_INVALID_GRANT", "invalid assertion", 400, true, "crm.salesforce.jwt_key_file"},
		{"AUTH_INVALID_GRANT", "user is inactive", 400, true, "inactive"},
		{"AUTH_INVALID_GRANT", "authentication failure", 400, true, "crm.salesforce.jwt_username"},
		{"AUTH_INVALID_GRANT", "authentication failure", 400, false, "crm.salesforce.client_id and client_secret"},
		{"AUTH_FAILED", "", 404, false, "crm.salesforce.login_url does not serve"},
	} {
		got := explainSalesforceLogin(&connectors.Error{Code: c.code, Message: c.desc, Status: c.status}, c.jwt)
		if !strings.Contains(got, c.want) {
			t.Errorf("%s %q (jwt %v): %q, want it to say %q", c.code, c.desc, c.jwt, got, c.want)
		}
	}
}

// Each Entra ID code names what to fix
// (https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
func TestExplainEntra(t *testing.T) {
	for code, want := range map[string]string{
		"AADSTS7000215": "crm.dynamics.client_secret is not a valid secret",
		"AADSTS7000222": "has expired",
		"AADSTS700016":  "crm.dynamics.client_id",
		"AADSTS90002":   "crm.dynamics.tenant_id not found",
		"AADSTS900023":  "neither a tenant GUID",
		"AADSTS700027":  "crm.dynamics.cert_file",
		"AADSTS700024":  "clock",
		"AADSTS12345":   "some text",
	} {
		got := explainEntra(&connectors.Error{Code: code, Message: "some text"})
		if !strings.Contains(got, want) || !strings.Contains(got, code) {
			t.Errorf("%s: %q, want %q", code, got, want)
		}
	}
	for _, c := range []struct {
		status int
		code   string
		want   string
	}{
		{http.StatusUnauthorized, "", "no application user"},
		{http.StatusForbidden, "0x80072560", "no application user"},
		{http.StatusUnauthorized, "0x80072560", "not a member of the organization"},
		{http.StatusForbidden, "0x80095ffc", "restricts API access"},
		{http.StatusForbidden, "", "no security role"},
		{http.StatusNotFound, "", "check crm.dynamics.url"},
	} {
		if got := explainDataverseStatus(c.status, c.code, "https://org.crm.dynamics.com"); !strings.Contains(got, c.want) {
			t.Errorf("%d %s: %q, want %q", c.status, c.code, got, c.want)
		}
	}
}

func TestAttributeOf(t *testing.T) {
	for in, want := range map[string]string{"_regardingobjectid_value": "regardingobjectid", "_ownerid_value": "ownerid", "subject": "subject", "_value": "_value"} {
		if got := attributeOf(in); got != want {
			t.Errorf("attributeOf(%q) = %q, want %q", in, got, want)
		}
	}
}

package crms

import (
	"net/url"
	"strings"

	"github.com/ehrbridge/ehrbridge/internal/config"
)

// Identity names the CRM a config sends records to, as the checkpoint
// log records it: the Salesforce org (its login URL, which for a My
// Domain names the org, and the integration user the JWT flow signs in
// as), the Dataverse environment's URL, or the sandbox (embedded in this
// data directory, or the one running apart at its address). "" without a
// CRM. Addresses and account names only, no patient data.
func Identity(cc *config.CRMConfig) string {
	switch {
	case cc == nil:
		return ""
	case cc.Sandbox != nil && cc.Dynamics == nil:
		flavor := cc.Sandbox.Flavor
		if flavor == "" {
			flavor = "salesforce"
		}
		if cc.Sandbox.Embed {
			return "sandbox " + flavor + " (embedded)"
		}
		return "sandbox " + flavor + " at " + cc.Sandbox.Listen
	}
	return kindOf(cc).identity(cc)
}

// normalURL is u with its scheme and host in lower case and no trailing
// slash, so that a respelt URL is the same CRM.
func normalURL(u string) string {
	p, err := url.Parse(strings.TrimSpace(u))
	if err != nil || p.Host == "" {
		return strings.TrimRight(strings.TrimSpace(u), "/")
	}
	p.Scheme, p.Host = strings.ToLower(p.Scheme), strings.ToLower(p.Host)
	p.Path = strings.TrimRight(p.Path, "/")
	p.User, p.RawQuery, p.Fragment = nil, "", ""
	return p.String()
}

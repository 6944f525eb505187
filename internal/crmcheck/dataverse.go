package crmcheck

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/dynamics"
)

// dvBackend checks a Dataverse environment through the connector's
// client.
type dvBackend struct {
	client    *dynamics.Client
	url       string
	authority string
	hc        *http.Client
	done      func()
	rate      http.Header // the last answer's x-ms-ratelimit-* headers
}

func (d *dvBackend) kind() string     { return "dataverse" }
func (d *dvBackend) endpoint() string { return d.url }
func (d *dvBackend) source(table string) string {
	return "the environment's EntityDefinitions of " + table
}
func (d *dvBackend) close() {
	if d.done != nil {
		d.done()
	}
}

func newDataverse(cfg dynamics.Config, auth dynamics.Auth, done func()) (*dvBackend, error) {
	cred, err := dynamics.NewCredential(auth)
	if err != nil {
		return nil, err
	}
	cfg.Credential = cred
	cfg.RetryMax = -1
	c, err := dynamics.New(cfg)
	if err != nil {
		return nil, err
	}
	authority := auth.AuthorityHost
	if authority == "" {
		authority = "https://login.microsoftonline.com/"
	}
	return &dvBackend{client: c, url: cfg.URL, authority: authority, hc: cfg.HTTPClient, done: done}, nil
}

// login gets a token and calls WhoAmI (a GET).
func (d *dvBackend) login(ctx context.Context) (bool, string) {
	status, hdr, body, err := d.client.Get(ctx, "WhoAmI")
	if err == nil && status == http.StatusOK {
		d.noteRate(hdr)
		return true, ""
	}
	var e *connectors.Error
	switch {
	case err == nil:
		e = &connectors.Error{Status: status, Code: dvErrorCode(body)}
	case !errors.As(err, &e):
		return false, "no answer: " + err.Error()
	}
	if strings.HasPrefix(e.Code, "AADSTS") {
		return false, explainEntra(e)
	}
	switch {
	case e.Code == "TOKEN" || e.Code == "NO_ANSWER":
		for _, t := range []struct{ url, key string }{{d.authority, "crm.dynamics.authority_host"}, {d.url, "crm.dynamics.url"}} {
			if why := probe(ctx, d.hc, t.url, t.key); why != "" {
				return false, why
			}
		}
		msg := "no token: " + firstLine(e.Message)
		if e.Code == "NO_ANSWER" {
			msg = "the environment " + d.url + " gave no answer to WhoAmI: check crm.dynamics.url"
		}
		return false, msg
	}
	if msg := explainDataverseStatus(e.Status, e.Code, d.url); msg != "" {
		return false, msg
	}
	return false, "WhoAmI failed: " + e.Detail()
}

// explainDataverseStatus says what an answer of WhoAmI, after a token
// was issued, means for the admin; "" when nothing specific. The error
// codes are Dataverse's: 0x80072560 "The user is not a member of the
// organization." (no application user for the app; seen with 401 and
// 403, https://github.com/MicrosoftDocs/power-platform/issues/2124) and
// 0x80095ffc "Access to Dataverse API is restricted for this application
// Id" (https://github.com/microsoft/PowerPlatform-DataverseServiceClient/issues/528).
func explainDataverseStatus(status int, code, envURL string) string {
	const noAppUser = "the environment has no application user for crm.dynamics.client_id, or it is disabled. In the Power Platform admin center > Environments > this environment > Settings > Users + permissions > Application users, add a new app user for the app registration and assign it a security role that reads and writes the tables ehrbridge uses (https://learn.microsoft.com/power-apps/developer/data-platform/build-web-applications-server-server-s2s-authentication)"
	switch {
	case strings.EqualFold(code, "0x80072560"):
		return fmt.Sprintf("Dataverse: the user is not a member of the organization (%s, HTTP %d): %s", code, status, noAppUser)
	case strings.EqualFold(code, "0x80095ffc"):
		return fmt.Sprintf("Dataverse restricts API access for this application id (%s, HTTP %d): an admin allows the app in the environment's settings, or the tenant's Power Platform policies", code, status)
	case status == http.StatusUnauthorized:
		return "Dataverse refused the app's token (401): " + noAppUser
	case status == http.StatusForbidden:
		return "Dataverse knows the token but refuses the app (403): the application user has no security role or is disabled (assign a role under Application users in the Power Platform admin center), or the environment is in administration mode"
	case status == http.StatusNotFound:
		return "WhoAmI not found (404) at " + envURL + ": check crm.dynamics.url (https://<org>.crm.dynamics.com) and crm.dynamics.api_version"
	}
	return ""
}

// explainEntra turns an AADSTS code into what to change. The codes are
// Microsoft Entra ID's
// (https://learn.microsoft.com/entra/identity-platform/reference-error-codes;
// https://learn.microsoft.com/azure/developer/java/sdk/troubleshooting-authentication-service-principal).
func explainEntra(e *connectors.Error) string {
	prefix := "no token (" + e.Code + "): "
	switch strings.TrimPrefix(e.Code, "AADSTS") {
	case "7000215":
		return prefix + "crm.dynamics.client_secret is not a valid secret of the app registration (use the secret's Value, not its Secret ID)"
	case "7000222":
		return prefix + "crm.dynamics.client_secret has expired: create a new one under the app registration's Certificates & secrets"
	case "700016":
		return prefix + "no app registration with crm.dynamics.client_id in tenant crm.dynamics.tenant_id: check both (Entra ID > App registrations > Overview)"
	case "90002":
		return prefix + "tenant crm.dynamics.tenant_id not found: use the Directory (tenant) ID of the app registration"
	case "900023", "90023":
		return prefix + "crm.dynamics.tenant_id is neither a tenant GUID nor a tenant domain name"
	case "700027":
		return prefix + "the certificate of crm.dynamics.cert_file is not registered with the app (upload it under Certificates & secrets), or has expired"
	case "700024":
		return prefix + "the client assertion is outside its valid time: check the host's clock"
	case "7000112":
		return prefix + "the app registration is disabled in the tenant"
	case "500011":
		return prefix + "the resource crm.dynamics.url is not known in this tenant: check the environment URL"
	case "53003":
		return prefix + "a Conditional Access policy blocks the app's sign-in"
	}
	return prefix + firstLine(e.Message)
}

func dvErrorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}

// noteRate keeps the documented service protection headers of an answer
// (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits).
func (d *dvBackend) noteRate(h http.Header) {
	out := http.Header{}
	for k, v := range h {
		if strings.HasPrefix(strings.ToLower(k), "x-ms-ratelimit-") {
			out[k] = v
		}
	}
	if len(out) > 0 {
		d.rate = out
	}
}

// entityPath is the EntityDefinitions query of a table
// (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api).
func entityPath(logical string) string {
	return "EntityDefinitions(LogicalName='" + url.PathEscape(strings.ToLower(logical)) + "')"
}

// optionCasts are the attribute types whose options come only with a cast
// and $expand=OptionSet.
var optionCasts = []string{"PicklistAttributeMetadata", "StateAttributeMetadata", "StatusAttributeMetadata", "MultiSelectPicklistAttributeMetadata"}

func (d *dvBackend) describe(ctx context.Context, table string) ([]byte, bool, error) {
	status, hdr, body, err := d.client.Get(ctx, entityPath(table)+"?$expand=Attributes,Keys,ManyToOneRelationships")
	if err != nil {
		return nil, false, err
	}
	d.noteRate(hdr)
	switch {
	case status == http.StatusNotFound:
		return nil, false, nil
	case status != http.StatusOK:
		return nil, false, &connectors.Error{Kind: connectors.Permanent, Status: status, Code: cmp.Or(dvErrorCode(body), fmt.Sprint(status))}
	}
	return d.withOptions(ctx, table, body), true, nil
}

// withOptions copies the OptionSet of each choice column, read through
// the attribute casts, into the entity document, so that Schemas.Add sees
// one document with the option values. A cast the environment does not
// answer leaves the document as it was.
func (d *dvBackend) withOptions(ctx context.Context, table string, entity []byte) []byte {
	var doc map[string]any
	if json.Unmarshal(entity, &doc) != nil {
		return entity
	}
	attrs, _ := doc["Attributes"].([]any)
	byName := map[string]map[string]any{}
	for _, a := range attrs {
		if m, ok := a.(map[string]any); ok {
			if n, ok := m["LogicalName"].(string); ok {
				byName[n] = m
			}
		}
	}
	changed := false
	for _, cast := range optionCasts {
		status, _, body, err := d.client.Get(ctx, entityPath(table)+"/Attributes/Microsoft.Dynamics.CRM."+cast+"?$select=LogicalName&$expand=OptionSet")
		if err != nil || status != http.StatusOK {
			continue
		}
		var list struct {
			Value []map[string]any `json:"value"`
		}
		if json.Unmarshal(body, &list) != nil {
			continue
		}
		for _, v := range list.Value {
			n, _ := v["LogicalName"].(string)
			if a := byName[n]; a != nil && v["OptionSet"] != nil {
				a["OptionSet"] = v["OptionSet"]
				changed = true
			}
		}
	}
	if !changed {
		return entity
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return entity
	}
	return out
}

func (d *dvBackend) missingObject(table string) string {
	if strings.HasPrefix(strings.ToLower(table), "msemr_") {
		return fmt.Sprintf("table %s does not exist: is the Healthcare accelerator (Microsoft Cloud for Healthcare, its EMR solution) installed in this environment?", table)
	}
	return fmt.Sprintf("table %s does not exist, or the application user's security role cannot read its metadata", table)
}

func (d *dvBackend) fields(doc []byte) map[string]fieldInfo {
	var e struct {
		Attributes []struct {
			LogicalName      string `json:"LogicalName"`
			IsValidForUpdate *bool  `json:"IsValidForUpdate"`
		} `json:"Attributes"`
	}
	rawFields(doc, &e)
	out := map[string]fieldInfo{}
	for _, a := range e.Attributes {
		// Metadata without the property says nothing against writing.
		out[strings.ToLower(a.LogicalName)] = fieldInfo{name: a.LogicalName, updateable: a.IsValidForUpdate == nil || *a.IsValidForUpdate}
	}
	return out
}

// extra reports the service protection headers Dataverse sent, if any:
// the environment's daily entitlement is not readable through the Web API.
func (d *dvBackend) extra(_ context.Context, r *Report, _ map[string][]byte) {
	if d.rate == nil {
		r.add(Item{Object: GroupLimits, Check: CheckRateLimit, OK: true,
			Message: "no x-ms-ratelimit-* headers in the answers (Dataverse sends them as a limit nears); the daily Power Platform request entitlement is shown in the Power Platform admin center"})
		return
	}
	// Remaining requests, and remaining combined execution time in
	// seconds, of the 5-minute sliding window.
	for _, h := range []struct{ name, unit string }{
		{"X-Ms-Ratelimit-Burst-Remaining-Xrm-Requests", " requests"},
		{"X-Ms-Ratelimit-Time-Remaining-Xrm-Requests", " s of execution time"},
	} {
		if v := d.rate.Get(h.name); v != "" {
			n, err := strconv.ParseFloat(strings.ReplaceAll(v, ",", ""), 64)
			r.add(Item{Object: GroupLimits, Field: strings.ToLower(h.name), Check: CheckRateLimit, OK: err == nil && n > 0,
				Message: v + h.unit + " left in the 5-minute window"})
		}
	}
}

package crmcheck

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/salesforce"
)

// sfBackend checks a Salesforce org through the connector's own client.
type sfBackend struct {
	client  *salesforce.Client
	cfg     salesforce.Config
	hc      *http.Client
	jwt     bool
	done    func()
	reserve float64 // the configured budget reserve, for the allocation line
}

func (s *sfBackend) kind() string     { return "salesforce" }
func (s *sfBackend) endpoint() string { return s.cfg.LoginURL }
func (s *sfBackend) source(object string) string {
	return "the org's describe of " + object
}
func (s *sfBackend) close() {
	if s.done != nil {
		s.done()
	}
}

func newSalesforce(cfg salesforce.Config, log *slog.Logger, done func()) (*sfBackend, error) {
	cfg.Logger = log
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: requestTimeout}
	}
	cfg.RetryMax = -1 // an admin waits for the answer: no backoff rounds
	reserve := cfg.BudgetReserve
	if reserve <= 0 {
		reserve = 0.1 // the client's default
	}
	// The check's few GETs must not be refused by the client's own
	// governor when the org is near its reserve: that is what the
	// allocation line reports.
	cfg.BudgetReserve = 1e-9
	c, err := salesforce.New(cfg)
	if err != nil {
		return nil, err
	}
	return &sfBackend{client: c, cfg: cfg, hc: cfg.HTTPClient, jwt: cfg.Auth.JWTUsername != "", done: done, reserve: reserve}, nil
}

// login signs in and reads /limits (a GET), which also gives the API
// allocation.
func (s *sfBackend) login(ctx context.Context) (bool, string) {
	err := s.client.RefreshUsage(ctx)
	if err == nil {
		return true, ""
	}
	var e *connectors.Error
	if !errors.As(err, &e) {
		return false, "no answer: " + err.Error()
	}
	if e.Code == "AUTH_UNREACHABLE" || e.Code == "NETWORK" {
		if why := probe(ctx, s.hc, s.cfg.LoginURL, "crm.salesforce.login_url"); why != "" {
			return false, why
		}
		return false, "the token endpoint " + strings.TrimSuffix(s.cfg.LoginURL, "/") + "/services/oauth2/token gave no usable answer: is crm.salesforce.login_url the org's login URL (https://login.salesforce.com, https://test.salesforce.com or the My Domain URL)?"
	}
	if strings.HasPrefix(e.Code, "AUTH_") {
		return false, explainSalesforceLogin(e, s.jwt)
	}
	if e.Code == "REQUEST_LIMIT_EXCEEDED" {
		return false, "signed in, but the org's daily API requests are used up (REQUEST_LIMIT_EXCEEDED): nothing can be sent or checked until the 24-hour window frees some; Setup > Company Information shows the allocation"
	}
	if e.Status == http.StatusNotFound {
		return false, "signed in, but the org has no REST API at " + s.cfg.LoginURL + " for API version " + cmp.Or(s.cfg.APIVersion, "62.0") + ": check crm.salesforce.api_version"
	}
	return false, "signed in, but reading /limits failed: " + e.Detail()
}

// explainSalesforceLogin turns a token endpoint's answer into what to
// change. The codes and texts are Salesforce's
// (https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_flow_errors.htm,
// https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_jwt_flow.htm).
func explainSalesforceLogin(e *connectors.Error, jwt bool) string {
	code := strings.ToLower(strings.TrimPrefix(e.Code, "AUTH_"))
	desc := strings.ToLower(e.Message)
	says := func(s string) bool { return strings.Contains(desc, s) }
	prefix := "login refused (" + code
	if e.Message != "" {
		prefix += ": " + firstLine(e.Message)
	}
	prefix += "): "
	switch {
	case says("audience is invalid"):
		// The connector already says which audience to set, and why.
		return "login refused (" + code + "): " + e.Message
	case code == "invalid_client_id" || says("client identifier invalid"):
		return prefix + "crm.salesforce.client_id is not the consumer key of a connected app in this org (copy it from Setup > App Manager > the app > View; a new app takes up to 10 minutes to be usable)"
	case says("hasn't approved") || says("not approved") || says("not pre-authorized") || says("not admin approved"):
		return prefix + "the user is not pre-authorized for the connected app: in Setup > Connected Apps > Manage > Edit Policies set Permitted Users to \"Admin approved users are pre-authorized\" and add the user's profile or permission set"
	case says("no client credentials user"):
		return prefix + "the connected app has no run-as user for the client credentials flow: enable it under the app's OAuth policies and name the integration user"
	case says("ip restrict") || says("ip address") || says("restricted ip"):
		return prefix + "the org refuses this host's IP address: relax IP restrictions in the connected app's policies, or add the host's address to the user profile's login IP ranges"
	case code == "invalid_client" && (says("secret") || says("credentials")):
		return prefix + "crm.salesforce.client_secret does not match the connected app's consumer secret"
	case says("expired") && says("refresh"):
		return prefix + "the refresh token was revoked or expired: authorize the app again and set crm.salesforce.refresh_token"
	case says("inactive") || says("frozen") || says("locked"):
		return prefix + "the integration user is inactive, frozen or locked: ask the Salesforce admin to reactivate it"
	case jwt && (says("signature") || says("invalid assertion") || says("certificate") || says("expired")):
		return prefix + "the connected app's certificate does not verify the assertion: upload the certificate of crm.salesforce.jwt_key_file under \"Use digital signatures\" (or renew an expired one), and check the host clock"
	case jwt && (code == "invalid_grant" && (says("authentication failure") || says("user"))):
		return prefix + "crm.salesforce.jwt_username is not an active user of this org (a sandbox org appends the sandbox name: user@hospital.org.uat)"
	case code == "invalid_grant" && says("authentication failure"):
		return prefix + "the org refused the credentials: check crm.salesforce.client_id and client_secret, and that the run-as user is active"
	case e.Status == http.StatusNotFound || (code == "failed" && e.Message == ""):
		return prefix + "crm.salesforce.login_url does not serve Salesforce's token endpoint: use https://login.salesforce.com, https://test.salesforce.com or the org's My Domain URL"
	}
	return prefix + "see the connected app's OAuth policies and the user's login history in Setup"
}

func (s *sfBackend) describe(ctx context.Context, object string) ([]byte, bool, error) {
	doc, err := s.client.Describe(ctx, object)
	var e *connectors.Error
	if errors.As(err, &e) && (e.Status == http.StatusNotFound || e.Code == "NOT_FOUND") {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return doc, true, nil
}

func (s *sfBackend) missingObject(object string) string {
	switch object {
	case "Account":
		return "object Account does not exist: this cannot be a Salesforce org; check crm.salesforce.login_url"
	case "Task", "User", "Event":
		return fmt.Sprintf("object %s does not exist or the integration user cannot read it: give its profile read access", object)
	}
	return fmt.Sprintf("object %s does not exist or the integration user cannot see it: is Health Cloud installed (with its clinical data model), and does the user's permission set license include Health Cloud? (custom objects: is the package deployed?)", object)
}

func (s *sfBackend) fields(doc []byte) map[string]fieldInfo {
	var d struct {
		Fields []struct {
			Name       string `json:"name"`
			Updateable bool   `json:"updateable"`
		} `json:"fields"`
	}
	rawFields(doc, &d)
	out := map[string]fieldInfo{}
	for _, f := range d.Fields {
		out[strings.ToLower(f.Name)] = fieldInfo{name: f.Name, updateable: f.Updateable}
	}
	return out
}

// newKeys are the External ID fields this release keys records by, and
// the field older releases keyed them by.
var newKeys = []struct{ object, field string }{
	{"Account", "EHR_Patient_Key__c"},
	{"ClinicalEncounter", "EHR_Encounter_Key__c"},
	{"HealthCondition", "EHR_Condition_Key__c"},
}

const oldKey = salesforce.LegacyKeyField

func (s *sfBackend) extra(ctx context.Context, r *Report, described map[string][]byte) {
	// Records an older ehrbridge keyed by SourceSystemIdentifier have no
	// new key yet: an upsert by the new key would create a duplicate.
	for _, k := range newKeys {
		doc, ok := described[k.object]
		if !ok {
			continue
		}
		fs := s.fields(doc)
		if _, hasOld := fs[strings.ToLower(oldKey)]; !hasOld {
			continue
		}
		if _, hasNew := fs[strings.ToLower(k.field)]; !hasNew {
			continue // the mapping checks name the missing field
		}
		n, err := s.client.UncopiedKeys(ctx, k.object, k.field)
		it := Item{Object: k.object, Field: k.field, Check: CheckKeysCopied}
		switch {
		case err != nil:
			it.Message = "cannot count records without the new key: " + errMessage(err)
		case n > 0:
			it.Blocker = true
			it.Message = fmt.Sprintf("%d records keyed by an older ehrbridge: copy %s to %s first (see docs/setup-salesforce.md)", n, oldKey, k.field)
		default:
			it.OK = true
		}
		r.add(it)
	}
	used, max := s.client.Usage()
	it := Item{Object: GroupLimits, Field: "DailyApiRequests", Check: CheckAllocation, OK: true}
	switch {
	case max <= 0:
		it.OK, it.Message = false, "the org did not say (GET /limits has no DailyApiRequests)"
	case used >= max:
		it.OK, it.Blocker = false, true
		it.Message = fmt.Sprintf("0 of %d daily API requests left: ehrbridge cannot send until the 24-hour window frees some", max)
	default:
		left := max - used
		reserve := s.reserve
		it.Message = fmt.Sprintf("%d of %d daily API requests left", left, max)
		if float64(used) >= float64(max)*(1-reserve) {
			it.OK = false
			it.Message += fmt.Sprintf("; ehrbridge keeps the last %.0f%% in reserve and will pause at once", reserve*100)
		}
	}
	r.add(it)
	if au, am := s.client.AppUsage(); am > 0 {
		it := Item{Object: GroupLimits, Field: "per-app-api-usage", Check: CheckAllocation, OK: au < am, Message: fmt.Sprintf("%d of the connected app's %d daily API requests left", am-au, am)}
		it.Blocker = !it.OK
		r.add(it)
	}
}

package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/testcerts"
)

// The published Salesforce rules the sandbox enforces
// (../shared/crm-metadata/salesforce/docs_facts.json REST).

// JWT bearer aud: login.salesforce.com for a production org,
// test.salesforce.com for a sandbox org, or a configured site URL; never
// the server's own URL; a wrong one is invalid_grant "audience is invalid".
func TestJWTAudienceRules(t *testing.T) {
	key, certPEM := testcerts.RSASigning(t)
	pub, err := ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, org := range []struct {
		sandbox bool
		ok, bad []string
	}{
		{false, []string{"https://login.salesforce.com", "https://login.salesforce.com/", "https://hospital.my.site.com/patients"}, []string{"https://test.salesforce.com", "self"}},
		{true, []string{"https://test.salesforce.com", "https://hospital.my.site.com/patients"}, []string{"https://login.salesforce.com", "self"}},
	} {
		f := start(t, Options{JWTKey: pub, SandboxOrg: org.sandbox, LoginURLs: []string{"https://hospital.my.site.com/patients"}})
		exp := f.clk.Now().Add(3 * time.Minute).Unix()
		try := func(aud string) (int, map[string]string) {
			if aud == "self" {
				aud = f.base
			}
			form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
				"assertion": {signJWT(t, key, map[string]any{"iss": "sandbox-client", "sub": "integration@sandbox.example", "aud": aud, "exp": exp})}}
			resp, err := http.PostForm(f.base+"/services/oauth2/token", form)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]string
			_ = json.NewDecoder(resp.Body).Decode(&out)
			return resp.StatusCode, out
		}
		for _, aud := range org.ok {
			if st, out := try(aud); st != 200 || out["access_token"] == "" {
				t.Errorf("sandbox org %v, aud %s: %d %v", org.sandbox, aud, st, out)
			}
		}
		for _, aud := range org.bad {
			if st, out := try(aud); st != 400 || out["error"] != "invalid_grant" || out["error_description"] != "audience is invalid" {
				t.Errorf("sandbox org %v, aud %s: %d %v, want 400 invalid_grant audience is invalid", org.sandbox, aud, st, out)
			}
		}
	}
}

func collection(object, key string) map[string]any {
	return map[string]any{"method": "PATCH", "url": v + "/composite/sobjects/" + object + "/EHR_Patient_Key__c", "referenceId": "r" + key,
		"body": map[string]any{"records": []any{map[string]any{"attributes": map[string]any{"type": object}, "EHR_Patient_Key__c": key, "LastName": "L"}}}}
}

type compositeAnswer struct {
	CompositeResponse []struct {
		HTTPStatusCode int             `json:"httpStatusCode"`
		ReferenceID    *string         `json:"referenceId"`
		Body           json.RawMessage `json:"body"`
	} `json:"compositeResponse"`
}

// At most 25 subrequests, at most 5 collections or queries: over either,
// the call is answered with one LIMIT_EXCEEDED element and nothing runs.
func TestCompositeLimits(t *testing.T) {
	f := start(t, Options{})
	five := []any{}
	for i := range 5 {
		five = append(five, collection("Account", fmt.Sprint("A", i)))
	}
	gets := []any{}
	for i := range 20 {
		gets = append(gets, map[string]any{"method": "GET", "url": v + "/sobjects/Account/001000000000000AAA", "referenceId": fmt.Sprint("g", i)})
	}
	query := map[string]any{"method": "GET", "url": v + "/query?q=" + url.QueryEscape("SELECT Id FROM Account"), "referenceId": "q"}
	for name, c := range map[string]struct {
		subs []any
		ok   bool
	}{
		"5 collections and 20 gets":    {append(append([]any{}, five...), gets...), true},
		"6 collections":                {append(append([]any{}, five...), collection("Account", "A5")), false},
		"5 collections and a query":    {append(append([]any{}, five...), query), false},
		"26 subrequests":               {append(append(append([]any{}, five...), gets...), gets[0]), false},
		"4 collections and a query ok": {append(append([]any{}, five[:4]...), query), true},
	} {
		before := len(f.s.Records("Account"))
		st, b, _ := f.do("POST", v+"/composite", map[string]any{"allOrNone": false, "collateSubrequests": false, "compositeRequest": c.subs})
		var out compositeAnswer
		_ = json.Unmarshal(b, &out)
		if st != 200 {
			t.Errorf("%s: %d %s", name, st, b)
			continue
		}
		if c.ok {
			if len(out.CompositeResponse) != len(c.subs) {
				t.Errorf("%s: %d answers for %d subrequests", name, len(out.CompositeResponse), len(c.subs))
			}
			continue
		}
		if len(out.CompositeResponse) != 1 || out.CompositeResponse[0].HTTPStatusCode != 400 || out.CompositeResponse[0].ReferenceID != nil ||
			!strings.Contains(string(out.CompositeResponse[0].Body), `"errorCode":"LIMIT_EXCEEDED"`) {
			t.Errorf("%s: %s", name, b)
		}
		if n := len(f.s.Records("Account")); n != before {
			t.Errorf("%s: a refused call wrote %d records", name, n-before)
		}
	}
}

// Collated subrequests (the default) run in a shuffled order: an
// encounter referencing a patient of the same call misses it now and
// then; with collateSubrequests false it never does. The answers stay in
// request order.
func TestCompositeCollatedShuffle(t *testing.T) {
	run := func(collate *bool) (missed int) {
		f := start(t, Options{Seed: 42})
		for i := range 20 {
			key := fmt.Sprint("P", i)
			enc := map[string]any{"method": "PATCH", "url": v + "/composite/sobjects/ClinicalEncounter/EHR_Encounter_Key__c", "referenceId": "e",
				"body": map[string]any{"records": []any{map[string]any{"attributes": map[string]any{"type": "ClinicalEncounter"}, "EHR_Encounter_Key__c": "V" + key, "Category": "Ambulatory",
					"Patient": map[string]any{"attributes": map[string]any{"type": "Account"}, "EHR_Patient_Key__c": key}}}}}
			req := map[string]any{"allOrNone": false, "compositeRequest": []any{collection("Account", key), enc}}
			if collate != nil {
				req["collateSubrequests"] = *collate
			}
			st, b, _ := f.do("POST", v+"/composite", req)
			var out compositeAnswer
			_ = json.Unmarshal(b, &out)
			if st != 200 || len(out.CompositeResponse) != 2 || *out.CompositeResponse[0].ReferenceID != "r"+key || *out.CompositeResponse[1].ReferenceID != "e" {
				t.Fatalf("composite: %d %s", st, b)
			}
			if strings.Contains(string(out.CompositeResponse[1].Body), `"success":false`) {
				missed++
			}
		}
		return missed
	}
	no, yes := false, true
	if n := run(&no); n != 0 {
		t.Errorf("collateSubrequests false: %d of 20 encounters missed their patient", n)
	}
	if n := run(nil); n == 0 || n == 20 {
		t.Errorf("collated by default: %d of 20 encounters missed their patient, want some (shuffled)", n)
	}
	if n := run(&yes); n == 0 {
		t.Errorf("collateSubrequests true: never shuffled")
	}
}

// Sforce-Limit-Info in the documented form, per-app part included, from
// a server started near its limits; past a limit, REQUEST_LIMIT_EXCEEDED.
func TestLimitInfoNearLimit(t *testing.T) {
	f := start(t, Options{DailyLimit: 1000, UsedAtStart: 998, AppLimit: 500, AppUsedAtStart: 100, AppName: "ehrbridge-test"})
	_, _, h := f.do("GET", v+"/limits", nil)
	if got := h.Get("Sforce-Limit-Info"); got != "api-usage=999/1000; per-app-api-usage=101/500(appName=ehrbridge-test)" {
		t.Errorf("Sforce-Limit-Info %q", got)
	}
	f.do("GET", v+"/limits", nil)
	if st, b, _ := f.do("GET", v+"/limits", nil); st != 403 || errorCode(b) != "REQUEST_LIMIT_EXCEEDED" {
		t.Errorf("past the org limit: %d %s", st, b)
	}
	g := start(t, Options{AppLimit: 10, AppUsedAtStart: 10})
	if st, b, _ := g.do("GET", v+"/limits", nil); st != 403 || errorCode(b) != "REQUEST_LIMIT_EXCEEDED" {
		t.Errorf("past the app limit: %d %s", st, b)
	}
}

package salesforce

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/testcerts"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// The published rules the connector follows (../shared/crm-metadata/
// salesforce/docs_facts.json REST, connector_checks.json SF-AUTH-2,
// SF-REST-5, SF-REST-6, SF-REST-10).

func TestDefaultAudience(t *testing.T) {
	for login, want := range map[string]string{
		"https://login.salesforce.com":                    ProductionAudience,
		"https://hospital.my.salesforce.com":              ProductionAudience,
		"https://test.salesforce.com/":                    SandboxAudience,
		"https://hospital--uat.sandbox.my.salesforce.com": SandboxAudience,
		"http://127.0.0.1:8089":                           ProductionAudience,
	} {
		if got := DefaultAudience(login); got != want {
			t.Errorf("DefaultAudience(%s) = %s, want %s", login, got, want)
		}
	}
	for aud, ok := range map[string]bool{
		"https://login.salesforce.com": true, "https://test.salesforce.com/": true, "https://hospital.my.site.com/patients": true,
		"https://hospital.my.salesforce.com": false, "https://hospital--uat.sandbox.my.salesforce.com": false,
		"https://hospital.lightning.force.com": false, "http://login.salesforce.com": false, "https://login.salesforce.com/services/oauth2/token": false, "": false,
	} {
		if p := AudienceProblem(aud); (p == "") != ok {
			t.Errorf("AudienceProblem(%q) = %q", aud, p)
		}
	}
}

// The JWT assertion's aud is the audience setting, not the login URL: the
// sandbox, like Salesforce, refuses its own URL (a My Domain) as aud.
func TestJWTAudience(t *testing.T) {
	key, certPEM := testcerts.RSASigning(t)
	pub, err := sandbox.ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	jwtAuth := Auth{JWTUsername: "integration@sandbox.example", JWTPrivateKey: keyPEM}
	login := func(r *rig, aud string) error {
		c := r.client(t, func(cfg *Config) { cfg.Auth, cfg.Audience = jwtAuth, aud })
		return c.RefreshUsage(context.Background())
	}
	prod := newRig(t, sandbox.Options{JWTKey: pub})
	if err := login(prod, ""); err != nil { // default: login.salesforce.com, while the token URL is the sandbox's
		t.Errorf("production org, default audience: %v", err)
	}
	if err := login(prod, SandboxAudience); err == nil || !strings.Contains(err.Error(), "AUTH_INVALID_GRANT") || !strings.Contains(err.(*Error).Message, "audience is invalid: set crm.salesforce.audience") {
		t.Errorf("production org, test.salesforce.com audience: %v", err)
	}
	sbx := newRig(t, sandbox.Options{JWTKey: pub, SandboxOrg: true})
	if err := login(sbx, ""); err == nil || !strings.Contains(err.Error(), "AUTH_INVALID_GRANT") {
		t.Errorf("sandbox org, login.salesforce.com audience: %v", err)
	}
	if err := login(sbx, SandboxAudience); err != nil {
		t.Errorf("sandbox org, test.salesforce.com audience: %v", err)
	}
	// The old behaviour, aud = login URL, is what Salesforce refuses.
	if _, err := New(Config{LoginURL: "https://hospital.my.salesforce.com", ClientID: "x", Auth: jwtAuth,
		Audience: "https://hospital.my.salesforce.com"}); err == nil || !strings.Contains(err.Error(), "audience") {
		t.Errorf("a My Domain audience was accepted: %v", err)
	}
}

func TestParseLimitInfo(t *testing.T) {
	for h, want := range map[string]LimitInfo{
		"api-usage=25/5000; per-app-api-usage=17/250(appName=sample-app)": {Used: 25, Max: 5000, AppUsed: 17, AppMax: 250, AppName: "sample-app"},
		"api-usage=10018/100000; api-bursts=1/750":                        {Used: 10018, Max: 100000},
		"api-usage=5/1000": {Used: 5, Max: 1000},
		"per-app-api-usage=1/2(appName=x);api-usage=3/4": {Used: 3, Max: 4, AppUsed: 1, AppMax: 2, AppName: "x"},
	} {
		got, ok := ParseLimitInfo(h)
		if !ok || got != want {
			t.Errorf("ParseLimitInfo(%q) = %+v %v, want %+v", h, got, ok, want)
		}
	}
	for _, h := range []string{"", "api-usage=", "api-usage=x/y", "api-usage=3/0", "per-app-api-usage=1/2(appName=x)"} {
		if got, ok := ParseLimitInfo(h); ok {
			t.Errorf("ParseLimitInfo(%q) = %+v, want not ok", h, got)
		}
	}
}

// The governor reads the documented header and stops before the reserve,
// org-wide or for the app, against a sandbox that starts near the limit:
// the sandbox never counts a request past the reserve line.
func TestBudgetGovernorNearLimit(t *testing.T) {
	for name, opts := range map[string]sandbox.Options{
		"org": {DailyLimit: 1000, UsedAtStart: 880},
		"app": {DailyLimit: 100000, UsedAtStart: 5, AppLimit: 1000, AppUsedAtStart: 880},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, opts)
			c := r.client(t, func(cfg *Config) { cfg.BudgetReserve = 0.1 })
			ctx := context.Background()
			var last error
			for i := range 100 {
				res, _ := c.Upsert(ctx, "Account", "EHR_Patient_Key__c", []map[string]any{patient(fmt.Sprint(i), "Doe")})
				if last = res[0].Err; last != nil {
					break
				}
			}
			if e, ok := last.(*Error); !ok || e.Kind != Throttled || e.Code != "BUDGET_RESERVED" {
				t.Fatalf("the governor did not stop: %v", last)
			}
			used := r.sb.Stats().RequestsTotal - 1 // the token request is no API request
			if start := 880; start+int(used) != 900 {
				t.Errorf("stopped at %d of 1000 requests, want 900 (the reserve is 10%%)", start+int(used))
			}
			u, m := c.Usage()
			au, am := c.AppUsage()
			if name == "org" && (u != 900 || m != 1000) || name == "app" && (au != 900 || am != 1000) {
				t.Errorf("usage %d/%d, app %d/%d", u, m, au, am)
			}
		})
	}
}

// Composite calls carry at most 5 collection subrequests and set
// collateSubrequests false; the sandbox refuses more than 5 and shuffles
// collated subrequests, so a parent written in the same call as its child
// would otherwise be missing now and then.
func TestCompositeLimitsAndOrder(t *testing.T) {
	var mu sync.Mutex
	var calls []map[string]any
	r := newRig(t, sandbox.Options{Seed: 7})
	target := r.base
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if strings.HasSuffix(req.URL.Path, "/composite") {
			var m map[string]any
			_ = json.Unmarshal(body, &m)
			mu.Lock()
			calls = append(calls, m)
			mu.Unlock()
		}
		out, _ := http.NewRequestWithContext(req.Context(), req.Method, target+req.URL.RequestURI(), strings.NewReader(string(body)))
		out.Header = req.Header.Clone()
		out.Host = req.Host // so that the token's instance_url is the proxy
		resp, err := http.DefaultClient.Do(out)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(proxy.Close)
	r.base = proxy.URL
	c := r.client(t, nil)
	ctx := context.Background()
	// 12 patients, each with an encounter: the encounters reference
	// patients written in the same Composite call.
	for i := range 12 {
		key := fmt.Sprintf("P%d", i)
		res, _ := c.UpsertGroups(ctx, []UpsertGroup{
			{Object: "Account", KeyField: "EHR_Patient_Key__c", Records: []map[string]any{patient(key, "L")}},
			{Object: "ClinicalEncounter", KeyField: "EHR_Encounter_Key__c", Records: []map[string]any{{"EHR_Encounter_Key__c": "V" + key, "Status": "Planned", "Category": "Ambulatory",
				"Patient": map[string]any{"attributes": map[string]string{"type": "Account"}, "EHR_Patient_Key__c": key}}}},
		})
		for gi := range res {
			if res[gi][0].Err != nil {
				t.Errorf("patient %d group %d: %v", i, gi, res[gi][0].Err)
			}
		}
	}
	// ADT-A01-01 maps to 6 collections (Account, ClinicalEncounter,
	// CodeSets, CodeSetBundles, AllergyIntolerance, HealthCondition).
	root := shared.ModuleRoot(t)
	set, err := mappings.Load([]string{filepath.Join(root, "configs", "mappings", "healthcloud")}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	ops := opsOf(t, set, filepath.Join(root, "configs", "samples", "hl7v2", "ADT-A01-01.hl7"))
	mu.Lock()
	before := len(calls)
	mu.Unlock()
	for i, res := range (&Sink{Client: c}).Apply(ctx, ops) {
		if res.Err != nil {
			t.Errorf("ADT-A01-01 op %d (%s %s): %v", i, ops[i].Action, ops[i].Object, res.Err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if n := len(calls) - before; n < 2 {
		t.Errorf("ADT-A01-01 went out in %d Composite calls, want at least 2 (more than 5 collections)", n)
	}
	for i, m := range calls {
		subs, _ := m["compositeRequest"].([]any)
		if collate, ok := m["collateSubrequests"].(bool); !ok || collate {
			t.Errorf("call %d: collateSubrequests %v, want false", i, m["collateSubrequests"])
		}
		if len(subs) == 0 || len(subs) > MaxCollectionSubrequests {
			t.Errorf("call %d: %d collection subrequests", i, len(subs))
		}
	}
}

// A Composite call refused as a whole (one LIMIT_EXCEEDED element) is a
// permanent error for every subrequest, not a garbled answer.
func TestCompositeRefusedWhole(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/oauth2/token") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"access_token":"t","token_type":"Bearer","instance_url":"http://`+req.Host+`"}`)
			return
		}
		_, _ = io.WriteString(w, `{"compositeResponse":[{"body":[{"errorCode":"LIMIT_EXCEEDED","message":"The request can’t contain more than 25 operations."}],"httpHeaders":{},"httpStatusCode":400,"referenceId":null}]}`)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{LoginURL: srv.URL, ClientID: "x", ClientSecret: "y", Auth: Auth{ClientCredentials: true}})
	if err != nil {
		t.Fatal(err)
	}
	res, _ := c.UpsertGroups(context.Background(), []UpsertGroup{
		{Object: "Account", KeyField: "K", Records: []map[string]any{{"K": "1"}}},
		{Object: "Contact", KeyField: "K", Records: []map[string]any{{"K": "2"}}},
	})
	for gi := range res {
		if e, ok := res[gi][0].Err.(*Error); !ok || e.Code != "LIMIT_EXCEEDED" || e.Kind != Permanent {
			t.Errorf("group %d: %v", gi, res[gi][0].Err)
		}
	}
}

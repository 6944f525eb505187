package sandbox

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/testcerts"

	"github.com/ehrbridge/ehrbridge/internal/testclock"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	t     *testing.T
	s     *Server
	base  string
	token string
	clk   *testclock.Clock
}

func start(t *testing.T, opts Options) *fixture {
	t.Helper()
	clk := testclock.New(time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC))
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if opts.RefreshTokens == nil {
		opts.RefreshTokens = map[string]string{"RT123": "integration@sandbox.example"}
	}
	if opts.Schemas == nil {
		// Contact and Patient__c as a site's describe files give them.
		opts.Schemas = []string{siteDescribe}
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f := &fixture{t: t, s: s, base: "http://" + addr.String(), clk: clk}
	f.token = f.login(url.Values{"grant_type": {"client_credentials"}, "client_id": {"sandbox-client"}, "client_secret": {"sandbox-secret"}})
	return f
}

func (f *fixture) login(form url.Values) string {
	f.t.Helper()
	resp, err := http.PostForm(f.base+"/services/oauth2/token", form)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 || out["access_token"] == "" || out["instance_url"] != f.base {
		f.t.Fatalf("token: %d %v", resp.StatusCode, out)
	}
	return out["access_token"]
}

// do sends a request to the data API and returns status, body and headers.
func (f *fixture) do(method, path string, body any) (int, []byte, http.Header) {
	f.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, f.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

const v = "/services/data/v59.0"

func errorCode(b []byte) string {
	var errs []apiError
	if json.Unmarshal(b, &errs) != nil || len(errs) == 0 {
		return ""
	}
	return errs[0].Code
}

func TestOAuthFlows(t *testing.T) {
	key, certPEM := testcerts.RSASigning(t)
	pub, err := ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	f := start(t, Options{JWTKey: pub, LoginURLs: []string{"https://hospital.my.site.com/patients"}})
	f.login(url.Values{"grant_type": {"password"}, "client_id": {"sandbox-client"}, "client_secret": {"sandbox-secret"},
		"username": {"integration@sandbox.example"}, "password": {"sandbox-password"}})
	f.login(url.Values{"grant_type": {"refresh_token"}, "client_id": {"sandbox-client"}, "client_secret": {"sandbox-secret"}, "refresh_token": {"RT123"}})
	exp := f.clk.Now().Add(3 * time.Minute).Unix()
	f.login(url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
		"assertion": {signJWT(t, key, map[string]any{"iss": "sandbox-client", "sub": "integration@sandbox.example", "aud": "https://login.salesforce.com", "exp": exp})}})

	bad := []struct {
		name string
		form url.Values
		want string
	}{
		{"wrong secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {"sandbox-client"}, "client_secret": {"x"}}, "invalid_client"},
		{"wrong password", url.Values{"grant_type": {"password"}, "client_id": {"sandbox-client"}, "client_secret": {"sandbox-secret"}, "username": {"integration@sandbox.example"}, "password": {"x"}}, "invalid_grant"},
		{"unknown refresh token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"sandbox-client"}, "refresh_token": {"nope"}}, "invalid_grant"},
		{"jwt signed by another key", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {signJWT(t, func() *rsa.PrivateKey { k, _ := testcerts.RSASigning(t); return k }(), map[string]any{"iss": "sandbox-client", "sub": "integration@sandbox.example", "aud": "https://login.salesforce.com", "exp": exp})}}, "invalid_grant"},
		{"jwt expired", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {signJWT(t, key, map[string]any{"iss": "sandbox-client", "sub": "integration@sandbox.example", "aud": "https://login.salesforce.com", "exp": f.clk.Now().Add(-time.Minute).Unix()})}}, "invalid_grant"},
		{"jwt audience is the server itself (a My Domain)", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {signJWT(t, key, map[string]any{"iss": "sandbox-client", "sub": "integration@sandbox.example", "aud": f.base, "exp": exp})}}, "invalid_grant"},
		{"jwt audience test.salesforce.com in a production org", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {signJWT(t, key, map[string]any{"iss": "sandbox-client", "sub": "integration@sandbox.example", "aud": "https://test.salesforce.com", "exp": exp})}}, "invalid_grant"},
		{"jwt wrong audience", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {signJWT(t, key, map[string]any{"iss": "sandbox-client", "sub": "integration@sandbox.example", "aud": "https://evil.example", "exp": exp})}}, "invalid_grant"},
		{"unknown grant", url.Values{"grant_type": {"authorization_code"}}, "unsupported_grant_type"},
	}
	for _, c := range bad {
		resp, err := http.PostForm(f.base+"/services/oauth2/token", c.form)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != 400 || out["error"] != c.want {
			t.Errorf("%s: %d %v, want 400 %s", c.name, resp.StatusCode, out, c.want)
		}
	}

	// An expired session answers INVALID_SESSION_ID; a new token works.
	f.clk.Add(3 * time.Hour)
	if st, b, _ := f.do("GET", v+"/limits", nil); st != 401 || errorCode(b) != "INVALID_SESSION_ID" {
		t.Errorf("expired token: %d %s", st, b)
	}
	f.token = f.login(url.Values{"grant_type": {"client_credentials"}, "client_id": {"sandbox-client"}, "client_secret": {"sandbox-secret"}})
	if st, _, _ := f.do("GET", v+"/limits", nil); st != 200 {
		t.Errorf("new token: %d", st)
	}
}

func TestSObjectsAndUpsert(t *testing.T) {
	f := start(t, Options{})
	st, b, _ := f.do("POST", v+"/sobjects/Account", map[string]any{"LastName": "Doe", "EHR_Patient_Key__c": "H|1"})
	var res saveResult
	_ = json.Unmarshal(b, &res)
	if st != 201 || !res.Success || len(res.ID) != 18 || !strings.HasPrefix(res.ID, "001") {
		t.Fatalf("create: %d %s", st, b)
	}
	if st, b, _ := f.do("GET", v+"/sobjects/Account/"+res.ID, nil); st != 200 || !strings.Contains(string(b), `"LastName":"Doe"`) || !strings.Contains(string(b), `"type":"Account"`) {
		t.Errorf("get: %d %s", st, b)
	}
	// Upsert: update the existing record (200), create a new one (201).
	st, b, _ = f.do("PATCH", v+"/sobjects/Account/EHR_Patient_Key__c/H%7C1", map[string]any{"FirstName": "Jane"})
	if st != 200 || !strings.Contains(string(b), `"created":false`) || !strings.Contains(string(b), res.ID) {
		t.Errorf("upsert update: %d %s", st, b)
	}
	st, b, _ = f.do("PATCH", v+"/sobjects/Account/EHR_Patient_Key__c/A%2FB%20C", map[string]any{"LastName": "Slash"})
	if st != 201 || !strings.Contains(string(b), `"created":true`) {
		t.Errorf("upsert create with an escaped slash: %d %s", st, b)
	}
	if recs := f.s.Records("Account"); len(recs) != 2 || recs[1]["EHR_Patient_Key__c"] != "A/B C" || recs[0]["FirstName"] != "Jane" {
		t.Errorf("records %v", recs)
	}
	// An unescaped slash is an extra path segment: not found, as in Salesforce.
	if st, _, _ := f.do("PATCH", v+"/sobjects/Account/EHR_Patient_Key__c/A/B", map[string]any{"LastName": "X"}); st != 404 {
		t.Errorf("unescaped slash: %d", st)
	}
	// Two records with one key (a field that is not unique: the
	// idLookup SourceSystemIdentifier): 300 with their URLs.
	f.do("POST", v+"/sobjects/Account", map[string]any{"LastName": "Twin", "SourceSystemIdentifier": "DUP"})
	f.do("POST", v+"/sobjects/Account", map[string]any{"LastName": "Twin", "SourceSystemIdentifier": "DUP"})
	if st, b, _ := f.do("PATCH", v+"/sobjects/Account/SourceSystemIdentifier/DUP", map[string]any{"LastName": "X"}); st != 300 || !strings.Contains(string(b), v+"/sobjects/Account/001") {
		t.Errorf("multiple matches: %d %s", st, b)
	}
	// Validation errors.
	cases := []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"POST", v + "/sobjects/Account", map[string]any{"FirstName": "NoLast"}, 400, "REQUIRED_FIELD_MISSING"},
		{"POST", v + "/sobjects/Account", map[string]any{"LastName": "X", "Bad Field": 1}, 400, "INVALID_FIELD"},
		{"PATCH", v + "/sobjects/Account/EHR_Patient_Key__c/K1", map[string]any{"LastName": "X", "EHR_Patient_Key__c": "K2"}, 400, "INVALID_FIELD"},
		{"PATCH", v + "/sobjects/Account/001000000000000AAA", map[string]any{"LastName": "X"}, 404, "NOT_FOUND"},
		{"GET", v + "/sobjects/Account/001000000000000AAA", nil, 404, "NOT_FOUND"},
		{"POST", v + "/sobjects/ClinicalEncounter", map[string]any{"Status": "Planned", "Patient": map[string]any{"attributes": map[string]any{"type": "Account"}, "EHR_Patient_Key__c": "missing"}}, 400, "INVALID_FIELD"},
		{"GET", "/services/data/v9.0/limits", nil, 404, "NOT_FOUND"},
	}
	for _, c := range cases {
		if st, b, _ := f.do(c.method, c.path, c.body); st != c.status || errorCode(b) != c.code {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, st, b, c.status, c.code)
		}
	}
	// A relationship by external id resolves to the record's id.
	st, b, _ = f.do("PATCH", v+"/sobjects/ClinicalEncounter/EHR_Encounter_Key__c/V1",
		map[string]any{"Status": "In Progress", "Category": "Emergency", "Patient": map[string]any{"attributes": map[string]any{"type": "Account"}, "EHR_Patient_Key__c": "H|1"}})
	if st != 201 {
		t.Fatalf("encounter upsert: %d %s", st, b)
	}
	if enc := f.s.Records("ClinicalEncounter"); len(enc) != 1 || enc[0]["PatientId"] != res.ID {
		t.Errorf("encounter %v, want PatientId %s", enc, res.ID)
	}
	if st, _, _ := f.do("DELETE", v+"/sobjects/Account/"+res.ID, nil); st != 204 {
		t.Errorf("delete: %d", st)
	}
}

func TestCollections(t *testing.T) {
	f := start(t, Options{})
	rec := func(key, last string) map[string]any {
		return map[string]any{"attributes": map[string]any{"type": "Account"}, "EHR_Patient_Key__c": key, "LastName": last}
	}
	st, b, _ := f.do("PATCH", v+"/composite/sobjects/Account/EHR_Patient_Key__c", map[string]any{"allOrNone": false,
		"records": []any{rec("A", "One"), rec("B", "Two"), rec("A", "Again"), map[string]any{"attributes": map[string]any{"type": "Account"}, "EHR_Patient_Key__c": "C"}}})
	var res []collectionResult
	_ = json.Unmarshal(b, &res)
	if st != 200 || len(res) != 4 {
		t.Fatalf("upsert: %d %s", st, b)
	}
	if res[0].Success || res[0].Errors[0].StatusCode != "DUPLICATE_VALUE" || res[2].Errors[0].StatusCode != "DUPLICATE_VALUE" {
		t.Errorf("repeated key: %s", b)
	}
	if !res[1].Success || !*res[1].Created || res[3].Success || res[3].Errors[0].StatusCode != "REQUIRED_FIELD_MISSING" {
		t.Errorf("results: %s", b)
	}
	// allOrNone: one bad record rolls back the others.
	before := len(f.s.Records("Account"))
	st, b, _ = f.do("PATCH", v+"/composite/sobjects/Account/EHR_Patient_Key__c", map[string]any{"allOrNone": true,
		"records": []any{rec("D", "Four"), rec("B", "Changed"), map[string]any{"attributes": map[string]any{"type": "Account"}, "EHR_Patient_Key__c": "E", "Bad Field": 1}}})
	_ = json.Unmarshal(b, &res)
	if st != 200 || res[0].Errors[0].StatusCode != "ALL_OR_NONE_OPERATION_ROLLED_BACK" || res[2].Errors[0].StatusCode != "INVALID_FIELD" {
		t.Errorf("allOrNone: %s", b)
	}
	recs := f.s.Records("Account")
	if len(recs) != before || recs[0]["LastName"] != "Two" {
		t.Errorf("not rolled back: %v", recs)
	}
	// Create and update by id; more than 200 records is refused.
	st, b, _ = f.do("POST", v+"/composite/sobjects", map[string]any{"records": []any{map[string]any{"attributes": map[string]any{"type": "Contact"}, "LastName": "C1"}}})
	_ = json.Unmarshal(b, &res)
	if st != 200 || !res[0].Success {
		t.Fatalf("create: %d %s", st, b)
	}
	id := *res[0].ID
	st, b, _ = f.do("PATCH", v+"/composite/sobjects", map[string]any{"records": []any{map[string]any{"attributes": map[string]any{"type": "Contact"}, "id": id, "FirstName": "F"}}})
	if st != 200 || f.s.Records("Contact")[0]["FirstName"] != "F" {
		t.Errorf("update: %d %s", st, b)
	}
	many := make([]any, 201)
	for i := range many {
		many[i] = rec(strings.Repeat("k", i+1), "L")
	}
	if st, b, _ := f.do("PATCH", v+"/composite/sobjects/Account/EHR_Patient_Key__c", map[string]any{"records": many}); st != 400 || errorCode(b) != "EXCEEDED_ID_LIMIT" {
		t.Errorf("201 records: %d %s", st, b)
	}
	if st, b, _ := f.do("DELETE", v+"/composite/sobjects?ids="+id, nil); st != 200 || !strings.Contains(string(b), `"success":true`) {
		t.Errorf("delete: %d %s", st, b)
	}
}

func TestQueryPaging(t *testing.T) {
	f := start(t, Options{QueryPageSize: 3})
	for i := range 7 {
		f.do("POST", v+"/sobjects/Contact", map[string]any{"LastName": "P" + string(rune('a'+i)), "MRN__c": "M" + string(rune('0'+i))})
		f.clk.Add(time.Minute)
	}
	q := url.QueryEscape("SELECT Id, LastName FROM Contact WHERE SystemModstamp > 2026-01-05T10:01:30Z ORDER BY LastName DESC")
	var got []string
	path := v + "/query?q=" + q
	pages := 0
	for path != "" {
		st, b, _ := f.do("GET", path, nil)
		if st != 200 {
			t.Fatalf("query: %d %s", st, b)
		}
		var page struct {
			TotalSize      int      `json:"totalSize"`
			Done           bool     `json:"done"`
			NextRecordsURL string   `json:"nextRecordsUrl"`
			Records        []Record `json:"records"`
		}
		_ = json.Unmarshal(b, &page)
		if page.TotalSize != 5 {
			t.Errorf("totalSize %d", page.TotalSize)
		}
		for _, r := range page.Records {
			got = append(got, r["LastName"].(string))
		}
		path = page.NextRecordsURL
		pages++
	}
	if strings.Join(got, ",") != "Pg,Pf,Pe,Pd,Pc" || pages != 2 {
		t.Errorf("records %v in %d pages", got, pages)
	}
	if st, b, _ := f.do("GET", v+"/query?q="+url.QueryEscape("SELECT Id FORM Contact"), nil); st != 400 || errorCode(b) != "MALFORMED_QUERY" {
		t.Errorf("bad query: %d %s", st, b)
	}
}

func TestFaultsLimitsStats(t *testing.T) {
	f := start(t, Options{DailyLimit: 1000, Seed: 7})
	post := func(body string) {
		resp, err := http.Post(f.base+"/sandbox/v1/faults", "application/json", strings.NewReader(body))
		if err != nil || resp.StatusCode != 204 {
			t.Fatalf("fault %s: %v %v", body, err, resp)
		}
		resp.Body.Close()
	}
	post(`{"status":503,"count":2}`)
	for i := range 3 {
		st, b, h := f.do("GET", v+"/limits", nil)
		if want := []int{503, 503, 200}[i]; st != want {
			t.Errorf("request %d: %d %s, want %d", i, st, b, want)
		}
		if !strings.HasPrefix(h.Get("Sforce-Limit-Info"), "api-usage=") {
			t.Errorf("no Sforce-Limit-Info header")
		}
	}
	post(`{"request_limit_exceeded":true,"seconds":30}`)
	if st, b, _ := f.do("GET", v+"/limits", nil); st != 403 || errorCode(b) != "REQUEST_LIMIT_EXCEEDED" {
		t.Errorf("request limit: %d %s", st, b)
	}
	f.clk.Add(31 * time.Second)
	st, b, h := f.do("GET", v+"/limits", nil)
	if st != 200 || !strings.Contains(string(b), `"Max":1000`) || h.Get("Sforce-Limit-Info") != "api-usage=5/1000" {
		t.Errorf("limits after the window: %d %s %s", st, b, h.Get("Sforce-Limit-Info"))
	}
	// Drop after commit: the write is applied, the answer never comes.
	post(`{"drop_after_commit_ratio":1}`)
	body, _ := json.Marshal(map[string]any{"LastName": "Dropped"})
	req, _ := http.NewRequest("POST", f.base+v+"/sobjects/Account", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("drop after commit answered %d", resp.StatusCode)
	}
	if recs := f.s.Records("Account"); len(recs) != 1 {
		t.Errorf("dropped write not applied: %v", recs)
	}
	req, _ = http.NewRequest("DELETE", f.base+"/sandbox/v1/faults", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 204 {
		t.Fatalf("clear faults: %v", err)
	}
	post(`{"latency_ms":50}`)
	t0 := time.Now()
	f.do("GET", v+"/limits", nil)
	if time.Since(t0) < 50*time.Millisecond {
		t.Errorf("latency not applied")
	}
	resp, err := http.Get(f.base + "/sandbox/v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	var stats Stats
	_ = json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	// 1 token + 6 limits + 1 create; /sandbox/v1 calls are not counted.
	if stats.RequestsTotal != 8 || stats.Records["Account"] != 1 || stats.ByEndpoint["sobject_create"] != 1 {
		t.Errorf("stats %+v", stats)
	}
	resp, err = http.Get(f.base + "/sandbox/v1/objects/Account")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), "[") || !strings.Contains(string(b), "Dropped") {
		t.Errorf("objects: %s", b)
	}
}

func TestPersistence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sandbox.json")
	f := start(t, Options{DataFile: file})
	f.do("PATCH", v+"/sobjects/Account/EHR_Patient_Key__c/P1", map[string]any{"LastName": "Kept"})
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := New(Options{DataFile: file})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	recs := s2.Records("Account")
	if len(recs) != 1 || recs[0]["LastName"] != "Kept" || recs[0]["EHR_Patient_Key__c"] != "P1" {
		t.Errorf("after restart: %v", recs)
	}
}

func TestCaseSafeID(t *testing.T) {
	// A documented example pair of a 15- and an 18-character id.
	if got := caseSafeSuffix("001A0000006Vm9r"); got != "IAC" {
		t.Errorf("suffix %s, want IAC", got)
	}
}

func signJWT(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// Composite runs subrequests in order as one API request when
// collateSubrequests is false.
func TestComposite(t *testing.T) {
	f := start(t, Options{})
	before := f.s.Stats().RequestsTotal
	st, b, _ := f.do("POST", v+"/composite", map[string]any{"allOrNone": false, "collateSubrequests": false, "compositeRequest": []any{
		map[string]any{"method": "PATCH", "url": v + "/composite/sobjects/Account/EHR_Patient_Key__c", "referenceId": "a",
			"body": map[string]any{"records": []any{map[string]any{"attributes": map[string]any{"type": "Account"}, "EHR_Patient_Key__c": "P1", "LastName": "Doe"}}}},
		map[string]any{"method": "PATCH", "url": v + "/composite/sobjects/ClinicalEncounter/EHR_Encounter_Key__c", "referenceId": "e",
			"body": map[string]any{"records": []any{map[string]any{"attributes": map[string]any{"type": "ClinicalEncounter"}, "EHR_Encounter_Key__c": "V1", "Category": "Emergency",
				"Patient": map[string]any{"attributes": map[string]any{"type": "Account"}, "EHR_Patient_Key__c": "P1"}}}}},
		map[string]any{"method": "GET", "url": v + "/sobjects/Account/001000000000000AAA", "referenceId": "missing"},
	}})
	var out struct {
		CompositeResponse []struct {
			HTTPStatusCode int             `json:"httpStatusCode"`
			ReferenceID    string          `json:"referenceId"`
			Body           json.RawMessage `json:"body"`
		} `json:"compositeResponse"`
	}
	_ = json.Unmarshal(b, &out)
	if st != 200 || len(out.CompositeResponse) != 3 {
		t.Fatalf("composite: %d %s", st, b)
	}
	codes := []int{out.CompositeResponse[0].HTTPStatusCode, out.CompositeResponse[1].HTTPStatusCode, out.CompositeResponse[2].HTTPStatusCode}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 404 || out.CompositeResponse[1].ReferenceID != "e" {
		t.Errorf("subrequest statuses %v: %s", codes, b)
	}
	if enc := f.s.Records("ClinicalEncounter"); len(enc) != 1 || enc[0]["PatientId"] != f.s.Records("Account")[0]["Id"] {
		t.Errorf("the second subrequest did not see the first's record: %v", enc)
	}
	if n := f.s.Stats().RequestsTotal - before; n != 1 {
		t.Errorf("composite counted as %d requests, want 1", n)
	}
}

// A newcomer plays coordinator: create and edit records without a token;
// those calls are not API requests.
func TestUserEndpoints(t *testing.T) {
	f := start(t, Options{})
	f.do("PATCH", v+"/sobjects/Account/EHR_Patient_Key__c/H%7C1", map[string]any{"LastName": "Doe"})
	before := f.s.Stats().RequestsTotal
	resp, err := http.Post(f.base+"/sandbox/v1/objects/Task", "application/json", strings.NewReader(
		`{"Subject":"Call","Description":"Discussed discharge plan","Send_to_EHR__c":true,"What":{"attributes":{"type":"Account"},"EHR_Patient_Key__c":"H|1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var created map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != 201 || !strings.HasPrefix(created["id"], "00T") {
		t.Fatalf("create: %d %v", resp.StatusCode, created)
	}
	req, _ := http.NewRequest("PATCH", f.base+"/sandbox/v1/objects/Task/"+created["id"], strings.NewReader(`{"Description":"Edited"}`))
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("edit: %v %v", err, resp)
	}
	resp.Body.Close()
	tasks := f.s.Records("Task")
	acct := f.s.Records("Account")[0]
	if len(tasks) != 1 || tasks[0]["Description"] != "Edited" || tasks[0]["WhatId"] != acct["Id"] {
		t.Errorf("task %v", tasks)
	}
	if n := f.s.Stats().RequestsTotal - before; n != 0 {
		t.Errorf("user edits counted as %d API requests", n)
	}
}

package salesforce

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/testcerts"

	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
	"github.com/ehrbridge/ehrbridge/mappings"
)

type rig struct {
	sb   *sandbox.Server
	base string
	logs *syncbuf.Buffer
}

func newRig(t *testing.T, opts sandbox.Options) *rig {
	t.Helper()
	sb, err := sandbox.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := sb.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return &rig{sb: sb, base: "http://" + addr.String(), logs: &syncbuf.Buffer{}}
}

func (r *rig) client(t *testing.T, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{LoginURL: r.base, ClientID: "sandbox-client", ClientSecret: "sandbox-secret", APIVersion: "59.0",
		Auth: Auth{ClientCredentials: true}, RetryWaitMin: time.Millisecond, RetryWaitMax: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (r *rig) fault(t *testing.T, body string) {
	t.Helper()
	resp, err := http.Post(r.base+"/sandbox/v1/faults", "application/json", strings.NewReader(body))
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("fault %s: %v", body, err)
	}
	resp.Body.Close()
}

func (r *rig) clearFaults(t *testing.T) {
	req, _ := http.NewRequest("DELETE", r.base+"/sandbox/v1/faults", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func patient(key, last string) map[string]any {
	return map[string]any{"EHR_Patient_Key__c": key, "LastName": last}
}

func TestAuthFlows(t *testing.T) {
	key, certPEM := testcerts.RSASigning(t)
	pub, err := sandbox.ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, sandbox.Options{JWTKey: pub, RefreshTokens: map[string]string{"RT-1": "integration@sandbox.example"}})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	for name, auth := range map[string]Auth{
		"jwt":                {JWTUsername: "integration@sandbox.example", JWTPrivateKey: keyPEM},
		"client credentials": {ClientCredentials: true},
		"refresh token":      {RefreshToken: "RT-1"},
	} {
		c := r.client(t, func(cfg *Config) { cfg.Auth = auth })
		res, err := c.Upsert(context.Background(), "Account", "EHR_Patient_Key__c", []map[string]any{patient("A|"+name, "Doe")})
		if err != nil || res[0].Err != nil || len(res[0].ID) != 18 {
			t.Errorf("%s: %v %+v", name, err, res)
		}
	}
	bad := r.client(t, func(cfg *Config) { cfg.ClientSecret = "wrong" })
	res, _ := bad.Upsert(context.Background(), "Account", "EHR_Patient_Key__c", []map[string]any{patient("X", "Doe")})
	if KindOf(res[0].Err) != Permanent || !strings.Contains(res[0].Err.Error(), "AUTH_INVALID_CLIENT") {
		t.Errorf("bad secret: %v", res[0].Err)
	}
}

func TestUpsertBatchesMergesAndClassifies(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	c := r.client(t, nil)
	ctx := context.Background()
	var recs []map[string]any
	for i := range 450 {
		recs = append(recs, patient(fmt.Sprintf("H|%04d", i), "P"))
	}
	recs = append(recs, patient("H|0007", "Later"), map[string]any{"EHR_Patient_Key__c": "H|BAD", "FirstName": "NoLast"}, map[string]any{"LastName": "NoKey"})
	before := r.sb.Stats().ByEndpoint["collection_upsert"]
	res, err := c.Upsert(ctx, "Account", "EHR_Patient_Key__c", recs)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.sb.Stats().ByEndpoint["collection_upsert"] - before; n != 3 {
		t.Errorf("%d collection requests for 451 distinct keys, want 3", n)
	}
	if res[7].ID == "" || res[7].ID != res[450].ID {
		t.Errorf("a repeated key was not merged: %+v %+v", res[7], res[450])
	}
	if KindOf(res[451].Err) != Permanent || !strings.Contains(res[451].Err.(*Error).Detail(), "REQUIRED_FIELD_MISSING") {
		t.Errorf("required field: %+v", res[451])
	}
	if res[452].Err == nil || res[452].Err.(*Error).Code != "MISSING_KEY" {
		t.Errorf("missing key: %+v", res[452])
	}
	accounts := r.sb.Records("Account")
	if len(accounts) != 450 {
		t.Fatalf("%d accounts", len(accounts))
	}
	for _, a := range accounts {
		if a["EHR_Patient_Key__c"] == "H|0007" && a["LastName"] != "Later" {
			t.Errorf("merged record kept %v, want the later value", a["LastName"])
		}
	}
	// Re-applying the same records changes nothing: no new records.
	if _, err := c.Upsert(ctx, "Account", "EHR_Patient_Key__c", recs[:10]); err != nil || len(r.sb.Records("Account")) != 450 {
		t.Errorf("re-apply created records: %v", err)
	}
}

func TestReferencesAndEscapedKeys(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	c := r.client(t, nil)
	ctx := context.Background()
	key := "GEN/HOSP|A B#1?x"
	if res, _ := c.Upsert(ctx, "Account", "EHR_Patient_Key__c", []map[string]any{patient(key, "Doe")}); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	enc := Fields([]mappings.Field{
		{Name: "PatientId", Value: mappings.Value{Kind: mappings.Ref, Ref: &mappings.Reference{Object: "Account", KeyField: "EHR_Patient_Key__c", Key: key}}},
		{Name: "Status", Value: mappings.Str("In Progress")},
		{Name: "Category", Value: mappings.Str("Inpatient Encounter")},
		{Name: "Duration", Value: mappings.Num("2.5")},
		{Name: "EndDate", Value: mappings.NullValue},
	})
	enc["EHR_Encounter_Key__c"] = "V1"
	res, _ := c.Upsert(ctx, "ClinicalEncounter", "EHR_Encounter_Key__c", []map[string]any{enc})
	if res[0].Err != nil {
		t.Fatalf("encounter: %v", res[0].Err)
	}
	id, err := c.FindID(ctx, "Account", "EHR_Patient_Key__c", key)
	if err != nil || id == "" {
		t.Fatalf("FindID of a key with / # ? and spaces: %q %v", id, err)
	}
	e := r.sb.Records("ClinicalEncounter")[0]
	if e["PatientId"] != id || e["Duration"] != 2.5 || e["EndDate"] != nil {
		t.Errorf("encounter %v", e)
	}
	if id, err := c.FindID(ctx, "Account", "EHR_Patient_Key__c", "nobody"); err != nil || id != "" {
		t.Errorf("FindID of nothing: %q %v", id, err)
	}
	// A reference to a record that does not exist fails that record, permanently.
	enc["PatientId"] = nil
	delete(enc, "PatientId")
	enc["Patient"] = map[string]any{"attributes": map[string]string{"type": "Account"}, "EHR_Patient_Key__c": "missing"}
	enc["EHR_Encounter_Key__c"] = "V2"
	res, _ = c.Upsert(ctx, "ClinicalEncounter", "EHR_Encounter_Key__c", []map[string]any{enc})
	if KindOf(res[0].Err) != Permanent || res[0].Err.(*Error).Code != "INVALID_FIELD" {
		t.Errorf("dangling reference: %v", res[0].Err)
	}
}

func TestQueryPaging(t *testing.T) {
	r := newRig(t, sandbox.Options{QueryPageSize: 2})
	c := r.client(t, nil)
	ctx := context.Background()
	var recs []map[string]any
	for i := range 5 {
		recs = append(recs, patient(fmt.Sprint(i), fmt.Sprint("L", i)))
	}
	if _, err := c.Upsert(ctx, "Account", "EHR_Patient_Key__c", recs); err != nil {
		t.Fatal(err)
	}
	got, err := c.Query(ctx, "SELECT Id, LastName FROM Account WHERE LastName != 'L2' ORDER BY LastName DESC")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range got {
		names = append(names, g["LastName"].(string))
	}
	if strings.Join(names, ",") != "L4,L3,L1,L0" {
		t.Errorf("query: %v", names)
	}
}

func TestFaults(t *testing.T) {
	r := newRig(t, sandbox.Options{Seed: 3})
	c := r.client(t, nil)
	ctx := context.Background()
	up := func(key string) Result {
		res, err := c.Upsert(ctx, "Account", "EHR_Patient_Key__c", []map[string]any{patient(key, "Doe")})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	if res := up("warm"); res.Err != nil {
		t.Fatal(res.Err)
	}
	// A burst of 503s is retried away.
	r.fault(t, `{"status":503,"count":3}`)
	if res := up("after-503"); res.Err != nil {
		t.Errorf("503 burst: %v", res.Err)
	}
	// Too many 503s: a transient error for the pipeline to retry later.
	r.fault(t, `{"status":503,"count":10}`)
	if res := up("many-503"); KindOf(res.Err) != Transient {
		t.Errorf("503 beyond retries: %v", res.Err)
	}
	r.clearFaults(t)
	// The request limit is a pause, not retried here.
	r.fault(t, `{"request_limit_exceeded":true,"seconds":60}`)
	before := r.sb.Stats().RequestsTotal
	res := up("limited")
	if e, ok := res.Err.(*Error); !ok || e.Kind != Throttled || e.RetryAfter <= 0 {
		t.Errorf("request limit: %v", res.Err)
	}
	if n := r.sb.Stats().RequestsTotal - before; n != 1 {
		t.Errorf("request limit retried: %d requests", n)
	}
	r.clearFaults(t)
	// An expired session is renewed once, transparently.
	tokens := r.sb.Stats().ByEndpoint["token"]
	r.sb.ExpireTokens()
	if res := up("after-expiry"); res.Err != nil {
		t.Errorf("expired session: %v", res.Err)
	}
	if n := r.sb.Stats().ByEndpoint["token"] - tokens; n != 1 {
		t.Errorf("%d token requests after expiry, want 1", n)
	}
	// A write applied but unanswered is retried; the upsert makes the retry harmless.
	r.fault(t, `{"drop_after_commit_ratio":0.5}`)
	for i := range 20 {
		if res := up(fmt.Sprint("drop-", i)); res.Err != nil && KindOf(res.Err) != Transient {
			t.Errorf("drop after commit: %v", res.Err)
		}
	}
	r.clearFaults(t)
	n := 0
	for _, a := range r.sb.Records("Account") {
		if strings.HasPrefix(a["EHR_Patient_Key__c"].(string), "drop-") {
			n++
		}
	}
	if n != 20 {
		t.Errorf("%d of 20 records after dropped answers (a retry made a duplicate or lost one)", n)
	}
}

func TestBudgetGovernor(t *testing.T) {
	r := newRig(t, sandbox.Options{DailyLimit: 20})
	c := r.client(t, func(cfg *Config) { cfg.BudgetReserve = 0.5 })
	ctx := context.Background()
	if err := c.RefreshUsage(ctx); err != nil {
		t.Fatal(err)
	}
	var last error
	calls := 0
	for i := range 30 {
		res, _ := c.Upsert(ctx, "Account", "EHR_Patient_Key__c", []map[string]any{patient(fmt.Sprint(i), "Doe")})
		if last = res[0].Err; last != nil {
			break
		}
		calls++
	}
	e, ok := last.(*Error)
	if !ok || e.Kind != Throttled || e.Code != "BUDGET_RESERVED" {
		t.Fatalf("after %d calls: %v", calls, last)
	}
	if used, max := c.Usage(); max != 20 || used < 10 || used > 11 {
		t.Errorf("usage %d/%d when the governor stopped", used, max)
	}
}

// Keys, names and URLs stay out of the client's logs.
func TestNoPatientDataInLogs(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	c := r.client(t, nil)
	ctx := context.Background()
	r.fault(t, `{"status":503,"count":2}`)
	res, _ := c.Upsert(ctx, "Account", "EHR_Patient_Key__c", []map[string]any{patient("MRN-CANARY-4711", "Canarysson")})
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	_, _ = c.FindID(ctx, "Account", "EHR_Patient_Key__c", "MRN-CANARY-4711")
	logs := r.logs.String()
	if !strings.Contains(logs, "salesforce request retried") {
		t.Errorf("retries not logged:\n%s", logs)
	}
	for _, phi := range []string{"CANARY", "Canarysson", "/services/", "sobjects"} {
		if strings.Contains(logs, phi) {
			t.Errorf("log contains %q:\n%s", phi, logs)
		}
	}
	if e := (&Error{Kind: Permanent, Code: "INVALID_FIELD", Message: "Foreign key external ID: MRN-CANARY not found"}); strings.Contains(e.Error(), "CANARY") {
		t.Errorf("Error() carries the CRM's message: %s", e.Error())
	}
}

// UpsertGroups packs collection requests into Composite calls: one API
// request for up to 5 collections, in order, so that a later group can
// reference an earlier one's records.
func TestUpsertGroupsComposite(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	c := r.client(t, nil)
	var accounts, encounters []map[string]any
	for i := range 5200 {
		key := fmt.Sprintf("P%05d", i)
		accounts = append(accounts, patient(key, "L"))
		if i < 10 {
			encounters = append(encounters, map[string]any{"EHR_Encounter_Key__c": "V" + key, "Status": "Planned", "Category": "Ambulatory",
				"Patient": map[string]any{"attributes": map[string]string{"type": "Account"}, "EHR_Patient_Key__c": key}})
		}
	}
	encounters = append(encounters, map[string]any{"EHR_Encounter_Key__c": "Vdangling", "Status": "Planned", "Category": "Ambulatory",
		"Patient": map[string]any{"attributes": map[string]string{"type": "Account"}, "EHR_Patient_Key__c": "nobody"}})
	if err := c.RefreshUsage(context.Background()); err != nil { // the token
		t.Fatal(err)
	}
	before := r.sb.Stats().RequestsTotal
	res, err := c.UpsertGroups(context.Background(), []UpsertGroup{
		{Object: "Account", KeyField: "EHR_Patient_Key__c", Records: accounts},
		{Object: "ClinicalEncounter", KeyField: "EHR_Encounter_Key__c", Records: encounters},
	})
	if err != nil {
		t.Fatal(err)
	}
	// 5,200 accounts are 26 collections, plus one for the encounters: 27
	// subrequests, six Composite calls of at most 5 collections.
	if n := r.sb.Stats().RequestsTotal - before; n != 6 {
		t.Errorf("%d API requests, want 6", n)
	}
	for i, x := range res[0] {
		if x.Err != nil || x.ID == "" {
			t.Fatalf("account %d: %+v", i, x)
		}
	}
	for i, x := range res[1][:10] {
		if x.Err != nil {
			t.Errorf("encounter %d: %v", i, x.Err)
		}
	}
	if e, ok := res[1][10].Err.(*Error); !ok || e.Kind != Permanent || e.Code != "INVALID_FIELD" {
		t.Errorf("dangling reference: %v", res[1][10].Err)
	}
	if n := len(r.sb.Records("Account")); n != 5200 {
		t.Errorf("%d accounts", n)
	}
}

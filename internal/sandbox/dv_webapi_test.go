package sandbox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/ehrbridge/ehrbridge/internal/interop"
	"github.com/ehrbridge/ehrbridge/internal/testcerts"
)

// dvRig is a sandbox serving its Dataverse side over TLS.
type dvRig struct {
	s      *Server
	base   string // https://127.0.0.1:port
	client *http.Client
	caFile string
	token  string
}

func newDVRig(t *testing.T, opts Options) *dvRig {
	t.Helper()
	dir := t.TempDir()
	cert, certPEM, err := LoadOrCreateCert(filepath.Join(dir, "sandbox.pem"), filepath.Join(dir, "sandbox-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.ListenTLS("127.0.0.1:0", cert)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	r := &dvRig{s: s, base: "https://" + addr.String(), caFile: filepath.Join(dir, "sandbox.pem"),
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}}
	r.token = r.secretToken(t)
	return r
}

// secretToken gets a token by the client credentials grant with a secret.
func (r *dvRig) secretToken(t *testing.T) string {
	t.Helper()
	o := r.s.opts
	resp, err := r.client.PostForm(r.base+"/"+o.TenantID+"/oauth2/v2.0/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {o.DataverseClientID}, "client_secret": {o.DataverseSecret}, "scope": {r.base + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil || out.AccessToken == "" {
		t.Fatalf("token: %d", resp.StatusCode)
	}
	return out.AccessToken
}

// do sends a Web API request and returns status, headers and JSON body.
func (r *dvRig) do(t *testing.T, method, path, body string, hdr ...string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, r.base+"/api/data/v9.2/"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return resp.StatusCode, resp.Header, m
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// The Web API as the Dynamics connector uses it: create, get, upsert by
// alternate key with If-Match / If-None-Match, lookups by @odata.bind,
// queries with $filter, $orderby, $top and paging, delete, Dataverse's
// error bodies, and the token check.
func TestDataverseWebAPI(t *testing.T) {
	r := newDVRig(t, Options{})
	st, h, _ := r.do(t, "POST", "contacts", `{"firstname":"Jane","lastname":"Doe","msemr_medicalrecordnumber":"GH|1"}`)
	entity := h.Get("OData-EntityId")
	if st != 204 || !strings.HasPrefix(entity, r.base+"/api/data/v9.2/contacts(") {
		t.Fatalf("create: %d %q", st, entity)
	}
	id := entity[strings.IndexByte(entity, '(')+1 : len(entity)-1]
	if !isGUID(id) {
		t.Fatalf("id %q", id)
	}
	st, _, m := r.do(t, "GET", "contacts("+id+")?$select=lastname", "")
	if st != 200 || m["lastname"] != "Doe" || m["contactid"] != id || m["firstname"] != nil || m["@odata.etag"] == nil {
		t.Errorf("get: %d %v", st, m)
	}
	// Upsert by alternate key: update, then create; a value with a quote
	// sent raw, as dynamics-web-api sends it.
	if st, h, _ := r.do(t, "PATCH", "contacts(msemr_medicalrecordnumber='GH|1')", `{"lastname":"Doe2"}`); st != 204 || !strings.Contains(h.Get("OData-EntityId"), id) {
		t.Errorf("upsert existing: %d %v", st, h)
	}
	if st, _, _ := r.do(t, "PATCH", "contacts(msemr_medicalrecordnumber='O''Brien-A')", `{"lastname":"OBrien"}`); st != 204 {
		t.Errorf("upsert new: %d", st)
	}
	if rows := r.s.DataverseRecords("contact"); len(rows) != 2 || rows[1]["msemr_medicalrecordnumber"] != "O'Brien-A" || rows[0]["lastname"] != "Doe2" {
		t.Errorf("rows %v", rows)
	}
	if st, _, m := r.do(t, "PATCH", "contacts(msemr_medicalrecordnumber='GH|1')", `{"lastname":"X"}`, "If-None-Match", "*"); st != 412 || errCode(m) != dvDuplicate {
		t.Errorf("create-only on existing: %d %v", st, m)
	}
	if st, _, m := r.do(t, "PATCH", "contacts(msemr_medicalrecordnumber='NOPE')", `{"lastname":"X"}`, "If-Match", "*"); st != 404 || errCode(m) != dvNotFound {
		t.Errorf("update-only on missing: %d %v", st, m)
	}
	// The key is learned: a create repeating it is a duplicate.
	if st, _, m := r.do(t, "POST", "contacts", `{"lastname":"Dup","msemr_medicalrecordnumber":"gh|1"}`); st != 412 || errCode(m) != dvDuplicate {
		t.Errorf("duplicate create: %d %v", st, m)
	}
	// Lookups by id and by alternate key; a missing target is an error.
	if st, _, m := r.do(t, "PATCH", "msemr_encounters(msemr_encounteridentifier='GH|V1')",
		`{"msemr_name":"V1","msemr_EncounterPatientIdentifier@odata.bind":"/contacts(msemr_medicalrecordnumber='GH|1')","statuscode":1}`); st != 204 {
		t.Fatalf("encounter: %d %v", st, m)
	}
	if st, _, _ := r.do(t, "PATCH", "msemr_encounters(msemr_encounteridentifier='GH|V2')",
		`{"msemr_name":"V2","msemr_EncounterPatientIdentifier@odata.bind":"contacts(`+id+`)","statuscode":2}`); st != 204 {
		t.Fatalf("encounter by id: %d", st)
	}
	if st, _, m := r.do(t, "PATCH", "msemr_encounters(msemr_encounteridentifier='GH|V3')",
		`{"msemr_EncounterPatientIdentifier@odata.bind":"/contacts(msemr_medicalrecordnumber='missing')"}`); st != 404 || errCode(m) != dvNotFound {
		t.Errorf("bind to a missing row: %d %v", st, m)
	}
	// Queries: $filter on the lookup, $orderby, $top, paging.
	st, _, m = r.do(t, "GET", "msemr_encounters?$select=msemr_name&$filter="+url.QueryEscape("_msemr_encounterpatientidentifier_value eq "+id+" and statuscode gt 0")+"&$orderby=msemr_name%20desc", "")
	if vals, _ := m["value"].([]any); st != 200 || len(vals) != 2 || vals[0].(map[string]any)["msemr_name"] != "V2" {
		t.Errorf("filtered query: %d %v", st, m)
	}
	for i := 0; i < 5; i++ {
		r.do(t, "POST", "contacts", fmt.Sprintf(`{"lastname":"P%d"}`, i))
	}
	var names []string
	next := "contacts?$select=lastname&$filter=" + url.QueryEscape("(lastname ne 'zzz' or lastname eq null) and not (lastname eq 'nobody')") + "&$orderby=lastname"
	pages := 0
	for next != "" {
		st, h, m := r.do(t, "GET", next, "", "Prefer", "odata.maxpagesize=3")
		if st != 200 || h.Get("Preference-Applied") != "odata.maxpagesize=3" {
			t.Fatalf("page: %d %v", st, m)
		}
		for _, v := range m["value"].([]any) {
			names = append(names, v.(map[string]any)["lastname"].(string))
		}
		next, _ = m["@odata.nextLink"].(string)
		next = strings.TrimPrefix(next, r.base+"/api/data/v9.2/")
		pages++
	}
	if pages != 3 || strings.Join(names, ",") != "Doe2,OBrien,P0,P1,P2,P3,P4" {
		t.Errorf("%d pages: %v", pages, names)
	}
	if st, _, m := r.do(t, "GET", "contacts?$top=2&$filter=lastname%20eq%20'P3'", ""); st != 200 || len(m["value"].([]any)) != 1 {
		t.Errorf("$top/$filter: %d %v", st, m)
	}
	if st, _, m := r.do(t, "GET", "contacts?$filter=lastname%20eqq%201", ""); st != 400 || errCode(m) != dvBadRequest {
		t.Errorf("bad filter: %d %v", st, m)
	}
	// Delete, then 404; no token, 401.
	if st, _, _ := r.do(t, "DELETE", "contacts("+id+")", ""); st != 204 {
		t.Errorf("delete: %d", st)
	}
	if st, _, m := r.do(t, "GET", "contacts("+id+")", ""); st != 404 || errCode(m) != dvNotFound {
		t.Errorf("get deleted: %d %v", st, m)
	}
	r.token = "bogus"
	if st, _, m := r.do(t, "GET", "contacts", ""); st != 401 || errCode(m) != dvUnauthorized {
		t.Errorf("bad token: %d %v", st, m)
	}
	// The inspection endpoint takes the logical or the entity set name.
	for _, name := range []string{"contact", "contacts"} {
		resp, err := r.client.Get(r.base + "/sandbox/v1/objects/" + name)
		if err != nil {
			t.Fatal(err)
		}
		var rows []map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&rows)
		resp.Body.Close()
		if len(rows) != 6 {
			t.Errorf("/sandbox/v1/objects/%s: %d rows", name, len(rows))
		}
	}
}

// A change set is atomic and may refer to its own results by Content-ID;
// a batch stops at the first failure unless asked to continue on error.
func TestDataverseBatch(t *testing.T) {
	r := newDVRig(t, Options{})
	batch := func(prefer string, parts ...string) (int, string) {
		t.Helper()
		body := strings.Join(parts, "") + "--batch_x--\r\n"
		req, _ := http.NewRequest("POST", r.base+"/api/data/v9.2/$batch", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+r.token)
		req.Header.Set("Content-Type", "multipart/mixed; boundary=batch_x")
		if prefer != "" {
			req.Header.Set("Prefer", prefer)
		}
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	req := func(cid, method, path, body string) string {
		h := "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
		if cid != "" {
			h += "Content-ID: " + cid + "\r\n"
		}
		return h + "\r\n" + method + " " + path + " HTTP/1.1\r\nContent-Type: application/json\r\n\r\n" + body + "\r\n"
	}
	changeset := func(parts ...string) string {
		s := "--batch_x\r\nContent-Type: multipart/mixed; boundary=cs_y\r\n\r\n"
		for _, p := range parts {
			s += "--cs_y\r\n" + p
		}
		return s + "--cs_y--\r\n"
	}
	// Content-ID: the encounter binds to the contact created before it.
	st, body := batch("", changeset(
		req("1", "POST", r.base+"/api/data/v9.2/contacts", `{"lastname":"Batch","msemr_medicalrecordnumber":"B|1"}`),
		req("2", "PATCH", "/api/data/v9.2/msemr_encounters(msemr_encounteridentifier='B|V1')", `{"msemr_EncounterPatientIdentifier@odata.bind":"$1"}`)),
		"--batch_x\r\n"+req("", "GET", r.base+"/api/data/v9.2/contacts?$select=lastname", ""))
	if st != 200 || !strings.HasPrefix(body, "--batchresponse_") || strings.Count(body, "HTTP/1.1 204 No Content") != 2 || !strings.Contains(body, "HTTP/1.1 200 OK") {
		t.Fatalf("batch: %d\n%s", st, body)
	}
	contacts, encs := r.s.DataverseRecords("contact"), r.s.DataverseRecords("msemr_encounter")
	if len(contacts) != 1 || len(encs) != 1 || encs[0]["_msemr_encounterpatientidentifier_value"] != contacts[0]["contactid"] {
		t.Fatalf("contacts %v encounters %v", contacts, encs)
	}
	// Atomic: the second part fails, the first is undone; the batch stops.
	st, body = batch("", changeset(
		req("1", "POST", "/api/data/v9.2/contacts", `{"lastname":"Undone"}`),
		req("2", "POST", "/api/data/v9.2/msemr_encounters", `{"msemr_EncounterPatientIdentifier@odata.bind":"/contacts(msemr_medicalrecordnumber='missing')"}`)),
		"--batch_x\r\n"+req("", "POST", "/api/data/v9.2/contacts", `{"lastname":"After"}`))
	if st != 200 || strings.Count(body, "HTTP/1.1 ") != 1 || !strings.Contains(body, "HTTP/1.1 404") || !strings.Contains(body, dvNotFound) {
		t.Errorf("failed change set: %d\n%s", st, body)
	}
	for _, c := range r.s.DataverseRecords("contact") {
		if c["lastname"] == "Undone" || c["lastname"] == "After" {
			t.Errorf("row %v survived a failed change set or ran after it", c)
		}
	}
	// Continue on error: independent requests, one bad one fails alone.
	st, body = batch("odata.continue-on-error",
		"--batch_x\r\n"+req("", "PATCH", "/api/data/v9.2/contacts(msemr_medicalrecordnumber='C|1')", `{"lastname":"C1"}`),
		"--batch_x\r\n"+req("", "POST", "/api/data/v9.2/contacts", `{"lastname":"Dup","msemr_medicalrecordnumber":"c|1"}`),
		"--batch_x\r\n"+req("", "PATCH", "/api/data/v9.2/contacts(msemr_medicalrecordnumber='C|2')", `{"lastname":"C2"}`))
	if st != 200 || strings.Count(body, "HTTP/1.1 204") != 2 || strings.Count(body, "HTTP/1.1 412") != 1 {
		t.Errorf("continue on error: %d\n%s", st, body)
	}
}

// Service protection limits and injected faults come back as Dataverse
// sends them: 429 with Retry-After.
func TestDataverseLimits(t *testing.T) {
	r := newDVRig(t, Options{DataverseRequestLimit: 3})
	for i := 0; i < 3; i++ {
		if st, _, _ := r.do(t, "GET", "contacts", ""); st != 200 {
			t.Fatalf("request %d: %d", i, st)
		}
	}
	st, h, m := r.do(t, "GET", "contacts", "")
	if st != 429 || errCode(m) != dvTooMany || h.Get("Retry-After") == "" {
		t.Errorf("over the limit: %d %v %v", st, h, m)
	}

	r = newDVRig(t, Options{})
	fault := func(method, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, r.base+"/sandbox/v1/faults", strings.NewReader(body))
		resp, err := r.client.Do(req)
		if err != nil || resp.StatusCode != 204 {
			t.Fatalf("fault %s %s: %v", method, body, err)
		}
		resp.Body.Close()
	}
	fault("POST", `{"request_limit_exceeded":true,"seconds":2}`)
	st, h, m = r.do(t, "GET", "contacts", "")
	if st != 429 || h.Get("Retry-After") == "" || errCode(m) != dvTooMany {
		t.Errorf("injected limit: %d %v %v", st, h, m)
	}
	fault("DELETE", "")
	fault("POST", `{"status":503,"count":1}`)
	if st, _, m := r.do(t, "GET", "contacts", ""); st != 503 || errCode(m) == "" {
		t.Errorf("injected 503: %d %v", st, m)
	}
}

// The real azidentity client (v1.13.1) gets tokens from the sandbox's
// identity endpoints with a client secret and with a certificate, and a
// wrong secret is refused as the identity platform refuses it.
func TestAzidentity(t *testing.T) {
	key, certPEM := testcerts.RSASigning(t)
	block, _ := pem.Decode(certPEM)
	appCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	r := newDVRig(t, Options{TenantID: "contoso.onmicrosoft.com", DataverseClientID: "11111111-2222-3333-4444-555555555555", DataverseCert: appCert})
	opts := azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: r.base + "/"}, Transport: r.client,
		Retry: policy.RetryOptions{MaxRetries: -1}}
	scope := policy.TokenRequestOptions{Scopes: []string{r.base + "/.default"}}
	secret, err := azidentity.NewClientSecretCredential("contoso.onmicrosoft.com", "11111111-2222-3333-4444-555555555555", "sandbox-secret",
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok, err := secret.GetToken(ctx, scope)
	if err != nil {
		t.Fatalf("secret: %v", err)
	}
	r.token = tok.Token
	if st, _, _ := r.do(t, "GET", "WhoAmI", ""); st != 200 {
		t.Errorf("WhoAmI with the secret's token: %d", st)
	}
	certCred, err := azidentity.NewClientCertificateCredential("contoso.onmicrosoft.com", "11111111-2222-3333-4444-555555555555",
		[]*x509.Certificate{appCert}, key, &azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err = certCred.GetToken(ctx, scope); err != nil {
		t.Fatalf("certificate: %v", err)
	}
	r.token = tok.Token
	if st, _, _ := r.do(t, "GET", "WhoAmI", ""); st != 200 {
		t.Errorf("WhoAmI with the certificate's token: %d", st)
	}
	bad, _ := azidentity.NewClientSecretCredential("contoso.onmicrosoft.com", "11111111-2222-3333-4444-555555555555", "wrong",
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if _, err := bad.GetToken(ctx, scope); err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("wrong secret: %v", err)
	}
	// A certificate the app does not have is refused.
	otherKey, otherPEM := testcerts.RSASigning(t)
	block, _ = pem.Decode(otherPEM)
	other, _ := x509.ParseCertificate(block.Bytes)
	wrongCert, _ := azidentity.NewClientCertificateCredential("contoso.onmicrosoft.com", "11111111-2222-3333-4444-555555555555",
		[]*x509.Certificate{other}, otherKey, &azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if _, err := wrongCert.GetToken(ctx, scope); err == nil || !strings.Contains(err.Error(), "AADSTS700027") {
		t.Errorf("wrong certificate: %v", err)
	}
}

// The real dynamics-web-api client (2.5.0) against the sandbox: create,
// create with representation, upsert by alternate key with If-Match /
// If-None-Match and a quoted value, paged retrieve, $batch with and without
// a change set, delete.
func TestDynamicsWebAPIClient(t *testing.T) {
	dir := interop.NodeDir(t)
	r := newDVRig(t, Options{})
	stdout, stderr, code := interop.RunEnv(t, dir, 60*time.Second, []string{"NODE_EXTRA_CA_CERTS=" + r.caFile},
		"node", "dwa_probe.mjs", r.base, r.token)
	if code != 0 {
		t.Fatalf("dwa probe: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var res map[string]map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &res); err != nil {
		t.Fatalf("not JSON: %q", stdout)
	}
	val := func(step string) any {
		st, ok := res[step]
		if !ok {
			t.Errorf("step %s missing", step)
			return nil
		}
		if e, isErr := st["error"]; isErr {
			t.Errorf("step %s failed: %v", step, e)
			return nil
		}
		return st["value"]
	}
	errOf := func(step string) map[string]any {
		e, _ := res[step]["error"].(map[string]any)
		if e == nil {
			t.Errorf("step %s: want an error, got %v", step, res[step])
		}
		return e
	}
	created, _ := val("a_create").(string)
	if !isGUID(created) {
		t.Errorf("create returned %v", created)
	}
	if rep, _ := val("b_create_return_representation").(map[string]any); rep["lastname"] != "Rep" || !isGUID(fmt.Sprint(rep["contactid"])) {
		t.Errorf("representation %v", rep)
	}
	if v := val("c_upsert_existing"); v != created {
		t.Errorf("upsert of the existing key returned %v, want %s", v, created)
	}
	if v, _ := val("d_upsert_new").(string); !isGUID(v) || v == created {
		t.Errorf("upsert of a new key returned %v", v)
	}
	if e := errOf("e_upsert_ifnonematch_exists"); e != nil && (e["status"] != 412.0 || e["code"] != dvDuplicate) {
		t.Errorf("If-None-Match on an existing key: %v", e)
	}
	if e := errOf("f_upsert_ifmatch_missing"); e != nil && (e["status"] != 404.0 || e["code"] != dvNotFound) {
		t.Errorf("If-Match on a missing key: %v", e)
	}
	val("g_upsert_quoted_key")
	if m, _ := val("h_retrieve_multiple").(map[string]any); m["count"] != 2.0 || m["hasNextLink"] != true {
		t.Errorf("first page %v", m)
	}
	if m, _ := val("h_retrieve_all").(map[string]any); m["count"] != 4.0 || fmt.Sprint(m["mrns"]) != "[MRN-001 MRN-NEW MRN-REP O'Brien]" {
		t.Errorf("all pages %v", m)
	}
	if m, _ := val("i_retrieve").(map[string]any); m["lastname"] != "Doe2" {
		t.Errorf("retrieve %v", m)
	}
	if b, _ := val("j_batch").([]any); len(b) != 3 || !isGUID(fmt.Sprint(b[0])) || !isGUID(fmt.Sprint(b[1])) {
		t.Errorf("batch %v", b)
	} else if g, _ := b[2].(map[string]any); g == nil || len(g["value"].([]any)) == 0 {
		t.Errorf("batch GET %v", b[2])
	}
	if b, _ := val("k_batch_no_changeset").([]any); len(b) != 2 || !isGUID(fmt.Sprint(b[0])) {
		t.Errorf("batch without change set %v", b)
	}
	if v := val("l_delete"); v != true {
		t.Errorf("delete %v", v)
	}
	if e := errOf("l_retrieve_deleted"); e != nil && e["status"] != 404.0 {
		t.Errorf("retrieve deleted %v", e)
	}
	if rows := r.s.DataverseRecords("contacts"); len(rows) < 6 {
		t.Errorf("%d contacts in the sandbox", len(rows))
	}
}

// The OData parsers of the Dataverse side never panic: a key predicate,
// $filter, $orderby and a $batch body from a client give a result or an
// error.
func FuzzOData(f *testing.F) {
	for _, s := range []string{
		"contacts(msemr_medicalrecordnumber='GH|1')", "contacts(new_mrn='O''Brien/A',new_facility='H')",
		"contacts(00005eed-5a4d-4b00-8000-000000000005)", "contacts(a=1,b=true,c=null)", "contacts('x", "contacts(a=)",
		"lastname eq 'x' and (statuscode gt 1 or not (createdon lt 2026-01-01T00:00:00Z))", "_x_value eq 00005eed-5a4d-4b00-8000-000000000005",
		"--b\r\nContent-Type: application/http\r\n\r\nPOST /api/data/v9.2/contacts HTTP/1.1\r\n\r\n{}\r\n--b--\r\n",
		"--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nPATCH $1 HTTP/1.1\r\n\r\n{}\r\n--c--\r\n--b--\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4096 {
			return
		}
		_, _, _ = splitEntityRef(s)
		if flt, err := parseFilter(s); err == nil {
			flt(Record{"lastname": "x", "statuscode": 2.0, "createdon": "2026-01-05T10:00:00Z"})
		}
		_, _ = parseOrderBy(s)
		_, _ = readBatch(strings.NewReader(s), "multipart/mixed; boundary=b")
	})
}

// The tables of dvschema.json answer as Dataverse does: @odata.bind names
// are the table's single-valued navigation properties, with the activity
// suffix on msemr_appointmentemr; other names, and columns the table does
// not have, are refused with Dataverse's error; new_ columns are a site's.
func TestDataverseSchema(t *testing.T) {
	r := newDVRig(t, Options{})
	if st, _, m := r.do(t, "POST", "contacts", `{"lastname":"Doe","msemr_medicalrecordnumber":"GH|1","new_mergedinto":"x"}`); st != 204 {
		t.Fatalf("contact: %d %v", st, m)
	}
	st, _, m := r.do(t, "PATCH", "msemr_appointmentemrs(new_ehrkey='GH|A1')",
		`{"subject":"Visit","msemr_appointmentstatus":935000002,"msemr_ActorPatient_msemr_appointmentemr@odata.bind":"/contacts(msemr_medicalrecordnumber='GH|1')"}`)
	if st != 204 {
		t.Fatalf("appointment with the suffixed navigation property: %d %v", st, m)
	}
	appts, contacts := r.s.DataverseRecords("msemr_appointmentemr"), r.s.DataverseRecords("contact")
	if len(appts) != 1 || appts[0]["_msemr_actorpatient_value"] != contacts[0]["contactid"] {
		t.Errorf("the lookup is stored by its column: %v", appts)
	}
	// Codes as "Troubleshoot Dataverse Web API client errors" (Microsoft
	// Learn) shows them, messages as the service words them (dv_schema.go).
	payload := "Error identified in Payload provided by the user for Entity :'msemr_appointmentemrs', For more information on this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ---->  InnerException : "
	undeclared := payload + "Microsoft.OData.ODataException: An undeclared property '%s' which only has property annotations in the payload but no property value was found in the payload."
	for _, c := range []struct{ body, code, msg string }{
		{`{"msemr_ActorPatient@odata.bind":"/contacts(msemr_medicalrecordnumber='GH|1')"}`, dvPayloadError, fmt.Sprintf(undeclared, "msemr_ActorPatient")},
		{`{"msemr_actorpatient_msemr_appointmentemr@odata.bind":"/contacts(msemr_medicalrecordnumber='GH|1')"}`, dvPayloadError,
			fmt.Sprintf(undeclared, "msemr_actorpatient_msemr_appointmentemr")},
		{`{"msemr_Status@odata.bind":"/bookingstatuses(new_ehrcode='booked')"}`, dvPayloadError, fmt.Sprintf(undeclared, "msemr_Status")},
		{`{"msemr_status":1}`, dvPayloadError, payload + "Microsoft.Crm.CrmException: Invalid property 'msemr_status' was found in entity 'Microsoft.Dynamics.CRM.msemr_appointmentemr'."},
	} {
		st, _, m := r.do(t, "PATCH", "msemr_appointmentemrs(new_ehrkey='GH|A2')", c.body)
		msg, _ := m["error"].(map[string]any)["message"].(string)
		if st != 400 || errCode(m) != c.code || !strings.HasPrefix(msg, c.msg) {
			t.Errorf("%s: %d %v", c.body, st, m)
		}
	}
	if n := len(r.s.DataverseRecords("msemr_appointmentemr")); n != 1 {
		t.Errorf("%d appointments after refused writes", n)
	}
	if st, _, m := r.do(t, "GET", "contacts?$select=lastname,nosuchcolumn", ""); st != 400 || errCode(m) != dvCodeZero ||
		!strings.Contains(fmt.Sprint(m), "Could not find a property named 'nosuchcolumn' on type 'Microsoft.Dynamics.CRM.contact'.") {
		t.Errorf("$select of an unknown column: %d %v", st, m)
	}
	// A table without a schema here (task) takes any column.
	if st, _, m := r.do(t, "POST", "tasks", `{"subject":"n","anything":1}`); st != 204 {
		t.Errorf("task: %d %v", st, m)
	}
}

// An alternate-key value holding / # < > * % & : \ ? + cannot address a row
// (Microsoft Learn, "Define alternate keys using Power Apps"), whether the
// client percent-encodes it or not: by URL and in @odata.bind, and no row
// is written.
func TestDataverseKeyCharacters(t *testing.T) {
	r := newDVRig(t, Options{})
	if st, _, m := r.do(t, "POST", "contacts", `{"lastname":"Doe","msemr_medicalrecordnumber":"urn:oid:1.2|M1"}`); st != 204 {
		t.Fatalf("a row may hold such a value: %d %v", st, m)
	}
	for _, c := range strings.Split(`/ # < > * % & : \ ? +`, " ") {
		for _, raw := range []bool{true, false} {
			v := "A" + c + "B"
			if !raw {
				v = url.PathEscape(v)
			} else if c == "#" || c == "?" || c == "%" {
				continue // not sendable raw in a URL path
			}
			for _, method := range []string{"GET", "PATCH", "DELETE"} {
				st, _, m := r.do(t, method, "contacts(msemr_medicalrecordnumber='"+v+"')", `{"lastname":"X"}`)
				if st != 400 || errCode(m) != dvBadRequest || strings.Contains(fmt.Sprint(m), "A"+c+"B") {
					t.Errorf("%s key %q: %d %v", method, v, st, m)
				}
			}
		}
		st, _, m := r.do(t, "POST", "msemr_encounters", `{"msemr_EncounterPatientIdentifier@odata.bind":"/contacts(msemr_medicalrecordnumber='A`+strings.ReplaceAll(c, `\`, `\\`)+`B')"}`)
		if st != 400 || errCode(m) != dvBadRequest {
			t.Errorf("bind by key with %q: %d %v", c, st, m)
		}
	}
	if st, _, _ := r.do(t, "GET", "contacts(msemr_medicalrecordnumber='urn~3Aoid~3A1.2|M1')", ""); st != 404 {
		t.Errorf("an escaped key is an ordinary value: %d", st)
	}
	if n, e := len(r.s.DataverseRecords("contact")), len(r.s.DataverseRecords("msemr_encounter")); n != 1 || e != 0 {
		t.Errorf("%d contacts, %d encounters after refused requests", n, e)
	}
}

// Service protection limits around $batch, as "Service protection API
// limits" (Microsoft Learn) documents them: a batch is one request against
// the number of requests, but each operation in it adds to the combined
// execution time, whose limit then refuses the next requests (429,
// 0x80072321, Retry-After); the batch that spends it runs whole.
func TestDataverseBatchLimits(t *testing.T) {
	batch := func(r *dvRig, n int) (int, string) {
		t.Helper()
		var parts string
		for i := 1; i <= n; i++ {
			parts += fmt.Sprintf("--batch_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nPOST /api/data/v9.2/contacts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"lastname\":\"B%d\"}\r\n", i)
		}
		req, _ := http.NewRequest("POST", r.base+"/api/data/v9.2/$batch", strings.NewReader(parts+"--batch_x--\r\n"))
		req.Header.Set("Authorization", "Bearer "+r.token)
		req.Header.Set("Content-Type", "multipart/mixed; boundary=batch_x")
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// Request limit 10, so 20 operations of execution time. A batch of 5
	// is one request: 8 more requests fit (9 of 10), where counting each
	// operation as a request would have refused the 5th.
	r := newDVRig(t, Options{DataverseRequestLimit: 10})
	if st, body := batch(r, 5); st != 200 || strings.Count(body, "HTTP/1.1 204") != 5 {
		t.Fatalf("batch: %d\n%s", st, body)
	}
	for i := 0; i < 8; i++ {
		if st, _, m := r.do(t, "GET", "contacts?$top=1", ""); st != 200 {
			t.Fatalf("request %d after the batch: %d %v", i, st, m)
		}
	}
	// A batch of 25 runs whole (no part is refused), and spends the
	// execution time: the next request is refused for it.
	r = newDVRig(t, Options{DataverseRequestLimit: 10})
	if st, body := batch(r, 25); st != 200 || strings.Count(body, "HTTP/1.1 204") != 25 {
		t.Fatalf("large batch: %d\n%s", st, body)
	}
	if n := len(r.s.DataverseRecords("contact")); n != 25 {
		t.Errorf("%d rows written", n)
	}
	st, h, m := r.do(t, "GET", "contacts?$top=1", "")
	msg, _ := m["error"].(map[string]any)["message"].(string)
	if st != 429 || errCode(m) != dvTooLong || h.Get("Retry-After") == "" ||
		!strings.HasPrefix(msg, "Combined execution time of incoming requests exceeded limit of 2,000 milliseconds over time window of 300 seconds.") {
		t.Errorf("after the execution time is spent: %d %v %v", st, h, m)
	}
	if st, body := batch(r, 1); st != 429 || !strings.Contains(body, dvTooLong) {
		t.Errorf("a batch after the execution time is spent: %d %s", st, body)
	}
}

// Dataverse answers about a key name the table, never the key's values:
// they are MRNs, and the connectors keep error messages with the record.
func TestDataverseAnswersNameNoKey(t *testing.T) {
	r := newDVRig(t, Options{})
	for _, c := range []struct{ method, path, body string }{
		{"PATCH", "contacts(msemr_medicalrecordnumber='MRN-SECRET-1')", `{"lastname":"X"}`}, // update-only, missing
		{"GET", "contacts(msemr_medicalrecordnumber='MRN-SECRET-1')", ""},
		{"GET", "contacts?$filter=msemr_medicalrecordnumber eq 'x' 'MRN-SECRET-1'", ""},
	} {
		st, _, m := r.do(t, c.method, strings.ReplaceAll(c.path, " ", "%20"), c.body, "If-Match", "*")
		if st < 400 || strings.Contains(fmt.Sprint(m), "SECRET") {
			t.Errorf("%s %s: %d %v", c.method, c.path, st, m)
		}
	}
}

// Paging as Dataverse pages: the paging cookie holds the last row of a
// page and the next page starts after it, each request evaluated as it
// comes, so a row updated between two page requests (it moves to the end
// of an order by modifiedon) does not push a row of the next page back
// into the page already read. The sandbox used to page by offset, and
// write-back's poll of notes by modifiedon lost an edit that way (make
// chaos, 1 note in 750, whenever more than a page had changed in the
// poll's window). $top is ignored with odata.maxpagesize.
func TestDataversePagingSkipsNothingWhileRowsChange(t *testing.T) {
	clock := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	tick := func() { mu.Lock(); clock = clock.Add(time.Second); mu.Unlock() }
	r := newDVRig(t, Options{Now: now})
	ids := map[string]string{}
	for i := range 6 {
		_, h, _ := r.do(t, "POST", "contacts", fmt.Sprintf(`{"lastname":"R%d"}`, i))
		loc := h.Get("OData-EntityId")
		ids[fmt.Sprintf("R%d", i)] = loc[strings.LastIndex(loc, "(")+1 : len(loc)-1]
		tick()
	}
	seen := map[string]bool{}
	next := "contacts?$select=lastname,modifiedon&$orderby=modifiedon"
	for pages := 0; next != ""; pages++ {
		st, _, m := r.do(t, "GET", next, "", "Prefer", "odata.maxpagesize=2")
		if st != 200 || pages > 6 {
			t.Fatalf("page %d: %d %v", pages, st, m)
		}
		for _, v := range m["value"].([]any) {
			seen[v.(map[string]any)["lastname"].(string)] = true
		}
		if pages == 0 {
			// R0, on the page just read, is updated: it moves to the end.
			if st, _, m := r.do(t, "PATCH", "contacts("+ids["R0"]+")", `{"firstname":"Changed"}`); st != 204 {
				t.Fatalf("update: %d %v", st, m)
			}
		}
		next, _ = m["@odata.nextLink"].(string)
		next = strings.TrimPrefix(next, r.base+"/api/data/v9.2/")
	}
	for i := range 6 {
		if name := fmt.Sprintf("R%d", i); !seen[name] {
			t.Errorf("%s was never returned (rows seen %v)", name, seen)
		}
	}
	st, _, m := r.do(t, "GET", "contacts?$select=lastname&$top=1", "", "Prefer", "odata.maxpagesize=4")
	if vals, _ := m["value"].([]any); st != 200 || len(vals) != 4 {
		t.Errorf("$top with odata.maxpagesize: %d, %d rows, want 4 ($top ignored)", st, len(vals))
	}
}

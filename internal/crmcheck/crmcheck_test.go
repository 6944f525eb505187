package crmcheck_test

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/crmcheck"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/internal/testcerts"
	"github.com/ehrbridge/ehrbridge/mappings"
)

func sfYAML(loginURL string, extra ...string) string {
	s := "  salesforce:\n    login_url: " + loginURL + "\n    client_id: sandbox-client\n"
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

func mustBlock(t *testing.T, r *crmcheck.Report, object, check string, wants ...string) crmcheck.Item {
	t.Helper()
	for _, it := range find(r, object, "", check) {
		if it.OK || !it.Blocker {
			continue
		}
		all := true
		for _, w := range wants {
			all = all && strings.Contains(it.Message, w)
		}
		if all {
			return it
		}
	}
	var b strings.Builder
	r.WriteText(&b)
	t.Fatalf("no blocker %s/%s saying %q in:\n%s", object, check, wants, b.String())
	return crmcheck.Item{}
}

// A JWT addressed to login.salesforce.com (the default) is refused by a
// sandbox org; crm check names the key to set and the value.
func TestSalesforceLoginWrongAudienceExplained(t *testing.T) {
	key, certPEM := testcerts.RSASigning(t)
	pub, err := sandbox.ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	rg := newRig(t, sandbox.Options{JWTKey: pub, SandboxOrg: true}, false)
	dir := t.TempDir()
	keyFile := writeFile(t, dir, "jwt.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	jwt := []string{"jwt_username: integration@sandbox.example", "jwt_key_file: " + keyFile}

	r := run(t, loadConfig(t, dir, sfYAML(rg.srv.URL, jwt...)))
	it := mustBlock(t, r, crmcheck.GroupConnection, crmcheck.CheckLogin, "audience is invalid", "set crm.salesforce.audience to https://test.salesforce.com")
	if r.OK || len(r.Checks) != 1 {
		t.Errorf("a failed login must stop the check with one blocker: %+v", r)
	}
	t.Log(it.Line())
	// The same config with the audience the message names signs in.
	r = run(t, loadConfig(t, t.TempDir(), sfYAML(rg.srv.URL, append(jwt, "audience: https://test.salesforce.com")...)))
	if got := find(r, crmcheck.GroupConnection, "", crmcheck.CheckLogin); len(got) != 1 || !got[0].OK {
		t.Errorf("test.salesforce.com audience: %+v", got)
	}

	// The other JWT failures, each with its key.
	otherKey, _ := testcerts.RSASigning(t)
	otherKeyFile := writeFile(t, dir, "other.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(otherKey)}))
	aud := "audience: https://test.salesforce.com"
	for name, c := range map[string]struct {
		crm  string
		want string
	}{
		"key the app does not know": {sfYAML(rg.srv.URL, "jwt_username: integration@sandbox.example", "jwt_key_file: "+otherKeyFile, aud), "crm.salesforce.jwt_key_file"},
		"user not pre-authorized":   {sfYAML(rg.srv.URL, "jwt_username: nobody@sandbox.example", "jwt_key_file: "+keyFile, aud), "pre-authorized"},
		"unknown consumer key":      {strings.Replace(sfYAML(rg.srv.URL, append(jwt, aud)...), "client_id: sandbox-client", "client_id: other-app", 1), "crm.salesforce.client_id"},
	} {
		r := run(t, loadConfig(t, t.TempDir(), c.crm))
		if got := find(r, crmcheck.GroupConnection, "", crmcheck.CheckLogin); len(got) != 1 || got[0].OK || !strings.Contains(got[0].Message, c.want) {
			t.Errorf("%s: %+v, want a blocker naming %s", name, got, c.want)
		}
	}
}

func TestSalesforceLoginBadSecretExplained(t *testing.T) {
	rg := newRig(t, sandbox.Options{}, false)
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", []byte("not-the-secret"))
	r := run(t, loadConfig(t, dir, sfYAML(rg.srv.URL, "client_secret_file: "+secret)))
	mustBlock(t, r, crmcheck.GroupConnection, crmcheck.CheckLogin, "invalid_client", "crm.salesforce.client_secret does not match")
	if strings.Contains(fmt.Sprint(r), "not-the-secret") {
		t.Error("the secret is in the report")
	}
}

func TestSalesforceUnreachableSaysWhich(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", []byte("sandbox-secret"))
	r := run(t, loadConfig(t, dir, sfYAML("http://"+addr, "client_secret_file: "+secret)))
	mustBlock(t, r, crmcheck.GroupConnection, crmcheck.CheckLogin, "refused the connection", "crm.salesforce.login_url")
}

func dvYAML(t *testing.T, rg *rig, dir, secret string, extra ...string) string {
	t.Helper()
	ca := writeFile(t, dir, "ca.pem", rg.certPEM())
	sec := writeFile(t, dir, "dv-secret", []byte(secret))
	s := "  dynamics:\n    url: " + rg.srv.URL + "\n    tenant_id: sandbox-tenant\n    client_id: sandbox-client\n" +
		"    client_secret_file: " + sec + "\n    authority_host: " + rg.srv.URL + "\n    ca_file: " + ca + "\n"
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

// Entra ID's answers to a wrong secret, client id or tenant (the
// sandbox's identity side answers with the same AADSTS codes) name the
// config key to change.
func TestDataverseLoginFailuresExplained(t *testing.T) {
	rg := newRig(t, sandbox.Options{}, true)
	for _, c := range []struct {
		name, secret, from, to string
		wants                  []string
	}{
		{"bad secret", "wrong-secret", "", "", []string{"AADSTS7000215", "crm.dynamics.client_secret"}},
		{"unknown app", "sandbox-secret", "client_id: sandbox-client", "client_id: someone-else", []string{"AADSTS700016", "crm.dynamics.client_id"}},
		{"unknown tenant", "sandbox-secret", "tenant_id: sandbox-tenant", "tenant_id: other-tenant", []string{"AADSTS90002", "crm.dynamics.tenant_id"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			crm := dvYAML(t, rg, dir, c.secret)
			if c.from != "" {
				crm = strings.Replace(crm, c.from, c.to, 1)
			}
			r := run(t, loadConfig(t, dir, crm))
			mustBlock(t, r, crmcheck.GroupConnection, crmcheck.CheckLogin, c.wants...)
			if strings.Contains(fmt.Sprint(r), c.secret) {
				t.Error("the secret is in the report")
			}
		})
	}
}

// An app registration that gets a token but has no application user in
// the environment: Dataverse answers 401 "The user is not a member of the
// organization." (0x80072560); crm check says how to create one. The
// sandbox has no such mode, so that one answer is injected.
func TestDataverseNoApplicationUserExplained(t *testing.T) {
	rg := newRigWrapped(t, sandbox.Options{}, true, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/WhoAmI") {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"error":{"code":"0x80072560","message":"The user is not a member of the organization."}}`))
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	dir := t.TempDir()
	r := run(t, loadConfig(t, dir, dvYAML(t, rg, dir, "sandbox-secret")))
	mustBlock(t, r, crmcheck.GroupConnection, crmcheck.CheckLogin, "0x80072560", "Application users", "security role")
}

func TestDataverseLoginTLSFailureSaysWhich(t *testing.T) {
	rg := newRig(t, sandbox.Options{}, true)
	dir := t.TempDir()
	crm := strings.Replace(dvYAML(t, rg, dir, "sandbox-secret"), "    ca_file: "+filepath.Join(dir, "ca.pem")+"\n", "", 1)
	r := run(t, loadConfig(t, dir, crm))
	mustBlock(t, r, crmcheck.GroupConnection, crmcheck.CheckLogin, "TLS failure", "not signed by a trusted CA", "crm.dynamics.ca_file")
}

// A deliberately broken copy of the Health Cloud set: each problem is a
// blocker at the line and column of the mapping text that causes it, and
// the whole check fails.
func TestBrokenSalesforceSetNamesEachProblem(t *testing.T) {
	rg := newRig(t, sandbox.Options{}, false)
	set := copySet(t, "healthcloud")
	oru := filepath.Join(set, "40_oru_observations.yaml")
	siu := filepath.Join(set, "50_siu_appointment.yaml")
	edit(t, oru, "      BaselineValueText: truncate(OBX-7, 255)", "      BaselineValueTxt: truncate(OBX-7, 255)")
	edit(t, oru, "    key_field: EHR_Observation_Key__c", "    key_field: Category")
	edit(t, siu, "    object: ServiceAppointment", "    object: ServiceAppointmnt")
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", []byte("sandbox-secret"))
	r := run(t, loadConfig(t, dir, sfYAML(rg.srv.URL, "client_secret_file: "+secret), set))
	if r.OK || r.Blockers < 3 {
		t.Fatalf("broken set: ok=%v blockers=%d", r.OK, r.Blockers)
	}
	at := func(file, s string, skip int) string {
		l, c := posOf(t, file, s)
		return fmt.Sprintf("%s:%d:%d", file, l, c+skip)
	}
	for _, want := range []struct {
		object, field, check, pos, says string
	}{
		{"CareObservation", "BaselineValueTxt", "", at(oru, "BaselineValueTxt", 0), "BaselineValueTxt"},
		{"CareObservation", "Category", "", at(oru, "key_field: Category", len("key_field: ")), "not an External ID"},
		{"ServiceAppointmnt", "", crmcheck.CheckObject, at(siu, "object: ServiceAppointmnt", len("object: ")), "does not exist"},
	} {
		found := false
		for _, it := range find(r, want.object, want.field, want.check) {
			if !it.OK && it.Blocker && it.Pos == want.pos && strings.Contains(it.Message, want.says) {
				found = true
			}
		}
		if !found {
			var b strings.Builder
			r.WriteText(&b)
			t.Errorf("no blocker %s.%s at %s saying %q in:\n%s", want.object, want.field, want.pos, want.says, b.String())
		}
	}
	// Fields the set writes that the org has pass, one line each.
	if ok := find(r, "CareObservation", "NumericValue", ""); len(ok) == 0 || !ok[0].OK {
		t.Errorf("CareObservation.NumericValue: %+v", ok)
	}
}

// A Dataverse set broken the ways Dataverse refuses: an activity table's
// navigation property without its table suffix, an option value the set
// does not have, a subject longer than its column, an unknown column.
// crm check names each, at the line to change.
func TestBrokenDataverseSetNamesEachProblem(t *testing.T) {
	rg := newRig(t, sandbox.Options{}, true)
	set := copySet(t, "dynamics")
	siu := filepath.Join(set, "siu.yaml")
	adt := filepath.Join(set, "adt.yaml")
	edit(t, siu, "      msemr_ActorPatient_msemr_appointmentemr: ref(patient)", "      msemr_ActorPatient: ref(patient)")
	edit(t, siu, `    S15: "935000005"`, `    S15: "935000099"`)
	edit(t, siu, `"Appointment"), 200)`, `"Appointment"), 250)`)
	edit(t, adt, "      lastname: required(PID-5.1", "      lastnam: required(PID-5.1")
	dir := t.TempDir()
	r := run(t, loadConfig(t, dir, dvYAML(t, rg, dir, "sandbox-secret"), set))
	if r.OK || r.Blockers < 4 {
		t.Fatalf("broken set: ok=%v blockers=%d", r.OK, r.Blockers)
	}
	at := func(file, s string) string {
		l, c := posOf(t, file, s)
		return fmt.Sprintf("%s:%d:%d", file, l, c)
	}
	for _, want := range []struct {
		object, field, check, pos, says string
	}{
		{"msemr_appointmentemr", "msemr_ActorPatient", mappings.CheckNavigation, at(siu, "msemr_ActorPatient: ref"), "msemr_ActorPatient_msemr_appointmentemr"},
		{"msemr_appointmentemr", "msemr_appointmentstatus", mappings.CheckValue, at(siu, "msemr_appointmentstatus: number"), `"935000099"`},
		{"msemr_appointmentemr", "subject", mappings.CheckLength, at(siu, "subject: truncate"), "holds 200 characters but truncate() keeps 250"},
		{"contact", "lastnam", mappings.CheckField, at(adt, "lastnam: required"), "has no field lastnam"},
	} {
		found := false
		for _, it := range find(r, want.object, want.field, want.check) {
			if !it.OK && it.Blocker && it.Pos == want.pos && strings.Contains(it.Message, want.says) {
				found = true
			}
		}
		if !found {
			var b strings.Builder
			r.WriteText(&b)
			t.Errorf("no blocker %s.%s %s at %s saying %q in:\n%s", want.object, want.field, want.check, want.pos, want.says, b.String())
		}
	}
}

// checkShipped runs crm check on a copy of the shipped set of flavor
// ("salesforce": healthcloud, "dataverse": dynamics) against a sandbox.
func checkShipped(t *testing.T, flavor string) (*rig, *crmcheck.Report) {
	t.Helper()
	rg := newRig(t, sandbox.Options{}, flavor == "dataverse")
	dir := t.TempDir()
	if flavor == "salesforce" {
		secret := writeFile(t, dir, "secret", []byte("sandbox-secret"))
		return rg, run(t, loadConfig(t, dir, sfYAML(rg.srv.URL, "client_secret_file: "+secret), copySet(t, "healthcloud")))
	}
	return rg, run(t, loadConfig(t, dir, dvYAML(t, rg, dir, "sandbox-secret"), copySet(t, "dynamics")))
}

// crm check sends the token request and GETs, nothing else: it cannot
// change the CRM. Both CRMs, a full set and write-back.
func TestReadOnly(t *testing.T) {
	for _, flavor := range []string{"salesforce", "dataverse"} {
		t.Run(flavor, func(t *testing.T) {
			rg, r := checkShipped(t, flavor)
			if len(r.Checks) < 20 {
				t.Fatalf("only %d checks: %+v", len(r.Checks), r.Checks)
			}
			reqs := rg.requests()
			gets := 0
			for _, q := range reqs {
				switch {
				case strings.HasPrefix(q, "GET "):
					gets++
				case q == "POST /services/oauth2/token", strings.HasPrefix(q, "POST /") && strings.HasSuffix(q, "/oauth2/v2.0/token"):
				default:
					t.Errorf("crm check sent %s", q)
				}
			}
			if gets < 5 {
				t.Errorf("only %d GETs: %v", gets, reqs)
			}
			for _, name := range []string{"Account", "contact", "msemr_observation"} {
				if recs := rg.sb.Records(name); len(recs) != 0 {
					t.Errorf("%s has %d records", name, len(recs))
				}
			}
		})
	}
}

// Accounts an older ehrbridge keyed by SourceSystemIdentifier alone are a
// blocker naming their number and what to copy: upserting by the new key
// would create a second account for each of those patients.
func TestSalesforceOlderKeysBlock(t *testing.T) {
	sb, err := sandbox.New(sandbox.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(func() { srv.Close(); _ = sb.Close() })
	create := func(body string) {
		resp, err := http.Post(srv.URL+"/sandbox/v1/objects/Account", "application/json", strings.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("create: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	create(`{"LastName":"Old","SourceSystemIdentifier":"HOSP|1"}`)
	create(`{"LastName":"Old","SourceSystemIdentifier":"HOSP|2"}`)
	create(`{"LastName":"Copied","SourceSystemIdentifier":"HOSP|3","EHR_Patient_Key__c":"HOSP|3"}`)

	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", []byte("sandbox-secret"))
	r := run(t, loadConfig(t, dir, sfYAML(srv.URL, "client_secret_file: "+secret), copySet(t, "healthcloud")))
	it := mustBlock(t, r, "Account", crmcheck.CheckKeysCopied, "2 records keyed by an older ehrbridge: copy SourceSystemIdentifier to EHR_Patient_Key__c first (see docs/setup-salesforce.md)")
	if it.Field != "EHR_Patient_Key__c" {
		t.Errorf("field %q", it.Field)
	}
	for _, c := range r.Checks {
		if strings.Contains(c.Message, "HOSP|") || strings.Contains(c.Message, "Old") {
			t.Errorf("a record's value is in the report: %+v", c)
		}
	}
}

// The write-back status fields must be writable by the integration user:
// a describe that says EHR_Status__c is not updateable is a blocker
// naming the field; the others pass.
func TestWritebackFieldNotWritableBlocks(t *testing.T) {
	site := writeFile(t, t.TempDir(), "task.json", []byte(`{"name":"Task","fields":[
	 {"name":"EHR_Status__c","type":"picklist","nillable":true,"createable":false,"updateable":false,
	  "picklistValues":[{"value":"Filed","active":true},{"value":"Error","active":true},{"value":"Held","active":true},{"value":"Pending","active":true}]}]}`))
	rg := newRig(t, sandbox.Options{Schemas: []string{site}}, false)
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", []byte("sandbox-secret"))
	r := run(t, loadConfig(t, dir, sfYAML(rg.srv.URL, "client_secret_file: "+secret)))
	it := mustBlock(t, r, "Task", crmcheck.CheckWBWritable, "cannot update Task.EHR_Status__c")
	if it.Field != "EHR_Status__c" {
		t.Errorf("field %q", it.Field)
	}
	for _, f := range []string{"EHR_Document_Id__c", "EHR_Filed_At__c", "EHR_Error__c"} {
		if got := find(r, "Task", f, crmcheck.CheckWBWritable); len(got) != 1 || !got[0].OK {
			t.Errorf("Task.%s writable: %+v", f, got)
		}
	}
	if got := find(r, "Task", "Send_to_EHR__c", crmcheck.CheckWBField); len(got) != 1 || !got[0].OK {
		t.Errorf("Task.Send_to_EHR__c present: %+v", got)
	}
}

// The API allocation line: plenty left is ok; inside the reserve
// ehrbridge keeps free is a warning (ehrbridge would pause at once, but
// nothing is wrong with the org), and the check itself still runs; used
// up is a login blocker saying so.
func TestSalesforceAllocation(t *testing.T) {
	for _, c := range []struct {
		name    string
		used    int
		ok      bool
		blocker bool
		says    string
	}{
		{"plenty", 1000, true, false, "of 100000 daily API requests left"},
		{"in the reserve", 95000, false, false, "keeps the last 10% in reserve"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rg := newRig(t, sandbox.Options{UsedAtStart: c.used}, false)
			dir := t.TempDir()
			secret := writeFile(t, dir, "secret", []byte("sandbox-secret"))
			r := run(t, loadConfig(t, dir, sfYAML(rg.srv.URL, "client_secret_file: "+secret), writeCodesSet(t)))
			got := find(r, crmcheck.GroupLimits, "DailyApiRequests", crmcheck.CheckAllocation)
			if len(got) != 1 || got[0].OK != c.ok || got[0].Blocker != c.blocker || !strings.Contains(got[0].Message, c.says) {
				t.Errorf("allocation: %+v", got)
			}
			if obj := find(r, "CodeSet", "", crmcheck.CheckObject); len(obj) != 1 || !obj[0].OK {
				t.Errorf("the check itself was refused near the reserve: %+v", obj)
			}
		})
	}
	rg := newRig(t, sandbox.Options{UsedAtStart: 100000}, false)
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", []byte("sandbox-secret"))
	r := run(t, loadConfig(t, dir, sfYAML(rg.srv.URL, "client_secret_file: "+secret)))
	mustBlock(t, r, crmcheck.GroupConnection, crmcheck.CheckLogin, "REQUEST_LIMIT_EXCEEDED", "used up")
}

// writeCodesSet writes a one-op mapping set (CodeSet by EHR_Code_Key__c).
func writeCodesSet(t *testing.T) string {
	t.Helper()
	return writeFile(t, t.TempDir(), "codes.yaml", []byte(`description: codes of an ORU
when:
  hl7: ORU^R01
ops:
  - id: code
    object: CodeSet
    foreach: OBX
    if: present(OBX-3.1)
    key_field: EHR_Code_Key__c
    key: concat(OBX-3.3, "|", OBX-3.1)
    fields:
      Code: OBX-3.1
`))
}

// Dataverse's documented service protection headers, when an answer
// carries them, are reported; none left in the window is a warning.
func TestDataverseRateLimitHeadersReported(t *testing.T) {
	rg := newRigWrapped(t, sandbox.Options{}, true, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/api/data/") {
				w.Header().Set("x-ms-ratelimit-burst-remaining-xrm-requests", "0")
				w.Header().Set("x-ms-ratelimit-time-remaining-xrm-requests", "1199.5")
			}
			next.ServeHTTP(w, r)
		})
	})
	dir := t.TempDir()
	r := run(t, loadConfig(t, dir, dvYAML(t, rg, dir, "sandbox-secret")))
	burst := find(r, crmcheck.GroupLimits, "x-ms-ratelimit-burst-remaining-xrm-requests", crmcheck.CheckRateLimit)
	left := find(r, crmcheck.GroupLimits, "x-ms-ratelimit-time-remaining-xrm-requests", crmcheck.CheckRateLimit)
	if len(burst) != 1 || burst[0].OK || burst[0].Blocker || len(left) != 1 || !left[0].OK || !strings.Contains(left[0].Message, "1199.5") {
		t.Errorf("rate limit lines: %+v %+v", burst, left)
	}
}

// The go-live preflight of the shipped sets against the strict sandbox
// (the published schemas, the fields deploy/salesforce and
// deploy/dataverse create): every check green, and every kind of check
// made, with write-back.
func TestShippedSetsAllGreen(t *testing.T) {
	for _, flavor := range []string{"salesforce", "dataverse"} {
		t.Run(flavor, func(t *testing.T) {
			_, r := checkShipped(t, flavor)
			kinds := map[string]int{}
			for _, it := range r.Checks {
				if !it.OK {
					t.Errorf("%s", it.Line())
				}
				kinds[it.Check]++
			}
			want := []string{crmcheck.CheckLogin, crmcheck.CheckObject, mappings.CheckField, mappings.CheckKey, mappings.CheckWritable,
				mappings.CheckType, mappings.CheckValue, crmcheck.CheckWBField, crmcheck.CheckWBWritable}
			if flavor == "salesforce" {
				want = append(want, mappings.CheckReference, crmcheck.CheckKeysCopied, crmcheck.CheckAllocation)
			} else {
				want = append(want, mappings.CheckNavigation)
			}
			for _, k := range want {
				if kinds[k] == 0 {
					t.Errorf("no %q check made: %v", k, kinds)
				}
			}
			if !r.OK || r.Blockers != 0 {
				t.Errorf("report not green: %d blockers of %d checks", r.Blockers, len(r.Checks))
			}
		})
	}
}

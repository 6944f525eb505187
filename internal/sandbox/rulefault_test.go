package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// sendFault posts or deletes under /sandbox/v1/faults and returns the
// status and body.
func sendFault(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A validation rule on Account refuses every save of an Account, single
// or in a collection or composite, with FIELD_CUSTOM_VALIDATION_EXCEPTION
// and nothing written, leaves other objects alone, and once removed the
// same records are accepted.
func TestValidationRuleSalesforce(t *testing.T) {
	f := start(t, Options{})
	hc := http.DefaultClient
	acct := func(key, last string) map[string]any {
		return map[string]any{"attributes": map[string]any{"type": "Account"}, "EHR_Patient_Key__c": key, "LastName": last}
	}
	// An Account saved before the rule, to update under it.
	st, b, _ := f.do("PATCH", v+"/sobjects/Account/EHR_Patient_Key__c/OLD", map[string]any{"LastName": "Before"})
	if st != 201 {
		t.Fatalf("upsert before the rule: %d %s", st, b)
	}
	var created saveResult
	_ = json.Unmarshal(b, &created)

	for _, bad := range []string{
		`{"validation_rule":{}}`,
		`{"validation_rule":{"object":"NoSuchObject__c"}}`,
		`{"validation_rule":{"object":"Account","field":"No_Such_Field__c"}}`,
		`{"validation_rule":{"object":"Account","message":"` + strings.Repeat("x", 256) + `"}}`,
		`{"validation_rule":{"object":"Account","crm":"sap"}}`,
	} {
		if st, body := sendFault(t, hc, "POST", f.base+"/sandbox/v1/faults", bad); st != 400 {
			t.Errorf("%s: %d %s, want 400", bad, st, body)
		}
	}
	if st, body := sendFault(t, hc, "POST", f.base+"/sandbox/v1/faults", `{"validation_rule":{"object":"account","message":"Coverage must be verified","field":"LastName","crm":"salesforce"}}`); st != 204 {
		t.Fatalf("rule: %d %s", st, body)
	}
	refused := func(what string, st int, b []byte) {
		t.Helper()
		var errs []apiError
		if st != 400 || json.Unmarshal(b, &errs) != nil || len(errs) != 1 || errs[0].Code != "FIELD_CUSTOM_VALIDATION_EXCEPTION" ||
			errs[0].Message != "Coverage must be verified" || len(errs[0].Fields) != 1 || errs[0].Fields[0] != "LastName" {
			t.Errorf("%s: %d %s, want 400 FIELD_CUSTOM_VALIDATION_EXCEPTION", what, st, b)
		}
		if strings.Contains(string(b), "Secret") {
			t.Errorf("%s: the answer echoes a record value: %s", what, b)
		}
	}
	st, b, _ = f.do("POST", v+"/sobjects/Account", map[string]any{"LastName": "Secret"})
	refused("create", st, b)
	st, b, _ = f.do("PATCH", v+"/sobjects/Account/EHR_Patient_Key__c/NEW", map[string]any{"LastName": "Secret"})
	refused("upsert (insert)", st, b)
	st, b, _ = f.do("PATCH", v+"/sobjects/Account/EHR_Patient_Key__c/OLD", map[string]any{"LastName": "Secret"})
	refused("upsert (update)", st, b)
	st, b, _ = f.do("PATCH", v+"/sobjects/Account/"+created.ID, map[string]any{"LastName": "Secret"})
	refused("update", st, b)

	// Collections: each Account fails on its own; a Contact in the same
	// request is saved unless allOrNone.
	contact := map[string]any{"attributes": map[string]any{"type": "Contact"}, "LastName": "Kept"}
	st, b, _ = f.do("POST", v+"/composite/sobjects", map[string]any{"allOrNone": false, "records": []any{
		map[string]any{"attributes": map[string]any{"type": "Account"}, "LastName": "Secret"}, contact}})
	var res []collectionResult
	if st != 200 || json.Unmarshal(b, &res) != nil || len(res) != 2 || res[0].Success || res[0].Errors[0].StatusCode != "FIELD_CUSTOM_VALIDATION_EXCEPTION" ||
		res[0].Errors[0].Fields[0] != "LastName" || !res[1].Success {
		t.Errorf("collection create: %d %s", st, b)
	}
	st, b, _ = f.do("POST", v+"/composite/sobjects", map[string]any{"allOrNone": true, "records": []any{
		contact, map[string]any{"attributes": map[string]any{"type": "Account"}, "LastName": "Secret"}}})
	res = nil
	if st != 200 || json.Unmarshal(b, &res) != nil || len(res) != 2 || res[0].Errors[0].StatusCode != "ALL_OR_NONE_OPERATION_ROLLED_BACK" ||
		res[1].Errors[0].StatusCode != "FIELD_CUSTOM_VALIDATION_EXCEPTION" {
		t.Errorf("collection allOrNone: %d %s", st, b)
	}
	if n := len(f.s.Records("Contact")); n != 1 {
		t.Errorf("%d contacts, want 1 (the allOrNone one rolled back)", n)
	}
	st, b, _ = f.do("PATCH", v+"/composite/sobjects/Account/EHR_Patient_Key__c", map[string]any{"allOrNone": false, "records": []any{acct("A1", "Secret"), acct("OLD", "Secret")}})
	res = nil
	if st != 200 || json.Unmarshal(b, &res) != nil || len(res) != 2 || res[0].Success || res[1].Success ||
		res[0].Errors[0].StatusCode != "FIELD_CUSTOM_VALIDATION_EXCEPTION" || res[1].Errors[0].Message != "Coverage must be verified" {
		t.Errorf("collection upsert: %d %s", st, b)
	}
	// Composite: a single-record subrequest answers 400 with the error,
	// a collection subrequest 200 with per-record errors.
	st, b, _ = f.do("POST", v+"/composite", map[string]any{"allOrNone": false, "collateSubrequests": false, "compositeRequest": []any{
		map[string]any{"method": "PATCH", "url": v + "/sobjects/Account/EHR_Patient_Key__c/C1", "referenceId": "one", "body": map[string]any{"LastName": "Secret"}},
		map[string]any{"method": "PATCH", "url": v + "/composite/sobjects/Account/EHR_Patient_Key__c", "referenceId": "many",
			"body": map[string]any{"records": []any{acct("C2", "Secret")}}},
	}})
	var comp struct {
		CompositeResponse []struct {
			HTTPStatusCode int             `json:"httpStatusCode"`
			Body           json.RawMessage `json:"body"`
		} `json:"compositeResponse"`
	}
	if st != 200 || json.Unmarshal(b, &comp) != nil || len(comp.CompositeResponse) != 2 {
		t.Fatalf("composite: %d %s", st, b)
	}
	refused("composite single", comp.CompositeResponse[0].HTTPStatusCode, comp.CompositeResponse[0].Body)
	res = nil
	if comp.CompositeResponse[1].HTTPStatusCode != 200 || json.Unmarshal(comp.CompositeResponse[1].Body, &res) != nil || len(res) != 1 ||
		res[0].Errors[0].StatusCode != "FIELD_CUSTOM_VALIDATION_EXCEPTION" {
		t.Errorf("composite collection: %s", b)
	}
	if recs := f.s.Records("Account"); len(recs) != 1 || recs[0]["LastName"] != "Before" {
		t.Errorf("accounts under the rule: %v", recs)
	}
	// Other objects are not refused.
	st, b, _ = f.do("POST", v+"/sobjects/Contact", map[string]any{"LastName": "Other"})
	if st != 201 {
		t.Errorf("another object: %d %s", st, b)
	}

	// The admin removes the rule: the same records go through.
	if st, body := sendFault(t, hc, "DELETE", f.base+"/sandbox/v1/faults/validation_rule", ""); st != 204 {
		t.Fatalf("remove rule: %d %s", st, body)
	}
	if st, b, _ := f.do("PATCH", v+"/sobjects/Account/EHR_Patient_Key__c/OLD", map[string]any{"LastName": "After"}); st != 200 {
		t.Errorf("upsert after the rule: %d %s", st, b)
	}
	st, b, _ = f.do("PATCH", v+"/composite/sobjects/Account/EHR_Patient_Key__c", map[string]any{"allOrNone": true, "records": []any{acct("A1", "After"), acct("C2", "After")}})
	res = nil
	if st != 200 || json.Unmarshal(b, &res) != nil || len(res) != 2 || !res[0].Success || !res[1].Success {
		t.Errorf("collection after the rule: %d %s", st, b)
	}
	// DELETE /sandbox/v1/faults clears rules with the other faults; the
	// default message applies when the rule gives none.
	sendFault(t, hc, "POST", f.base+"/sandbox/v1/faults", `{"validation_rule":{"object":"Contact"}}`)
	st, b, _ = f.do("POST", v+"/sobjects/Contact", map[string]any{"LastName": "X"})
	var errs []apiError
	if st != 400 || json.Unmarshal(b, &errs) != nil || errs[0].Message != defaultRuleMessage || len(errs[0].Fields) != 0 ||
		!strings.Contains(string(b), `"fields":[]`) {
		// A save error's envelope carries "fields", [] when the rule
		// names none (Salesforce's {message, errorCode, fields}).
		t.Errorf("default rule: %d %s", st, b)
	}
	sendFault(t, hc, "DELETE", f.base+"/sandbox/v1/faults", "")
	if st, b, _ := f.do("POST", v+"/sobjects/Contact", map[string]any{"LastName": "X"}); st != 201 {
		t.Errorf("after DELETE /sandbox/v1/faults: %d %s", st, b)
	}
}

// A refusing plug-in on a Dataverse table answers 400 IsvAborted
// (0x80040265) with its message, alone and in $batch change sets (which
// roll back) and continue-on-error batches (where it fails alone).
func TestValidationRuleDataverse(t *testing.T) {
	r := newDVRig(t, Options{})
	if st, _, m := r.do(t, "PATCH", "contacts(msemr_medicalrecordnumber='OLD')", `{"lastname":"Before"}`); st != 204 {
		t.Fatalf("upsert before the rule: %d %v", st, m)
	}
	if st, body := sendFault(t, r.client, "POST", r.base+"/sandbox/v1/faults", `{"validation_rule":{"object":"contacts","message":"Plug-in: coverage must be verified"}}`); st != 204 {
		t.Fatalf("rule by entity set name: %d %s", st, body)
	}
	if st, body := sendFault(t, r.client, "POST", r.base+"/sandbox/v1/faults", `{"validation_rule":{"object":"msemr_encounter"}}`); st != 204 {
		t.Fatalf("rule by logical name: %d %s", st, body)
	}
	refused := func(what string, st int, m map[string]any, msg string) {
		t.Helper()
		e, _ := m["error"].(map[string]any)
		if st != 400 || errCode(m) != dvIsvAborted || e["message"] != msg {
			t.Errorf("%s: %d %v, want 400 %s", what, st, m, dvIsvAborted)
		}
	}
	st, _, m := r.do(t, "POST", "contacts", `{"lastname":"Secret"}`)
	refused("create", st, m, "Plug-in: coverage must be verified")
	st, _, m = r.do(t, "PATCH", "contacts(msemr_medicalrecordnumber='NEW')", `{"lastname":"Secret"}`)
	refused("upsert (insert)", st, m, "Plug-in: coverage must be verified")
	st, _, m = r.do(t, "PATCH", "contacts(msemr_medicalrecordnumber='OLD')", `{"lastname":"Secret"}`)
	refused("upsert (update)", st, m, "Plug-in: coverage must be verified")
	st, _, m = r.do(t, "POST", "msemr_encounters", `{"msemr_encounteridentifier":"V1"}`)
	refused("create by logical-name rule", st, m, defaultRuleMessage)
	if st, _, m := r.do(t, "POST", "accounts", `{"name":"Unrelated"}`); st != 204 && st != 201 {
		t.Errorf("another table: %d %v", st, m)
	}

	batch := func(prefer string, parts ...string) string {
		t.Helper()
		req, _ := http.NewRequest("POST", r.base+"/api/data/v9.2/$batch", strings.NewReader(strings.Join(parts, "")+"--batch_x--\r\n"))
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
		if resp.StatusCode != 200 {
			t.Fatalf("batch: %d %s", resp.StatusCode, data)
		}
		return string(data)
	}
	part := func(method, path, body string) string {
		return "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" + method + " " + path +
			" HTTP/1.1\r\nContent-Type: application/json\r\n\r\n" + body + "\r\n"
	}
	body := batch("", "--batch_x\r\nContent-Type: multipart/mixed; boundary=cs_y\r\n\r\n--cs_y\r\n"+
		part("POST", "/api/data/v9.2/accounts", `{"name":"Undone"}`)+"--cs_y\r\n"+
		part("PATCH", "/api/data/v9.2/contacts(msemr_medicalrecordnumber='B1')", `{"lastname":"Secret"}`)+"--cs_y--\r\n")
	if !strings.Contains(body, "HTTP/1.1 400") || !strings.Contains(body, dvIsvAborted) || strings.Contains(body, "Secret") {
		t.Errorf("change set:\n%s", body)
	}
	for _, a := range r.s.DataverseRecords("account") {
		if a["name"] == "Undone" {
			t.Errorf("a failed change set's row survived: %v", a)
		}
	}
	body = batch("odata.continue-on-error",
		"--batch_x\r\n"+part("POST", "/api/data/v9.2/accounts", `{"name":"Kept"}`),
		"--batch_x\r\n"+part("PATCH", "/api/data/v9.2/contacts(msemr_medicalrecordnumber='B2')", `{"lastname":"Secret"}`))
	if strings.Count(body, "HTTP/1.1 204") != 1 || strings.Count(body, "HTTP/1.1 400") != 1 || !strings.Contains(body, dvIsvAborted) {
		t.Errorf("continue on error:\n%s", body)
	}
	if cs := r.s.DataverseRecords("contact"); len(cs) != 1 || cs[0]["lastname"] != "Before" {
		t.Errorf("contacts under the rule: %v", cs)
	}

	if st, body := sendFault(t, r.client, "DELETE", r.base+"/sandbox/v1/faults/validation_rule", ""); st != 204 {
		t.Fatalf("remove rule: %d %s", st, body)
	}
	if st, _, m := r.do(t, "PATCH", "contacts(msemr_medicalrecordnumber='OLD')", `{"lastname":"After"}`); st != 204 {
		t.Errorf("upsert after the rule: %d %v", st, m)
	}
	body = batch("odata.continue-on-error", "--batch_x\r\n"+part("PATCH", "/api/data/v9.2/contacts(msemr_medicalrecordnumber='B2')", `{"lastname":"After"}`))
	if strings.Count(body, "HTTP/1.1 204") != 1 {
		t.Errorf("batch after the rule:\n%s", body)
	}
}

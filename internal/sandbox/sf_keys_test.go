package sandbox

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// Issue 26.3: upserts and relationship references go only through fields
// that identify a record, as Salesforce documents: an External ID, or,
// where the docs allow it (the single-record upsert on a standard object,
// relationship references), a standard idLookup field; never a plain
// field, never the record Id.
func TestKeysMustBeExternalIDs(t *testing.T) {
	f := start(t, Options{})
	notExternal := func(field string) string {
		return "Provided external ID field does not exist or is not accessible: " + field
	}
	// Single-record upsert.
	for _, c := range []struct {
		name, path string
		body       map[string]any
		status     int
		code, msg  string
	}{
		{"plain field", "/sobjects/Account/LastName/Doe", map[string]any{"FirstName": "J"}, 404, "NOT_FOUND", notExternal("LastName")},
		{"record Id", "/sobjects/Account/Id/001000000000000AAA", map[string]any{"LastName": "Doe"}, 404, "NOT_FOUND", notExternal("Id")},
		{"SourceSystemIdentifier, not idLookup on ClinicalEncounter", "/sobjects/ClinicalEncounter/SourceSystemIdentifier/V1", map[string]any{"Category": "Emergency"}, 404, "NOT_FOUND", notExternal("SourceSystemIdentifier")},
		{"SourceSystemIdentifier, not idLookup on HealthCondition", "/sobjects/HealthCondition/SourceSystemIdentifier/C1", map[string]any{}, 404, "NOT_FOUND", notExternal("SourceSystemIdentifier")},
		// "On standard objects, this call can use the name of any field
		// with the idLookup instead of the external ID" (upsert()).
		{"idLookup on a standard object", "/sobjects/Account/SourceSystemIdentifier/H%7C1", map[string]any{"LastName": "Doe"}, 201, "", ""},
		{"External ID", "/sobjects/Account/EHR_Patient_Key__c/H%7C1", map[string]any{"LastName": "Doe"}, 201, "", ""},
	} {
		st, b, _ := f.do("PATCH", v+c.path, c.body)
		if st != c.status || errorCode(b) != c.code || !strings.Contains(string(b), c.msg) {
			t.Errorf("upsert, %s: %d %s, want %d %s %q", c.name, st, b, c.status, c.code, c.msg)
		}
	}

	// sObject Collections upsert: "Only external ids are supported".
	coll := func(object, field, key string, extra map[string]any) (int, []collectionResult) {
		rec := map[string]any{"attributes": map[string]any{"type": object}, field: key}
		for k, x := range extra {
			rec[k] = x
		}
		st, b, _ := f.do("PATCH", v+"/composite/sobjects/"+object+"/"+field, map[string]any{"records": []any{rec}})
		var out []collectionResult
		_ = json.Unmarshal(b, &out)
		return st, out
	}
	if st, out := coll("Account", "SourceSystemIdentifier", "H|2", map[string]any{"LastName": "Doe"}); st != 200 || len(out) != 1 || out[0].Success ||
		out[0].Errors[0].StatusCode != "NOT_FOUND" || out[0].Errors[0].Message != notExternal("SourceSystemIdentifier") {
		t.Errorf("collection upsert by the idLookup SourceSystemIdentifier: %d %+v", st, out)
	}
	if st, out := coll("Account", "EHR_Patient_Key__c", "H|2", map[string]any{"LastName": "Doe"}); st != 200 || len(out) != 1 || !out[0].Success {
		t.Errorf("collection upsert by EHR_Patient_Key__c: %d %+v", st, out)
	}

	// Inside a Composite, each subrequest by its own rule.
	_, b, _ := f.do("POST", v+"/composite", map[string]any{"collateSubrequests": false, "compositeRequest": []any{
		map[string]any{"method": "PATCH", "url": v + "/composite/sobjects/ClinicalEncounter/SourceSystemIdentifier", "referenceId": "coll",
			"body": map[string]any{"records": []any{map[string]any{"attributes": map[string]any{"type": "ClinicalEncounter"}, "SourceSystemIdentifier": "V1", "Category": "Emergency"}}}},
		map[string]any{"method": "PATCH", "url": v + "/sobjects/Account/LastName/Doe", "referenceId": "one", "body": map[string]any{"FirstName": "J"}},
	}})
	var comp compositeAnswer
	_ = json.Unmarshal(b, &comp)
	if len(comp.CompositeResponse) != 2 || !strings.Contains(string(comp.CompositeResponse[0].Body), notExternal("SourceSystemIdentifier")) ||
		comp.CompositeResponse[1].HTTPStatusCode != 404 || !strings.Contains(string(comp.CompositeResponse[1].Body), notExternal("LastName")) {
		t.Errorf("composite: %s", b)
	}

	// Relationship references: a custom External ID or a standard idLookup
	// field ("Relationship Fields in a Header Row"); not a plain field.
	enc := func(key string, patient map[string]any) (int, []byte) {
		st, b, _ := f.do("PATCH", v+"/sobjects/ClinicalEncounter/EHR_Encounter_Key__c/"+key, map[string]any{"Category": "Emergency",
			"Patient": patient})
		return st, b
	}
	account := func(field, value string) map[string]any {
		return map[string]any{"attributes": map[string]any{"type": "Account"}, field: value}
	}
	if st, b := enc("V1", account("LastName", "Doe")); st != 400 || errorCode(b) != "INVALID_FIELD" || !strings.Contains(string(b), "neither an External ID field nor an idLookup field") {
		t.Errorf("reference through LastName: %d %s", st, b)
	}
	if st, b := enc("V2", account("EHR_Patient_Key__c", "H|1")); st != 201 {
		t.Errorf("reference through EHR_Patient_Key__c: %d %s", st, b)
	}
	// The idLookup SourceSystemIdentifier is allowed as a reference key
	// (the account the first idLookup upsert created holds H|1 there).
	if st, b := enc("V3", account("SourceSystemIdentifier", "H|1")); st != 201 {
		t.Errorf("reference through the idLookup SourceSystemIdentifier: %d %s", st, b)
	}
	// Nothing the refused calls sent was written.
	for _, r := range f.s.Records("Account") {
		if r["FirstName"] == "J" {
			t.Errorf("a refused upsert wrote %v", r)
		}
	}
	if n := len(f.s.Records("ClinicalEncounter")); n != 2 {
		t.Errorf("%d encounters, want the 2 referenced through key fields", n)
	}
}

// Issue 26.3: a Unique field holds each value once (DUPLICATE_VALUE), as
// its caseSensitive attribute says (the EHR_*_Key__c fields are
// case-sensitive: "h|1" is another patient than "H|1"); an upsert that
// matches several records of a non-unique External ID is 300.
func TestUniqueExternalIDs(t *testing.T) {
	f := start(t, Options{})
	create := func(object string, rec map[string]any) (int, []byte) {
		st, b, _ := f.do("POST", v+"/sobjects/"+object, rec)
		return st, b
	}
	if st, b := create("Account", map[string]any{"LastName": "One", "EHR_Patient_Key__c": "H|1"}); st != 201 {
		t.Fatalf("create: %d %s", st, b)
	}
	st, b := create("Account", map[string]any{"LastName": "Two", "EHR_Patient_Key__c": "H|1"})
	if st != 400 || errorCode(b) != "DUPLICATE_VALUE" || !strings.Contains(string(b), "duplicate value found: EHR_Patient_Key__c duplicates value on record with id: 001") {
		t.Errorf("second account with key H|1: %d %s", st, b)
	}
	if strings.Contains(string(b), "H|1") {
		t.Errorf("the answer repeats the key: %s", b)
	}
	// Case-sensitive: another value, and the upsert by it creates.
	if st, b := create("Account", map[string]any{"LastName": "Lower", "EHR_Patient_Key__c": "h|1"}); st != 201 {
		t.Errorf("h|1 beside H|1 (case-sensitive unique): %d %s", st, b)
	}
	if st, b, _ := f.do("PATCH", v+"/sobjects/Account/EHR_Patient_Key__c/h%7C2", map[string]any{"LastName": "Other"}); st != 201 {
		t.Errorf("upsert h|2: %d %s", st, b)
	}
	if st, b, _ := f.do("PATCH", v+"/sobjects/Account/EHR_Patient_Key__c/H%7C2", map[string]any{"LastName": "Upper"}); st != 201 {
		t.Errorf("upsert H|2 beside h|2: %d %s, want a new record", st, b)
	}
	// An update that would give a record another's value.
	lower := f.s.Records("Account")[1]["Id"].(string)
	if st, b, _ := f.do("PATCH", v+"/sobjects/Account/"+lower, map[string]any{"EHR_Patient_Key__c": "H|1"}); st != 400 || errorCode(b) != "DUPLICATE_VALUE" {
		t.Errorf("update onto H|1: %d %s", st, b)
	}
	// ... but writing a record's own value again is no duplicate.
	if st, b, _ := f.do("PATCH", v+"/sobjects/Account/"+lower, map[string]any{"EHR_Patient_Key__c": "h|1", "FirstName": "Same"}); st != 204 && st != 200 {
		t.Errorf("update with its own key: %d %s", st, b)
	}
	// A Collections create of a duplicate fails that record only.
	st, b, _ = f.do("POST", v+"/composite/sobjects", map[string]any{"records": []any{
		map[string]any{"attributes": map[string]any{"type": "Account"}, "LastName": "Dup", "EHR_Patient_Key__c": "H|1"},
		map[string]any{"attributes": map[string]any{"type": "Account"}, "LastName": "New", "EHR_Patient_Key__c": "H|3"},
	}})
	var out []collectionResult
	_ = json.Unmarshal(b, &out)
	if st != 200 || len(out) != 2 || out[0].Success || out[0].Errors[0].StatusCode != "DUPLICATE_VALUE" || !out[1].Success {
		t.Errorf("collection create: %d %s", st, b)
	}

	// A unique field that is case-insensitive (the site's Contact.MRN__c):
	// "m1" duplicates "M1", and the upsert by "m1" updates "M1".
	if st, b := create("Contact", map[string]any{"LastName": "Doe", "MRN__c": "M1"}); st != 201 {
		t.Fatalf("contact: %d %s", st, b)
	}
	if st, b := create("Contact", map[string]any{"LastName": "Doe", "MRN__c": "m1"}); st != 400 || errorCode(b) != "DUPLICATE_VALUE" {
		t.Errorf("m1 beside M1 (case-insensitive unique): %d %s", st, b)
	}
	if st, b, _ := f.do("PATCH", v+"/sobjects/Contact/MRN__c/m1", map[string]any{"FirstName": "Jo"}); st != 200 {
		t.Errorf("upsert m1: %d %s, want M1 updated", st, b)
	}

	// A non-unique External ID (the site's Patient__c.MRN__c) may hold a
	// value twice; an upsert matching both is 300 with their URLs, and
	// changes neither ("If the external ID matches multiple existing
	// records, then a 300 error is returned").
	create("Patient__c", map[string]any{"Name": "A", "MRN__c": "P9"})
	create("Patient__c", map[string]any{"Name": "B", "MRN__c": "P9"})
	st, b, _ = f.do("PATCH", v+"/sobjects/Patient__c/MRN__c/P9", map[string]any{"Name": "X"})
	if st != 300 || strings.Count(string(b), v+"/sobjects/Patient__c/") != 2 {
		t.Errorf("upsert matching two: %d %s", st, b)
	}
	// ... and it matches case-sensitively (not unique case-insensitive).
	if st, b, _ := f.do("PATCH", v+"/sobjects/Patient__c/MRN__c/p9", map[string]any{"Name": "Y"}); st != 201 {
		t.Errorf("upsert p9: %d %s, want a new record", st, b)
	}
	for _, r := range f.s.Records("Patient__c") {
		if r["Name"] == "X" {
			t.Errorf("the 300 upsert wrote %v", r)
		}
	}
}

// Issue 26.4: the upgrade check `ehrbridge crm check` runs, SELECT COUNT()
// FROM Account WHERE SourceSystemIdentifier != null AND EHR_Patient_Key__c
// = null, counts the accounts an older release keyed only by
// SourceSystemIdentifier, as Salesforce answers COUNT(): totalSize, no
// records.
func TestCountUncopiedKeys(t *testing.T) {
	f := start(t, Options{})
	for _, rec := range []map[string]any{
		{"LastName": "Old1", "SourceSystemIdentifier": "H|1"},                             // written by an older release
		{"LastName": "Old2", "SourceSystemIdentifier": "H|2"},                             // likewise
		{"LastName": "New", "SourceSystemIdentifier": "H|3", "EHR_Patient_Key__c": "H|3"}, // this release
		{"LastName": "Manual"}, // neither
	} {
		if st, b, _ := f.do("POST", v+"/sobjects/Account", rec); st != 201 {
			t.Fatalf("create: %d %s", st, b)
		}
	}
	count := func(soql string) (int, []byte) {
		t.Helper()
		st, b, _ := f.do("GET", v+"/query?q="+strings.ReplaceAll(url.QueryEscape(soql), "+", "%20"), nil)
		var out struct {
			TotalSize int               `json:"totalSize"`
			Done      bool              `json:"done"`
			Records   []json.RawMessage `json:"records"`
		}
		if err := json.Unmarshal(b, &out); st != 200 || err != nil || !out.Done || len(out.Records) != 0 {
			t.Fatalf("%s: %d %s", soql, st, b)
		}
		return out.TotalSize, b
	}
	if n, b := count("SELECT COUNT() FROM Account WHERE SourceSystemIdentifier != null AND EHR_Patient_Key__c = null"); n != 2 {
		t.Errorf("uncopied accounts: %d (%s), want 2", n, b)
	}
	if n, _ := count("select count() from Account"); n != 4 {
		t.Errorf("all accounts: %d, want 4", n)
	}
	if n, _ := count("SELECT COUNT() FROM Account LIMIT 1"); n != 1 {
		t.Errorf("with LIMIT 1: %d", n)
	}
	// After the one-time copy, none.
	for _, r := range f.s.Records("Account") {
		if r["EHR_Patient_Key__c"] == nil && r["SourceSystemIdentifier"] != nil {
			if st, b, _ := f.do("PATCH", v+"/sobjects/Account/"+r["Id"].(string), map[string]any{"EHR_Patient_Key__c": r["SourceSystemIdentifier"]}); st != 204 && st != 200 {
				t.Fatalf("copy: %d %s", st, b)
			}
		}
	}
	if n, _ := count("SELECT COUNT() FROM Account WHERE SourceSystemIdentifier != null AND EHR_Patient_Key__c = null"); n != 0 {
		t.Errorf("after the copy: %d", n)
	}
	// What Salesforce refuses of COUNT(), and unknown fields still.
	for _, bad := range []string{
		"SELECT COUNT(), Id FROM Account",
		"SELECT COUNT() FROM Account ORDER BY LastName",
		"SELECT COUNT() FROM Account WHERE NoSuchField__c = null",
	} {
		if st, b, _ := f.do("GET", v+"/query?q="+url.QueryEscape(bad), nil); st != 400 {
			t.Errorf("%s: %d %s, want 400", bad, st, b)
		}
	}
}

package sandbox

import (
	"net/url"
	"strings"
	"testing"
)

// siteDescribe describes Contact and Patient__c as a site's own describe
// files would: the published schema has neither.
const siteDescribe = "testdata/site_describe.json"

// TestSchemaRefusals: the sandbox refuses what Salesforce refuses, with
// its error codes, on single-record REST, Collections and Composite
// alike: an unknown sObject (404 NOT_FOUND), an unknown field
// (INVALID_FIELD "No such column 'X' on sobject of type Y"), a value
// outside a restricted picklist (INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST),
// text over the field's length (STRING_TOO_LONG) and a required field
// missing on create (REQUIRED_FIELD_MISSING). No message carries the
// value sent.
func TestSchemaRefusals(t *testing.T) {
	f := start(t, Options{})
	long := strings.Repeat("x", 65) // ClinicalEncounter.SourceSystem is Text(64)
	enc := func(extra map[string]any) map[string]any {
		r := map[string]any{"Category": "Emergency", "Patient": map[string]any{"attributes": map[string]any{"type": "Account"}, "EHR_Patient_Key__c": "H|1"}}
		for k, v := range extra {
			r[k] = v
		}
		return r
	}
	if st, b, _ := f.do("PATCH", v+"/sobjects/Account/EHR_Patient_Key__c/H%7C1", map[string]any{"LastName": "Doe"}); st != 201 {
		t.Fatalf("patient: %d %s", st, b)
	}
	cases := []struct {
		name, method, path string
		body               map[string]any
		status             int
		code, message      string
	}{
		{"unknown object", "POST", v + "/sobjects/Patient", map[string]any{"Name": "x"}, 404, "NOT_FOUND", "The requested resource does not exist"},
		{"unknown object upsert", "PATCH", v + "/sobjects/Encounter__c/Key__c/1", map[string]any{"Name": "x"}, 404, "NOT_FOUND", "The requested resource does not exist"},
		{"unknown field", "POST", v + "/sobjects/Account", map[string]any{"LastName": "Doe", "MRN__c": "M1"}, 400, "INVALID_FIELD", "No such column 'MRN__c' on sobject of type Account"},
		{"unknown field update", "PATCH", v + "/sobjects/Account/EHR_Patient_Key__c/H%7C1", map[string]any{"Gender": "M"}, 400, "INVALID_FIELD", "No such column 'Gender' on sobject of type Account"},
		{"unknown upsert key", "PATCH", v + "/sobjects/Account/EHR_Unknown_Key__c/1", map[string]any{"LastName": "Doe"}, 404, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: EHR_Unknown_Key__c"},
		{"unknown relationship key", "POST", v + "/sobjects/ClinicalEncounter", map[string]any{"Category": "Emergency", "Patient": map[string]any{"attributes": map[string]any{"type": "Account"}, "MRN__c": "1"}}, 400, "INVALID_FIELD", "No such column 'MRN__c' on sobject of type Account"},
		{"restricted picklist", "POST", v + "/sobjects/Contact", map[string]any{"LastName": "Doe", "Stage__c": "Secret"}, 400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Stage__c: bad value for restricted picklist field"},
		{"inactive picklist value", "POST", v + "/sobjects/Contact", map[string]any{"LastName": "Doe", "Stage__c": "Retired"}, 400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Stage__c: bad value for restricted picklist field"},
		{"restricted picklist, published", "POST", v + "/sobjects/Task", map[string]any{"Subject": "x", "EHR_Status__c": "Done"}, 400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "EHR_Status__c: bad value for restricted picklist field"},
		{"too long", "POST", v + "/sobjects/ClinicalEncounter", enc(map[string]any{"SourceSystem": long}), 400, "STRING_TOO_LONG", "SourceSystem: data value too large (max length=64)"},
		{"too long, site", "POST", v + "/sobjects/Contact", map[string]any{"LastName": strings.Repeat("é", 81)}, 400, "STRING_TOO_LONG", "LastName: data value too large (max length=80)"},
		{"required on create", "PATCH", v + "/sobjects/ClinicalEncounter/EHR_Encounter_Key__c/V9", map[string]any{"Status": "Planned", "Patient": map[string]any{"attributes": map[string]any{"type": "Account"}, "EHR_Patient_Key__c": "H|1"}}, 400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [Category]"},
		{"required, site", "POST", v + "/sobjects/Contact", map[string]any{"FirstName": "Jo"}, 400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]"},
	}
	for _, c := range cases {
		st, b, _ := f.do(c.method, c.path, c.body)
		if st != c.status || errorCode(b) != c.code || !strings.Contains(string(b), c.message) {
			t.Errorf("%s: %d %s, want %d %s %q", c.name, st, b, c.status, c.code, c.message)
		}
		for _, secret := range []string{"Secret", long, "Done"} {
			if strings.Contains(string(b), secret) {
				t.Errorf("%s: the answer carries the value sent: %s", c.name, b)
			}
		}
	}
	// What the schema allows is written; a required field is not needed
	// on update; the exact length passes.
	ok := []struct {
		method, path string
		body         map[string]any
	}{
		{"PATCH", v + "/sobjects/ClinicalEncounter/EHR_Encounter_Key__c/V1", enc(map[string]any{"SourceSystem": long[:64], "Status": "In Progress"})},
		{"PATCH", v + "/sobjects/ClinicalEncounter/EHR_Encounter_Key__c/V1", map[string]any{"Status": "Finished"}},
		{"POST", v + "/sobjects/Contact", map[string]any{"LastName": "Doe", "Stage__c": "Known", "mrn__C": "M1"}},
		{"POST", v + "/sobjects/Task", map[string]any{"Subject": "x", "EHR_Status__c": "Pending"}},
	}
	for _, c := range ok {
		if st, b, _ := f.do(c.method, c.path, c.body); st >= 300 {
			t.Errorf("%s %s: %d %s", c.method, c.path, st, b)
		}
	}

	// A required field cannot be cleared on update either.
	if st, b, _ := f.do("PATCH", v+"/sobjects/ClinicalEncounter/EHR_Encounter_Key__c/V1", map[string]any{"Category": nil}); st != 400 || errorCode(b) != "REQUIRED_FIELD_MISSING" {
		t.Errorf("Category cleared: %d %s", st, b)
	}

	// Collections and Composite give the same per-record answers.
	st, b, _ := f.do("POST", v+"/composite/sobjects", map[string]any{"allOrNone": false, "records": []any{
		map[string]any{"attributes": map[string]any{"type": "Contact"}, "LastName": "Doe", "Stage__c": "Secret"},
		map[string]any{"attributes": map[string]any{"type": "Patient"}, "Name": "x"},
		map[string]any{"attributes": map[string]any{"type": "Account"}, "LastName": "Doe", "Nickname": "x"},
	}})
	for _, want := range []string{"INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "NOT_FOUND", "No such column 'Nickname' on sobject of type Account"} {
		if st != 200 || !strings.Contains(string(b), want) {
			t.Errorf("collection: %d %s, want %s", st, b, want)
		}
	}
	st, b, _ = f.do("POST", v+"/composite", map[string]any{"allOrNone": false, "collateSubrequests": false, "compositeRequest": []any{
		map[string]any{"method": "PATCH", "url": v + "/composite/sobjects/ClinicalEncounter/EHR_Encounter_Key__c", "referenceId": "e",
			"body": map[string]any{"records": []any{map[string]any{"attributes": map[string]any{"type": "ClinicalEncounter"}, "EHR_Encounter_Key__c": "V2",
				"Patient": map[string]any{"attributes": map[string]any{"type": "Account"}, "EHR_Patient_Key__c": "H|1"}}}}},
		map[string]any{"method": "POST", "url": v + "/sobjects/Account", "referenceId": "a", "body": map[string]any{"LastName": "Doe", "Bogus": 1}},
	}})
	for _, want := range []string{"REQUIRED_FIELD_MISSING", "No such column 'Bogus' on sobject of type Account"} {
		if st != 200 || !strings.Contains(string(b), want) {
			t.Errorf("composite: %d %s, want %s", st, b, want)
		}
	}
	if n := len(f.s.Records("ClinicalEncounter")); n != 1 {
		t.Errorf("%d encounters written, want 1", n)
	}
}

// TestSchemaOptions: a site's describe replaces the published object;
// NoSchema accepts anything; a bad file is an error at New.
func TestSchemaOptions(t *testing.T) {
	f := start(t, Options{NoSchema: true})
	if st, b, _ := f.do("POST", v+"/sobjects/Anything__c", map[string]any{"Whatever__c": "x"}); st != 201 {
		t.Errorf("NoSchema: %d %s", st, b)
	}
	if _, err := New(Options{Schemas: []string{"testdata/nonexistent.json"}}); err == nil {
		t.Error("a missing schema file was accepted")
	}
	if _, err := New(Options{Schemas: []string{"sf_schema_test.go"}}); err == nil {
		t.Error("a file that is not JSON was accepted")
	}
	s, err := loadSchema(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Account", "ClinicalEncounter", "CareObservation", "HealthCondition", "AllergyIntolerance", "CodeSet", "CodeSetBundle", "ServiceAppointment", "Task"} {
		if _, e := s.object(name); e != nil {
			t.Errorf("published schema lacks %s", name)
		}
	}
}

// Reads are checked as writes are: SOQL against an unknown object is
// INVALID_TYPE, an unknown field in SELECT, WHERE or ORDER BY
// INVALID_FIELD; a GET through an unknown object or field NOT_FOUND, an
// unknown field in ?fields= INVALID_FIELD. System fields (Id,
// LastModifiedDate, ...) and relationship paths are known. No answer
// repeats a literal of the query.
func TestSchemaReads(t *testing.T) {
	f := start(t, Options{})
	if st, b, _ := f.do("PATCH", v+"/sobjects/Account/EHR_Patient_Key__c/H1", map[string]any{"LastName": "Doe"}); st != 201 {
		t.Fatalf("patient: %d %s", st, b)
	}
	q := func(soql string) string { return v + "/query?q=" + url.QueryEscape(soql) }
	for _, c := range []struct {
		name, path string
		status     int
		code       string
	}{
		{"query", q("SELECT Id, LastName FROM Account WHERE EHR_Patient_Key__c = 'H1' ORDER BY LastModifiedDate"), 200, ""},
		{"query, relationship", q("SELECT Id, Patient.LastName FROM ClinicalEncounter WHERE SystemModstamp > 2026-01-01T00:00:00Z"), 200, ""},
		{"query, unknown object", q("SELECT Id FROM Patient WHERE Name = 'Secret'"), 400, "INVALID_TYPE"},
		{"query, unknown field", q("SELECT Id, MRN__c FROM Account"), 400, "INVALID_FIELD"},
		{"query, unknown field in WHERE", q("SELECT Id FROM Account WHERE NOT (MRN__c = 'Secret')"), 400, "INVALID_FIELD"},
		{"query, unknown field in IN", q("SELECT Id FROM Account WHERE LastName = 'x' OR MRN__c IN ('Secret')"), 400, "INVALID_FIELD"},
		{"query, unknown field in ORDER BY", q("SELECT Id FROM Account ORDER BY MRN__c"), 400, "INVALID_FIELD"},
		{"query, unknown relationship", q("SELECT Id, Doctor.Name FROM ClinicalEncounter"), 400, "INVALID_FIELD"},
		{"get by key", v + "/sobjects/Account/EHR_Patient_Key__c/H1?fields=Id,LastName", 200, ""},
		{"get, unknown object", v + "/sobjects/Patient/EHR_Patient_Key__c/H1", 404, "NOT_FOUND"},
		{"get, unknown key field", v + "/sobjects/Account/MRN__c/H1", 404, "NOT_FOUND"},
		{"get, unknown field", v + "/sobjects/Account/EHR_Patient_Key__c/H1?fields=Id,MRN__c", 400, "INVALID_FIELD"},
	} {
		st, b, _ := f.do("GET", c.path, nil)
		if st != c.status || c.code != "" && errorCode(b) != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, st, b, c.status, c.code)
		}
		if strings.Contains(string(b), "Secret") {
			t.Errorf("%s: the answer carries a literal of the query: %s", c.name, b)
		}
	}
	// Without a schema anything goes, as before.
	f = start(t, Options{NoSchema: true})
	if st, b, _ := f.do("GET", q("SELECT Id, MRN__c FROM Patient"), nil); st != 200 {
		t.Errorf("no schema: %d %s", st, b)
	}
}

package sandbox

import (
	"encoding/json"
	"testing"
)

// GET /sobjects/X/describe answers from the schema the sandbox enforces
// (published + the site's describe files) in the describe format; an
// unknown object is 404 NOT_FOUND.
func TestDescribe(t *testing.T) {
	f := start(t, Options{})
	type field struct {
		Name               string   `json:"name"`
		Type               string   `json:"type"`
		Length             int      `json:"length"`
		Nillable           bool     `json:"nillable"`
		Createable         bool     `json:"createable"`
		Updateable         bool     `json:"updateable"`
		ExternalID         bool     `json:"externalId"`
		IDLookup           bool     `json:"idLookup"`
		Unique             bool     `json:"unique"`
		CaseSensitive      bool     `json:"caseSensitive"`
		RestrictedPicklist bool     `json:"restrictedPicklist"`
		ReferenceTo        []string `json:"referenceTo"`
		RelationshipName   *string  `json:"relationshipName"`
		PicklistValues     []struct {
			Value  string `json:"value"`
			Active bool   `json:"active"`
		} `json:"picklistValues"`
	}
	type result struct {
		Name       string  `json:"name"`
		Label      string  `json:"label"`
		Createable bool    `json:"createable"`
		Updateable bool    `json:"updateable"`
		Fields     []field `json:"fields"`
	}
	get := func(object string) (result, map[string]field) {
		t.Helper()
		st, b, _ := f.do("GET", v+"/sobjects/"+object+"/describe", nil)
		if st != 200 {
			t.Fatalf("describe %s: %d %s", object, st, b)
		}
		var r result
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		byName := map[string]field{}
		for _, fl := range r.Fields {
			byName[fl.Name] = fl
		}
		return r, byName
	}

	r, fields := get("CareObservation")
	if r.Name != "CareObservation" || r.Label == "" || !r.Createable || !r.Updateable {
		t.Errorf("CareObservation: %+v", r)
	}
	key := fields["EHR_Observation_Key__c"]
	if key.Type != "string" || key.Length != 255 || !key.ExternalID || !key.Unique || !key.CaseSensitive || !key.Createable || !key.Updateable {
		t.Errorf("EHR_Observation_Key__c (deploy/salesforce): %+v", key)
	}
	// referenceTo only where a source names it: the sandbox's own
	// relationship routing is no published fact.
	if p := fields["ObservedSubjectId"]; p.Type != "reference" || p.RelationshipName == nil || *p.RelationshipName != "ObservedSubject" || len(p.ReferenceTo) != 0 {
		t.Errorf("ObservedSubjectId: %+v", p)
	}
	// System fields are in every describe, read-only.
	if m := fields["SystemModstamp"]; m.Type != "datetime" || m.Createable || m.Updateable || m.Nillable {
		t.Errorf("SystemModstamp: %+v", m)
	}
	if len(fields["ObservationStatus"].PicklistValues) == 0 {
		t.Errorf("ObservationStatus: no picklist values")
	}
	_, fields = get("Account")
	if ssi := fields["SourceSystemIdentifier"]; !ssi.IDLookup || ssi.ExternalID {
		t.Errorf("Account.SourceSystemIdentifier is documented idLookup, not an External ID: %+v", ssi)
	}
	if id := fields["Id"]; id.Type != "id" || id.Createable || id.Updateable || !id.IDLookup {
		t.Errorf("Id: %+v", id)
	}

	// A site's describe file (testdata/site_describe.json) extends it.
	_, fields = get("Contact")
	if s := fields["Stage__c"]; !s.RestrictedPicklist || len(s.PicklistValues) != 3 || s.PicklistValues[2].Value != "Retired" || s.PicklistValues[2].Active {
		t.Errorf("Contact.Stage__c: %+v", s)
	}
	if m := fields["MRN__c"]; !m.ExternalID || !m.Unique || m.Length != 20 {
		t.Errorf("Contact.MRN__c: %+v", m)
	}

	// Unknown object: 404 NOT_FOUND, case-insensitive names as the API.
	if st, b, _ := f.do("GET", v+"/sobjects/NoSuchThing__c/describe", nil); st != 404 || errorCode(b) != "NOT_FOUND" {
		t.Errorf("unknown object: %d %s", st, b)
	}
	if st, _, _ := f.do("GET", v+"/sobjects/account/describe", nil); st != 200 {
		t.Errorf("account (lower case): %d", st)
	}
	// Nothing to describe without a schema.
	g := start(t, Options{NoSchema: true})
	if st, b, _ := g.do("GET", v+"/sobjects/Account/describe", nil); st != 404 || errorCode(b) != "NOT_FOUND" {
		t.Errorf("NoSchema: %d %s", st, b)
	}
	if n := f.s.Stats().ByEndpoint["describe"]; n != 5 {
		t.Errorf("describe calls counted %d, want 5", n)
	}
}

// GET /limits: DailyApiRequests {Max, Remaining} from the daily limit and
// the usage, this call included (List Organization Limits,
// https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_limits.htm).
func TestLimitsResource(t *testing.T) {
	f := start(t, Options{DailyLimit: 5000, UsedAtStart: 1200})
	st, b, _ := f.do("GET", v+"/limits", nil)
	if st != 200 {
		t.Fatalf("limits: %d %s", st, b)
	}
	var out map[string]struct{ Max, Remaining int }
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	// 1200 used at start, the login is not an API call, this is one.
	if d := out["DailyApiRequests"]; d.Max != 5000 || d.Remaining != 5000-1201 {
		t.Errorf("DailyApiRequests %+v, want Max 5000 Remaining 3799 (%s)", d, b)
	}
	f.do("GET", v+"/limits", nil)
	_, b, _ = f.do("GET", v+"/limits", nil)
	_ = json.Unmarshal(b, &out)
	if d := out["DailyApiRequests"]; d.Remaining != 5000-1203 {
		t.Errorf("after 3 calls: %+v", d)
	}
}

// A describe field has each property once, under its describe name: the
// describe type embeds the schema's field and hides its picklistValues and
// relationshipName with the describe's (relationshipName null where a
// field has none, picklist values with a label).
func TestDescribeFieldKeys(t *testing.T) {
	s, err := loadSchema(nil)
	if err != nil {
		t.Fatal(err)
	}
	o := s.objects["careobservation"]
	if o == nil {
		t.Fatal("no CareObservation in the published schema")
	}
	b, err := json.Marshal(o.describe("v62.0"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Fields []map[string]json.RawMessage `json:"fields"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	want := []string{"name", "label", "type", "custom", "length", "precision", "scale", "nillable", "createable",
		"updateable", "defaultedOnCreate", "externalId", "idLookup", "unique", "caseSensitive", "restrictedPicklist",
		"picklistValues", "referenceTo", "relationshipName"}
	if len(r.Fields) == 0 {
		t.Fatal("no fields")
	}
	for _, f := range r.Fields {
		if len(f) != len(want) {
			t.Errorf("field %s: %d keys, want %d: %v", f["name"], len(f), len(want), f)
		}
		for _, k := range want {
			if _, ok := f[k]; !ok {
				t.Errorf("field %s: no %q", f["name"], k)
			}
		}
		var typ string
		_ = json.Unmarshal(f["type"], &typ)
		if typ != "reference" && string(f["relationshipName"]) != "null" {
			t.Errorf("field %s (%s): relationshipName %s, want null", f["name"], typ, f["relationshipName"])
		}
		if typ == "picklist" {
			var pv []map[string]any
			_ = json.Unmarshal(f["picklistValues"], &pv)
			for _, p := range pv {
				if _, ok := p["label"]; !ok {
					t.Errorf("field %s: picklist value without label: %v", f["name"], p)
				}
			}
		}
	}
}

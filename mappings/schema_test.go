package mappings

import (
	"os"
	"strings"
	"testing"
)

// A Salesforce describe and a Dataverse EntityDefinitions document, in the
// shapes the two APIs publish, holding the properties lint reads.
const (
	testDescribe = `[{"name":"Account","fields":[
 {"name":"Id","type":"id","nillable":false,"createable":false,"updateable":false,"defaultedOnCreate":true,"idLookup":true},
 {"name":"LastName","type":"string","length":80,"nillable":true,"createable":true,"updateable":true},
 {"name":"Name","type":"string","length":255,"nillable":false,"createable":true,"updateable":true,"defaultedOnCreate":false},
 {"name":"Key__c","type":"string","length":255,"nillable":true,"createable":true,"updateable":true,"externalId":true,"unique":true},
 {"name":"Loose__c","type":"string","length":255,"nillable":true,"createable":true,"updateable":true,"externalId":true},
 {"name":"Created__c","type":"datetime","nillable":true,"createable":false,"updateable":false},
 {"name":"Active__c","type":"boolean","nillable":false,"createable":true,"updateable":true,"defaultedOnCreate":true},
 {"name":"Code__c","type":"string","length":5,"nillable":true,"createable":true,"updateable":true},
 {"name":"Note__c","type":"string","length":255,"nillable":true,"createable":true,"updateable":true},
 {"name":"Rating","type":"picklist","nillable":true,"createable":true,"updateable":true,"restrictedPicklist":true,
  "picklistValues":[{"value":"Hot","active":true},{"value":"Cold","active":true},{"value":"Old","active":false}]},
 {"name":"Source","type":"picklist","nillable":true,"createable":true,"updateable":true,
  "picklistValues":[{"value":"Web","active":true}]},
 {"name":"ParentId","type":"reference","nillable":true,"createable":true,"updateable":true,"referenceTo":["Account"]},
 {"name":"OwnerId","type":"reference","nillable":true,"createable":true,"updateable":true,"referenceTo":["User"]}]}]`

	testEntity = `{"value":[{"LogicalName":"contact","EntitySetName":"contacts",
 "Attributes":[
  {"LogicalName":"contactid","SchemaName":"ContactId","AttributeType":"Uniqueidentifier","IsValidForCreate":true,"IsValidForUpdate":false},
  {"LogicalName":"lastname","SchemaName":"LastName","AttributeType":"String","MaxLength":50,"IsValidForCreate":true,"IsValidForUpdate":true,"RequiredLevel":{"Value":"ApplicationRequired"}},
  {"LogicalName":"mrn","SchemaName":"Mrn","AttributeType":"String","MaxLength":100,"IsValidForCreate":true,"IsValidForUpdate":true},
  {"LogicalName":"pending","SchemaName":"Pending","AttributeType":"String","MaxLength":100,"IsValidForCreate":true,"IsValidForUpdate":true},
  {"LogicalName":"gendercode","SchemaName":"GenderCode","AttributeType":"Picklist","IsValidForCreate":true,"IsValidForUpdate":true,
   "OptionSet":{"Options":[{"Value":1},{"Value":2}]}},
  {"LogicalName":"owner","SchemaName":"Owner","AttributeType":"Lookup","IsValidForCreate":true,"IsValidForUpdate":true,"RequiredLevel":{"Value":"SystemRequired"}},
  {"LogicalName":"parentcustomerid","SchemaName":"ParentCustomerId","AttributeType":"Customer","IsValidForCreate":true,"IsValidForUpdate":true}],
 "Keys":[{"KeyAttributes":["mrn"],"EntityKeyIndexStatus":"Active"},{"KeyAttributes":["pending"],"EntityKeyIndexStatus":"Pending"}],
 "ManyToOneRelationships":[
  {"ReferencingAttribute":"parentcustomerid","ReferencedEntity":"contact","ReferencingEntityNavigationPropertyName":"parentcustomerid_contact"},
  {"ReferencingAttribute":"owner","ReferencedEntity":"systemuser","ReferencingEntityNavigationPropertyName":"Owner_contact"}]}]}`
)

func testSchemas(t *testing.T) *Schemas {
	t.Helper()
	s := NewSchemas()
	if err := s.Add("sf.json", []byte(testDescribe)); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("dv.json", []byte(testEntity)); err != nil {
		t.Fatal(err)
	}
	return s
}

// Every check lint --schema makes, each failing where the CRM would refuse
// the write, at the position of what to change; and passing on a mapping
// that writes what the schema accepts.
func TestSchemaChecks(t *testing.T) {
	s := testSchemas(t)
	good := `when: {hl7: ADT}
tables:
  rating: {H: Hot, C: Cold}
  gender: {M: "1", F: "2"}
ops:
  - id: acct
    object: Account
    key_field: Key__c
    key: PID-3.1
    fields:
      Name: PID-5.1
      LastName: PID-5.1
      Rating: lookup(rating, PID-8, "Cold")
      Code__c: truncate(PID-3.1, 5)
      ParentId: ref(Account, Key__c, PID-3.1)
  - id: patient
    object: contact
    key_field: mrn
    key: PID-3.1
    fields:
      lastname: truncate(PID-5.1, 50)
      gendercode: number(lookup(gender, PID-8))
      parentcustomerid_contact: ref(contact, mrn, PID-3.2)
      Owner_contact: ref(systemuser, systemuserid, PID-3.1)
`
	var checks []SchemaCheck
	m, err := Compile("good.yaml", []byte(good), Options{Schemas: s, OnSchemaCheck: func(c SchemaCheck) { checks = append(checks, c) }})
	if err != nil {
		t.Fatalf("good mapping: %v", err)
	}
	for _, w := range m.Lint() {
		if strings.HasPrefix(w.Msg, "warning: op ") { // schema warnings; key lint warns of the bare PID-3.1 keys here
			t.Errorf("good mapping warns: %v", w)
		}
	}
	seen := map[string]bool{}
	for _, c := range checks {
		if !c.OK {
			t.Errorf("failed check on the good mapping: %+v", c)
		}
		seen[c.Check] = true
	}
	for _, k := range []string{CheckField, CheckKey, CheckWritable, CheckType, CheckValue, CheckRequired, CheckLength, CheckNavigation, CheckReference} {
		if !seen[k] {
			t.Errorf("no %q check reported on the good mapping", k)
		}
	}

	bad := `when: {hl7: ADT}
tables:
  rating: {H: Hot, W: Warm}
ops:
  - id: acct
    object: Account
    key_field: Loose__c
    key: PID-3.1
    fields:
      Note__c: PID-5.1
      Created__c: PID-7
      Rating: lookup(rating, PID-8)
      Source: 'Fax'
      Code__c: truncate(PID-3.1, 6)
      OwnerId: ref(Account, Key__c, PID-3.1)
      ParentId: ref(Account, LastName, PID-3.1)
  - id: patient
    object: contact
    key_field: pending
    key: PID-3.1
    fields:
      gendercode: lookup(gender2, PID-8)
      parentcustomerid: ref(contact, mrn, PID-3.2)
      owner_contact: ref(systemuser, systemuserid, PID-3.1)
      lastname: '"A name far too long for the fifty characters the column holds"'
`
	bad = strings.Replace(bad, "tables:\n", "tables:\n  gender2: {M: \"1\", F: \"3\"}\n", 1)
	_, err = Compile("bad.yaml", []byte(bad), Options{Schemas: s})
	if err == nil {
		t.Fatal("bad mapping compiled")
	}
	for _, want := range []string{
		"bad.yaml:8:16: op acct: key_field Loose__c of Account is an External ID but not Unique",
		"bad.yaml:12:7: op acct: Account.Created__c is not both createable and updateable",
		`bad.yaml:13:7: op acct: Account.Rating does not have the value(s) "Warm"`,
		"bad.yaml:15:7: op acct: Account.Code__c holds 5 characters but truncate() keeps 6",
		"bad.yaml:16:7: op acct: Account.OwnerId references User, not Account",
		"bad.yaml:17:7: op acct: ParentId: ref() through LastName of Account is not an External ID field",
		"bad.yaml:6:5: op acct: Account requires Name on create and this upsert does not write it",
		"bad.yaml:20:16: op patient: key_field pending of contact has an alternate key whose index is Pending",
		"bad.yaml:23:7: op patient: contact.gendercode is picklist but the expression gives text",
		`bad.yaml:23:7: op patient: contact.gendercode does not have the value(s) "3"`,
		"bad.yaml:24:7: op patient: contact has no navigation property parentcustomerid (schema dv.json); parentcustomerid is the lookup column: a lookup is set through its navigation property parentcustomerid_contact",
		"bad.yaml:25:7: op patient: contact has no navigation property owner_contact (schema dv.json); navigation property names are case-sensitive: write Owner_contact",
		"bad.yaml:26:7: op patient: contact.lastname holds 50 characters; a value here has 63",
		"bad.yaml:18:5: op patient: contact requires owner on create",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems:\n%v\nwant %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "Source") {
		t.Errorf("an open picklist's value is an error, not a warning:\n%v", err)
	}
}

// Warnings, not errors: a value an open Salesforce picklist lacks (the API
// stores it) and a business-required Dataverse column (forms enforce it,
// the Web API does not).
func TestSchemaWarnings(t *testing.T) {
	s := testSchemas(t)
	src := "when: {hl7: ADT}\nops:\n  - object: Account\n    key_field: Key__c\n    key: PID-3.1\n    fields: {Name: PID-5.1, Source: 'Fax'}\n" +
		"  - object: contact\n    key_field: mrn\n    key: PID-3.1\n    fields:\n      Owner_contact: ref(systemuser, systemuserid, PID-3.1)\n"
	m, err := Compile("w.yaml", []byte(src), Options{Schemas: s})
	if err != nil {
		t.Fatal(err)
	}
	got := m.Lint().Error()
	for _, want := range []string{
		`w.yaml:6:29: warning: op account: Account.Source's picklist lacks "Fax"`,
		"w.yaml:7:5: warning: op contact: contact.lastname is business-required",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings:\n%s\nwant %q", got, want)
		}
	}
}

// Objects lists what a set writes and references, first mention first,
// each once, at the object's position.
func TestSetObjects(t *testing.T) {
	dir := t.TempDir()
	f := dir + "/a.yaml"
	src := "when: {hl7: ADT}\nops:\n  - id: p\n    object: Account\n    key_field: K__c\n    key: concat(ns(MSH-4), \"|\", PID-3.1)\n    fields:\n      Parent: ref(Org__c, Code__c, MSH-4)\n" +
		"  - object: account\n    key_field: K__c\n    key: concat(ns(MSH-4), \"|\", PID-3.2)\n    fields: {Name: PID-5.1}\n"
	if err := os.WriteFile(f, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load([]string{f}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := s.Objects()
	want := []ObjectUse{{"Account", f, 4, 13}, {"Org__c", f, 8, 7}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Objects() = %+v, want %+v", got, want)
	}
}

// A document marked PartialAttributes lists some columns only: a column
// it does not list is not reported missing; a listed one is checked.
func TestSchemaPartialAttributes(t *testing.T) {
	s := NewSchemas()
	if err := s.Add("p.json", []byte(`{"LogicalName":"task","PartialAttributes":true,"Attributes":[{"LogicalName":"subject","AttributeType":"String","MaxLength":5}],"Keys":[{"KeyAttributes":["new_key"]}]}`)); err != nil {
		t.Fatal(err)
	}
	src := "when: {hl7: ADT}\nops:\n  - object: task\n    key_field: new_key\n    key: concat(ns(MSH-4), \"|\", PID-3.1)\n    fields:\n      new_other: PID-5.1\n      subject: '\"too long\"'\n"
	_, err := Compile("p.yaml", []byte(src), Options{Schemas: s})
	if err == nil || strings.Contains(err.Error(), "new_other") || !strings.Contains(err.Error(), "task.subject holds 5 characters") {
		t.Errorf("problems: %v; want only subject's length", err)
	}
}

// A Person Account is created with LastName: an org's describe shows
// Account.Name not nillable (the business account's name), and an upsert
// writing LastName does not lack it; one writing neither does.
func TestSchemaPersonAccountName(t *testing.T) {
	s := testSchemas(t)
	for _, c := range []struct {
		fields string
		ok     bool
	}{{"{LastName: PID-5.1}", true}, {"{Note__c: PID-5.1}", false}} {
		src := "when: {hl7: ADT}\nops:\n  - object: Account\n    key_field: Key__c\n    key: concat(ns(MSH-4), \"|\", PID-3.1)\n    fields: " + c.fields + "\n"
		_, err := Compile("p.yaml", []byte(src), Options{Schemas: s})
		if got := err == nil || !strings.Contains(err.Error(), "requires Name"); got != c.ok {
			t.Errorf("%s: %v", c.fields, err)
		}
	}
}

// Package deploy_test keeps the CRM setup files in deploy/ in step with
// what ehrbridge writes: every custom field the shipped mappings and
// write-back use is created by them.
package deploy_test

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ehrbridge/ehrbridge/internal/writeback"
)

type mappingOp struct {
	Object   string `yaml:"object"`
	KeyField string `yaml:"key_field"`
}

// opsOf reads the ops of a mapping file.
func opsOf(t *testing.T, file string) []mappingOp {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Ops []mappingOp `yaml:"ops"`
	}
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return m.Ops
}

type customField struct {
	FullName string `xml:"fullName"`
	Type     string `xml:"type"`
	External bool   `xml:"externalId"`
	Unique   bool   `xml:"unique"`
	// CaseSensitive: CustomField caseSensitive (unique text fields).
	CaseSensitive bool `xml:"caseSensitive"`
	Values        []struct {
		FullName string `xml:"fullName"`
	} `xml:"valueSet>valueSetDefinition>value"`
}

// salesforceFields reads deploy/salesforce: object → field → definition.
func salesforceFields(t *testing.T) map[string]map[string]customField {
	t.Helper()
	files, err := filepath.Glob("salesforce/force-app/main/default/objects/*/fields/*.field-meta.xml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no field metadata: %v", err)
	}
	out := map[string]map[string]customField{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cf customField
		if err := xml.Unmarshal(data, &cf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if want := strings.TrimSuffix(filepath.Base(f), ".field-meta.xml"); cf.FullName != want {
			t.Errorf("%s: fullName %q", f, cf.FullName)
		}
		object := filepath.Base(filepath.Dir(filepath.Dir(f)))
		if out[object] == nil {
			out[object] = map[string]customField{}
		}
		out[object][cf.FullName] = cf
	}
	return out
}

// The Salesforce metadata creates every custom field of the Health Cloud
// mappings (upsert keys as unique external ids) and of write-back, with
// the statuses write-back sets; the permission set parses.
func TestSalesforceMetadata(t *testing.T) {
	fields := salesforceFields(t)
	maps, _ := filepath.Glob("../configs/mappings/healthcloud/*.yaml")
	used := regexp.MustCompile(`\b[A-Za-z_]+__c\b`)
	for _, m := range maps {
		data, _ := os.ReadFile(m)
		for _, name := range used.FindAllString(string(data), -1) {
			found := false
			for _, fs := range fields {
				if _, ok := fs[name]; ok {
					found = true
				}
			}
			if !found {
				t.Errorf("%s uses %s, which deploy/salesforce does not create", filepath.Base(m), name)
			}
		}
		// Every op key and every ref() key is a custom External ID +
		// Unique field deploy/salesforce creates, case-sensitive as keys
		// are (issue 26: SourceSystemIdentifier is idLookup, not an
		// External ID).
		for _, op := range opsOf(t, m) {
			if op.KeyField == "" {
				continue
			}
			if f, ok := fields[op.Object][op.KeyField]; !ok || !f.External || !f.Unique || !f.CaseSensitive {
				t.Errorf("%s: %s.%s must be a case-sensitive unique external id: %+v", filepath.Base(m), op.Object, op.KeyField, f)
			}
		}
		for _, r := range refKey.FindAllStringSubmatch(string(data), -1) {
			if f, ok := fields[r[1]][r[2]]; !ok || !f.External || !f.Unique || !f.CaseSensitive {
				t.Errorf("%s: ref(%s, %s, ...) must go through a case-sensitive unique external id", filepath.Base(m), r[1], r[2])
			}
		}
	}
	c := writeback.DefaultConfig("salesforce")
	for _, name := range []string{c.FlagField, c.StatusField, c.DocIDField, c.FiledAtField, c.ErrField} {
		if _, ok := fields["Activity"][name]; !ok {
			t.Errorf("write-back's Task field %s is not in deploy/salesforce (objects/Activity)", name)
		}
	}
	var statuses []string
	for _, v := range fields["Activity"][c.StatusField].Values {
		statuses = append(statuses, v.FullName)
	}
	if strings.Join(statuses, ",") != "Pending,Filed,Error,Held" {
		t.Errorf("%s values %v", c.StatusField, statuses)
	}
	if _, ok := fields["User"]["EHR_Provider_Id__c"]; !ok {
		t.Error("User.EHR_Provider_Id__c is missing")
	}
	data, err := os.ReadFile("salesforce/force-app/main/default/permissionsets/ehrbridge_Integration.permissionset-meta.xml")
	if err != nil {
		t.Fatal(err)
	}
	var ps struct {
		Fields []string `xml:"fieldPermissions>field"`
	}
	if err := xml.Unmarshal(data, &ps); err != nil || len(ps.Fields) == 0 {
		t.Fatalf("permission set: %v", err)
	}
	// The integration user can read and edit every field ehrbridge creates.
	granted := map[string]bool{}
	for _, f := range ps.Fields {
		granted[f] = true
	}
	for object, fs := range fields {
		for name := range fs {
			ps := object + "." + name
			if object == "Activity" {
				ps = "Task." + name
			}
			if !granted[ps] {
				t.Errorf("the permission set grants no access to %s", ps)
			}
		}
	}
}

// refKey finds ref(Object, KeyField, ...) in a mapping.
var refKey = regexp.MustCompile(`\bref\(([A-Za-z_]+), *([A-Za-z_]+),`)

// The Dataverse schema creates write-back's task and systemuser columns
// and every new_ column and key of the Dataverse mappings.
func TestDataverseSchema(t *testing.T) {
	data, err := os.ReadFile("dataverse/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Columns []struct {
			Table  string `json:"table"`
			Column struct {
				SchemaName string `json:"SchemaName"`
			} `json:"column"`
		} `json:"columns"`
		Keys []struct {
			Table string `json:"table"`
			Key   struct {
				KeyAttributes []string `json:"KeyAttributes"`
			} `json:"key"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	cols := map[string]bool{}
	for _, c := range schema.Columns {
		cols[c.Table+"."+strings.ToLower(c.Column.SchemaName)] = true
	}
	keys := map[string]bool{}
	for _, k := range schema.Keys {
		keys[k.Table+"."+strings.Join(k.Key.KeyAttributes, ",")] = true
	}
	c := writeback.DefaultConfig("dataverse")
	for _, name := range []string{c.FlagField, c.StatusField, c.DocIDField, c.FiledAtField, c.ErrField} {
		if !cols[c.Object+"."+name] {
			t.Errorf("write-back's column %s.%s is not in deploy/dataverse/schema.json", c.Object, name)
		}
	}
	if !cols["systemuser.new_ehrproviderid"] {
		t.Error("systemuser.new_ehrproviderid is missing")
	}
	maps, _ := filepath.Glob("../configs/mappings/dynamics/*.yaml")
	for _, m := range maps {
		if strings.HasSuffix(m, "_test.yaml") {
			continue
		}
		data, _ := os.ReadFile(m)
		for _, op := range opsOf(t, m) {
			if !keys[op.Object+"."+op.KeyField] {
				t.Errorf("%s: no alternate key %s(%s) in deploy/dataverse/schema.json", filepath.Base(m), op.Object, op.KeyField)
			}
		}
		for _, name := range regexp.MustCompile(`\bnew_[a-z_]+\b`).FindAllString(string(data), -1) {
			found := false
			for c := range cols {
				if strings.HasSuffix(c, "."+name) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s uses %s, which deploy/dataverse/schema.json does not create", filepath.Base(m), name)
			}
		}
	}
}

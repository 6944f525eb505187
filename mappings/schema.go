package mappings

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Schemas describe CRM objects as saved from the org, for lint: which
// fields exist and which can be upsert keys. Two formats are read:
//   - Salesforce describe (GET /services/data/vXX.X/sobjects/Account/describe),
//     or a JSON list of them;
//   - Dataverse entity metadata (GET /api/data/v9.2/EntityDefinitions(LogicalName='contact')?$expand=Attributes,Keys),
//     or an OData collection {"value":[...]} of them.
type Schemas struct {
	objects map[string]*objectSchema // by lower-case name
}

type objectSchema struct {
	name      string
	source    string            // file it came from
	fields    map[string]string // lower-case name → name as written
	keys      map[string]bool   // lower-case names of external id / alternate key fields
	dataverse bool
}

type sfDescribe struct {
	Name   string `json:"name"`
	Fields []struct {
		Name       string `json:"name"`
		ExternalID bool   `json:"externalId"`
		IDLookup   bool   `json:"idLookup"`
		Unique     bool   `json:"unique"`
	} `json:"fields"`
}

type dvEntity struct {
	LogicalName string `json:"LogicalName"`
	Attributes  []struct {
		LogicalName string `json:"LogicalName"`
		SchemaName  string `json:"SchemaName"`
	} `json:"Attributes"`
	Keys []struct {
		KeyAttributes []string `json:"KeyAttributes"`
	} `json:"Keys"`
}

// NewSchemas returns an empty set of schemas; Add fills it.
func NewSchemas() *Schemas { return &Schemas{objects: map[string]*objectSchema{}} }

// LoadSchemas reads schema files.
func LoadSchemas(paths []string) (*Schemas, error) {
	s := NewSchemas()
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("schema %s: cannot read: %s", p, errText(err))
		}
		if err := s.Add(p, data); err != nil {
			return nil, fmt.Errorf("schema %s: %w", p, err)
		}
	}
	return s, nil
}

// Add reads one metadata document, named source in what it reports: a
// Salesforce describe result or a JSON list of them, Dataverse entity
// metadata or an OData collection of it. A later document describing an
// object already known replaces it.
func (s *Schemas) Add(source string, data []byte) error { return s.add(source, data) }

func (s *Schemas) add(file string, data []byte) error {
	var probe struct {
		Fields      json.RawMessage `json:"fields"`
		LogicalName string          `json:"LogicalName"`
		Value       json.RawMessage `json:"value"`
	}
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "[") {
		var list []json.RawMessage
		if err := json.Unmarshal(data, &list); err != nil {
			return fmt.Errorf("not JSON: %v", err)
		}
		for _, item := range list {
			if err := s.add(file, item); err != nil {
				return err
			}
		}
		return nil
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	switch {
	case probe.Fields != nil:
		var d sfDescribe
		if err := json.Unmarshal(data, &d); err != nil || d.Name == "" {
			return fmt.Errorf("not a Salesforce describe result")
		}
		o := &objectSchema{name: d.Name, source: file, fields: map[string]string{}, keys: map[string]bool{}}
		for _, f := range d.Fields {
			o.fields[strings.ToLower(f.Name)] = f.Name
			if f.ExternalID || f.Name == "Id" {
				o.keys[strings.ToLower(f.Name)] = true
			}
		}
		s.objects[strings.ToLower(d.Name)] = o
	case probe.LogicalName != "":
		var d dvEntity
		if err := json.Unmarshal(data, &d); err != nil {
			return fmt.Errorf("not Dataverse entity metadata")
		}
		o := &objectSchema{name: d.LogicalName, source: file, fields: map[string]string{}, keys: map[string]bool{}, dataverse: true}
		for _, a := range d.Attributes {
			o.fields[strings.ToLower(a.LogicalName)] = a.LogicalName
			if a.SchemaName != "" {
				o.fields[strings.ToLower(a.SchemaName)] = a.LogicalName
			}
		}
		for _, k := range d.Keys {
			if len(k.KeyAttributes) == 1 {
				o.keys[strings.ToLower(k.KeyAttributes[0])] = true
			}
		}
		o.keys[d.LogicalName+"id"] = true
		s.objects[strings.ToLower(d.LogicalName)] = o
	case probe.Value != nil:
		var list []json.RawMessage
		if err := json.Unmarshal(probe.Value, &list); err != nil {
			return fmt.Errorf("value is not a list of entity definitions")
		}
		for _, item := range list {
			if err := s.add(file, item); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("neither a Salesforce describe result (fields) nor Dataverse entity metadata (LogicalName)")
	}
	return nil
}

// Objects returns how many objects the schemas describe.
func (s *Schemas) Objects() int { return len(s.objects) }

// SchemaCheck is one check of a mapping target against a CRM schema:
// lint --schema reports the failed ones as problems, crm check prints
// them all as a checklist. It names fields, never values.
type SchemaCheck struct {
	File      string
	Line, Col int
	Mapping   string
	Op        string
	Object    string
	Field     string // "" for a check of the object itself
	Check     string // what was checked: see the Check* constants
	OK        bool
	Msg       string // what is wrong and what to do, when !OK
}

// What a SchemaCheck checked.
const (
	CheckField = "field present" // the target field exists
	CheckKey   = "upsert key"    // the key field is an External ID (Salesforce) or alternate key (Dataverse)
)

// checkSchema checks a mapping's targets against the schemas: target
// fields the schema does not know and key fields that are not external ids
// are problems. Objects without a schema are skipped.
func (l *loader) checkSchema(m *Mapping) {
	s := l.opts.Schemas
	report := func(c SchemaCheck) {
		c.File, c.Mapping = l.file, m.Name
		if l.opts.OnSchemaCheck != nil {
			l.opts.OnSchemaCheck(c)
		}
		if !c.OK {
			l.add(c.Line, c.Col, "%s", c.Msg)
		}
	}
	for _, op := range m.ops {
		o := s.objects[strings.ToLower(op.Object)]
		if o == nil {
			continue
		}
		c := SchemaCheck{Line: op.keyLine, Col: op.keyCol, Op: op.ID, Object: o.name, Field: op.KeyField, Check: CheckKey, OK: o.keys[strings.ToLower(op.KeyField)]}
		if !c.OK {
			if _, exists := o.fields[strings.ToLower(op.KeyField)]; !exists {
				c.Check = CheckField
				c.Msg = fmt.Sprintf("op %s: key_field %s is not a field of %s (schema %s)", op.ID, op.KeyField, o.name, o.source)
			} else if o.dataverse {
				c.Msg = fmt.Sprintf("op %s: key_field %s of %s is not an alternate key (schema %s); define a key on it", op.ID, op.KeyField, o.name, o.source)
			} else {
				c.Msg = fmt.Sprintf("op %s: key_field %s of %s is not an External ID field (schema %s); mark it External ID", op.ID, op.KeyField, o.name, o.source)
			}
		}
		report(c)
		for _, f := range op.fields {
			fname := strings.TrimSuffix(f.name, "@odata.bind")
			c := SchemaCheck{Line: f.line, Col: f.col, Op: op.ID, Object: o.name, Field: f.name, Check: CheckField}
			_, c.OK = o.fields[strings.ToLower(fname)]
			if !c.OK {
				c.Msg = fmt.Sprintf("op %s: %s has no field %s (schema %s)", op.ID, o.name, f.name, o.source)
			}
			report(c)
		}
	}
}

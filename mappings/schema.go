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

// LoadSchemas reads schema files.
func LoadSchemas(paths []string) (*Schemas, error) {
	s := &Schemas{objects: map[string]*objectSchema{}}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("schema %s: cannot read: %s", p, errText(err))
		}
		if err := s.add(p, data); err != nil {
			return nil, fmt.Errorf("schema %s: %w", p, err)
		}
	}
	return s, nil
}

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

// checkSchema reports target fields the schema does not know and key
// fields that are not external ids. Objects without a schema are skipped.
func (l *loader) checkSchema(m *Mapping) {
	s := l.opts.Schemas
	for _, op := range m.ops {
		o := s.objects[strings.ToLower(op.Object)]
		if o == nil {
			continue
		}
		if !o.keys[strings.ToLower(op.KeyField)] {
			if _, exists := o.fields[strings.ToLower(op.KeyField)]; !exists {
				l.add(op.line, 0, "op %s: key_field %s is not a field of %s (schema %s)", op.ID, op.KeyField, o.name, o.source)
			} else if o.dataverse {
				l.add(op.line, 0, "op %s: key_field %s of %s is not an alternate key (schema %s); define a key on it", op.ID, op.KeyField, o.name, o.source)
			} else {
				l.add(op.line, 0, "op %s: key_field %s of %s is not an External ID field (schema %s); mark it External ID", op.ID, op.KeyField, o.name, o.source)
			}
		}
		for _, f := range op.fields {
			fname := strings.TrimSuffix(f.name, "@odata.bind")
			if _, ok := o.fields[strings.ToLower(fname)]; !ok {
				l.add(op.line, 0, "op %s: %s has no field %s (schema %s)", op.ID, o.name, f.name, o.source)
			}
		}
	}
}

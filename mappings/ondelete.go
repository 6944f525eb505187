package mappings

import (
	"strings"

	"go.yaml.in/yaml/v3"
)

// A FHIR mapping's on_delete: says what becomes of the CRM record of a
// resource the EHR deleted:
//
//	on_delete:
//	  op: encounter            # the op whose record the resource is
//	  action: update           # update (default): set fields; or delete
//	  fields:                  # literal values, for update
//	    Status: Cancelled
//
// The record is found by the key that op had when the resource was last
// applied (Addresses), since the deleted resource itself can no longer
// be read.

// deleteRule is a compiled on_delete.
type deleteRule struct {
	op     *opDef
	action string
	fields []Field
}

// Address is where a mapping put a resource's own CRM record.
type Address struct {
	Mapping  string `json:"mapping"`
	Object   string `json:"object"`
	KeyField string `json:"key_field"`
	Key      string `json:"key"`
}

func (l *loader) onDelete(m *Mapping, n *yaml.Node, byID map[string]*opDef) {
	if !m.fhir {
		l.addAt(n, "on_delete is for FHIR mappings (when: {fhir: ...}): HL7 v2 says deletes with its own triggers")
		return
	}
	k := l.entries(n, []string{"op", "action", "fields"}, "on_delete")
	r := &deleteRule{action: Update}
	if v := k["op"]; v == nil {
		l.addAt(n, "on_delete needs op: the id of the op whose record the resource is")
	} else if id, ok := l.str(v, "op"); ok {
		od, found := byID[id]
		switch {
		case !found:
			l.addAt(v, "on_delete: no op with id %q in this mapping", id)
		case od.foreach != nil:
			l.addAt(v, "on_delete: op %q repeats (foreach), so it is not one record", id)
		default:
			r.op = od
		}
	}
	if v := k["action"]; v != nil {
		if s, ok := l.str(v, "action"); ok {
			if s != Update && s != Delete {
				l.addAt(v, "on_delete action %q: use update (set fields, such as a status) or delete", s)
			}
			r.action = s
		}
	}
	if f := k["fields"]; f != nil {
		if f.Kind != yaml.MappingNode {
			l.addAt(f, "on_delete fields must be a mapping of field: literal value")
		} else {
			for i := 0; i+1 < len(f.Content); i += 2 {
				fk, fv := f.Content[i], deref(f.Content[i+1])
				v, err := yamlValue(fv)
				if err != nil || v.Kind == Ref || fv.Kind == yaml.ScalarNode && fv.Tag == "!!str" && strings.HasPrefix(fv.Value, "=") {
					l.addAt(fv, "on_delete field %s: give a literal value (the deleted resource cannot be read)", fk.Value)
					continue
				}
				r.fields = append(r.fields, Field{Name: fk.Value, Value: v})
			}
		}
	}
	switch {
	case r.action == Update && len(r.fields) == 0:
		l.addAt(n, "on_delete with action update needs fields: the values that mark the record inactive")
	case r.action == Delete && len(r.fields) > 0:
		l.addAt(n, "on_delete with action delete takes no fields")
	}
	m.onDelete = r
}

// Addresses returns, for each accepting mapping with on_delete, the CRM
// record of the input resource (its op's object and key), to be kept
// until the resource is deleted.
func (s *Set) Addresses(in Input) ([]Address, error) {
	var out []Address
	for _, m := range s.Mappings {
		if m.onDelete == nil || m.onDelete.op == nil || !m.Accepts(in) {
			continue
		}
		e := m.newEnv(in)
		v, err := e.refKey(m.onDelete.op)
		if err != nil {
			return nil, &Error{Mapping: m.Name, Field: "on_delete", Err: err}
		}
		if key := textOf(v); key != "" {
			od := m.onDelete.op
			out = append(out, Address{Mapping: m.Name, Object: od.Object, KeyField: od.KeyField, Key: key})
		}
	}
	return out, nil
}

// DeleteOps returns the ops that apply the on_delete rules of the
// mappings that recorded addrs; a mapping that is gone or has no
// on_delete any more gives none. The record is found by the key it was
// written with, through the key field the op has now: an address recorded
// before the op moved to another key field of the same object (the
// Health Cloud set's SourceSystemIdentifier → EHR_*_Key__c, whose upgrade
// copies the key into the new field) is looked up by the new field,
// which, unlike the old one, Salesforce accepts as a key.
func (s *Set) DeleteOps(addrs []Address) []Op {
	var out []Op
	for _, a := range addrs {
		for _, m := range s.Mappings {
			if m.Name != a.Mapping || m.onDelete == nil || m.onDelete.op == nil {
				continue
			}
			keyField := a.KeyField
			if od := m.onDelete.op; strings.EqualFold(od.Object, a.Object) && od.KeyField != "" {
				keyField = od.KeyField
			}
			op := Op{Mapping: m.Name, Object: a.Object, Action: m.onDelete.action, KeyField: keyField, Key: a.Key}
			if op.Action == Update {
				op.Fields = append([]Field(nil), m.onDelete.fields...)
			}
			out = append(out, op)
		}
	}
	return out
}

// HasOnDelete reports whether any mapping of the set says what to do
// when a resource is deleted.
func (s *Set) HasOnDelete() bool {
	for _, m := range s.Mappings {
		if m.onDelete != nil {
			return true
		}
	}
	return false
}

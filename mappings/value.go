package mappings

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Kind is what a Value holds.
type Kind uint8

// Value kinds. The zero Value is Absent.
const (
	// Absent means there is nothing to write: the target field is left
	// untouched (an empty HL7 field, a FHIR element that is not there).
	Absent Kind = iota
	// Null clears the target field (the HL7 explicit null "").
	Null
	String
	// Number holds a decimal number in canonical text form.
	Number
	Bool
	// Ref points at another record by its external key.
	Ref
)

var kindNames = [...]string{Absent: "absent", Null: "null", String: "string", Number: "number", Bool: "bool", Ref: "ref"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is the result of an expression and the value of a target field.
type Value struct {
	Kind Kind
	// Text is the string, the number's decimal text, or "true"/"false".
	Text string
	// Ref is set for Kind Ref.
	Ref *Reference
}

// Reference identifies a record in the target system by its external key,
// so that each connector can render it natively: a Salesforce relationship
// by external id, a Dataverse @odata.bind with an alternate key.
type Reference struct {
	Object   string `json:"object"`
	KeyField string `json:"key_field"`
	Key      string `json:"key"`
}

// Str returns a string value.
func Str(s string) Value { return Value{Kind: String, Text: s} }

// Num returns a number value from its decimal text.
func Num(s string) Value { return Value{Kind: Number, Text: s} }

// Boolean returns a bool value.
func Boolean(b bool) Value { return Value{Kind: Bool, Text: strconv.FormatBool(b)} }

// NullValue is the value that clears a target field.
var NullValue = Value{Kind: Null}

// IsSet reports whether the value writes something (null included).
func (v Value) IsSet() bool { return v.Kind != Absent }

// empty reports whether the value is absent, null or the empty string:
// what "first non-empty" and default() skip.
func (v Value) empty() bool {
	return v.Kind == Absent || v.Kind == Null || (v.Kind == String && v.Text == "")
}

// truthy is how conditions read a value: true, or any non-empty value
// that is not false.
func (v Value) truthy() bool {
	if v.Kind == Bool {
		return v.Text == "true"
	}
	return !v.empty()
}

// MarshalJSON renders the value as the ops' JSON shows it: a string,
// number, boolean, null, or {"ref":{...}}. Absent values are never
// rendered (their fields are left out).
func (v Value) MarshalJSON() ([]byte, error) {
	switch v.Kind {
	case Null, Absent:
		return []byte("null"), nil
	case String:
		return json.Marshal(v.Text)
	case Number, Bool:
		return []byte(v.Text), nil
	case Ref:
		return json.Marshal(struct {
			Ref *Reference `json:"ref"`
		}{v.Ref})
	}
	return nil, fmt.Errorf("mappings: cannot render a %s value", v.Kind)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (v *Value) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*v = NullValue
	case string(b) == "true" || string(b) == "false":
		*v = Value{Kind: Bool, Text: string(b)}
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = Str(s)
	case len(b) > 0 && b[0] == '{':
		var r struct {
			Ref *Reference `json:"ref"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil || r.Ref == nil {
			return fmt.Errorf(`an object value must be {"ref":{"object":...,"key_field":...,"key":...}}`)
		}
		*v = Value{Kind: Ref, Ref: r.Ref}
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("not a JSON value")
		}
		*v = Num(canonicalNumber(n.String()))
	}
	return nil
}

// Equal reports whether two values are the same.
func (v Value) Equal(w Value) bool {
	if v.Kind != w.Kind {
		return false
	}
	if v.Kind == Ref {
		return *v.Ref == *w.Ref
	}
	if v.Kind == Number {
		return canonicalNumber(v.Text) == canonicalNumber(w.Text)
	}
	return v.Text == w.Text
}

// String renders the value for diffs and messages.
func (v Value) String() string {
	b, err := v.MarshalJSON()
	if err != nil {
		return "<" + v.Kind.String() + ">"
	}
	return string(b)
}

// canonicalNumber trims a decimal's redundant characters: "+007.50" is
// "7.5". Text that is not a number is returned unchanged.
func canonicalNumber(s string) string {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if idx := bytes.IndexAny([]byte(s), "eE"); idx >= 0 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	intPart, frac := s, ""
	if i := bytes.IndexByte([]byte(s), '.'); i >= 0 {
		intPart, frac = s[:i], s[i+1:]
	}
	for len(intPart) > 1 && intPart[0] == '0' {
		intPart = intPart[1:]
	}
	if intPart == "" {
		intPart = "0"
	}
	for len(frac) > 0 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	out := intPart
	if frac != "" {
		out += "." + frac
	}
	if neg && out != "0" {
		out = "-" + out
	}
	return out
}

// Field is one target field of an op.
type Field struct {
	Name  string
	Value Value
}

// Op is one write a mapping produces for the target system: an upsert,
// update or delete of one record identified by its external key.
type Op struct {
	Mapping  string
	Object   string
	Action   string
	KeyField string
	Key      string
	// Fields are in the order the mapping lists them. Absent values are
	// left out; a Null clears its field.
	Fields []Field
}

// Field returns the value of the named field and whether it is set.
func (o *Op) Field(name string) (Value, bool) {
	for _, f := range o.Fields {
		if f.Name == name {
			return f.Value, true
		}
	}
	return Value{}, false
}

// Actions an op can take.
const (
	Upsert = "upsert" // create the record, or update it when its key exists
	Update = "update" // update the record with this key; never create one
	Delete = "delete" // delete the record with this key, if there is one
	// Segment is the action of every op of an hl7 output mapping: it
	// writes one segment of the message being built (MSH: the header).
	Segment = "segment"
)

// Outputs a mapping can have (output: in the file).
const (
	OutputCRM = "crm" // ops are CRM records (the default)
	OutputHL7 = "hl7" // ops are the segments of an HL7 message ehrbridge sends
)

// MarshalJSON writes the op as `ehrbridge map` prints it, fields in the
// mapping's order.
func (o Op) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"mapping":`)
	writeJSONString(&b, o.Mapping)
	b.WriteString(`,"object":`)
	writeJSONString(&b, o.Object)
	b.WriteString(`,"action":`)
	writeJSONString(&b, o.Action)
	if o.Action != Segment {
		b.WriteString(`,"key_field":`)
		writeJSONString(&b, o.KeyField)
		b.WriteString(`,"key":`)
		writeJSONString(&b, o.Key)
	}
	b.WriteString(`,"fields":{`)
	for i, f := range o.Fields {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, f.Name)
		b.WriteByte(':')
		v, err := f.Value.MarshalJSON()
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteString("}}")
	return b.Bytes(), nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s)
	b.Write(q)
}

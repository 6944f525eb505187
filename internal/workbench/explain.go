package workbench

import (
	"encoding/json"
	"fmt"

	"github.com/ehrbridge/ehrbridge/mappings"
)

// Explanation is how a mapping set maps the messages of one input (an
// HL7 file may hold several; a FHIR Bundle's entries are mapped in turn).
type Explanation struct {
	Inputs []InputExplanation `json:"inputs"`
}

// InputExplanation is how the set maps one message or resource.
type InputExplanation struct {
	// Index is the message's 1-based place in the input.
	Index int `json:"index"`
	// Type is the HL7 message type ("ADT^A01") or the FHIR resourceType.
	Type string `json:"type"`
	// Lane is the lane key the set's lane: gives the message; "" when no
	// accepting mapping defines lane:, so that the source's default
	// (PID-3, first repetition) applies.
	Lane string `json:"lane,omitempty"`
	// LaneError says why lane: could not be evaluated.
	LaneError string `json:"lane_error,omitempty"`
	// Accepted is false when no mapping of the set accepts the message.
	Accepted bool `json:"accepted"`
	// Error is why mapping failed (it names mapping, op and field, never a
	// value): the pipeline would dead-letter the message with it.
	Error string `json:"error,omitempty"`
	// Warnings are the fields left out with a warning, as
	// "mapping/op.field: text".
	Warnings []string `json:"warnings,omitempty"`
	// Mappings are the accepting mappings, in set order.
	Mappings []MappingExplanation `json:"mappings,omitempty"`
}

// MappingExplanation is the ops one accepting mapping made.
type MappingExplanation struct {
	Name string          `json:"name"`
	File string          `json:"file"`
	Ops  []OpExplanation `json:"ops"`
	// Error is where this mapping failed; Ops holds the ops before it.
	Error string `json:"error,omitempty"`
}

// OpExplanation is one op, or one op skipped by its if:.
type OpExplanation struct {
	// Number is the op's place among the message's ops, counted over all
	// accepting mappings: the "op 2" of a dead-letter reason; 0 for a
	// skipped op.
	Number int    `json:"number,omitempty"`
	ID     string `json:"id"`               // the op's id: in the mapping file
	Repeat int    `json:"repeat,omitempty"` // 1-based repeat of a foreach op
	// Skipped is set when the op's if: was false; If is that expression.
	Skipped  bool   `json:"skipped,omitempty"`
	If       string `json:"if,omitempty"`
	Action   string `json:"action,omitempty"`
	Object   string `json:"object,omitempty"`
	KeyField string `json:"key_field,omitempty"`
	Key      string `json:"key,omitempty"`
	// KeyExpr is the expression the key came from.
	KeyExpr string             `json:"key_expr,omitempty"`
	Fields  []FieldExplanation `json:"fields,omitempty"`
}

// FieldExplanation is one target field of an op, written or left out.
type FieldExplanation struct {
	Name string `json:"name"`
	Expr string `json:"expr"`
	// Value is the value written, as JSON text ("\"DOE\"", "42", "null");
	// empty when the field is left out.
	Value string `json:"value,omitempty"`
	// LeftOut says why the field is not written: "no value", or the
	// warning that dropped it (a date the target cannot hold).
	LeftOut string `json:"left_out,omitempty"`
}

// Explain maps every message of raw (HL7 v2, or FHIR JSON: a resource or
// a Bundle) with set, as `ehrbridge map --explain` does, without writing
// anything anywhere. Its error is for input it cannot read; a message the
// set fails on is explained up to the failure, with InputExplanation.Error.
func Explain(set *mappings.Set, raw []byte) (*Explanation, error) {
	if len(raw) > MaxInput {
		return nil, fmt.Errorf("the input is %d bytes; the most the workbench maps is %d", len(raw), MaxInput)
	}
	if set == nil {
		return nil, fmt.Errorf("no mapping set")
	}
	inputs, err := mappings.ParseInput(raw)
	if err != nil {
		return nil, err
	}
	x := &Explanation{Inputs: make([]InputExplanation, 0, len(inputs))}
	for i, in := range inputs {
		ie := ExplainInput(set, in)
		ie.Index = i + 1
		x.Inputs = append(x.Inputs, ie)
	}
	return x, nil
}

// ExplainInput explains one parsed input (Index left 0). Set in.Patients
// to resolve FHIR patient_key() references as the daemon would.
func ExplainInput(set *mappings.Set, in mappings.Input) InputExplanation {
	ie := InputExplanation{Type: InputType(in)}
	res, err := set.Map(in)
	if err != nil {
		ie.Error = err.Error()
	}
	for _, w := range res.Warnings {
		ie.Warnings = append(ie.Warnings, w.String())
	}
	if lane, err := set.Lane(in); err != nil {
		ie.LaneError = err.Error()
	} else {
		ie.Lane = lane
	}
	n := 0
	for _, m := range set.Mappings {
		if !m.Accepts(in) {
			continue
		}
		ie.Accepted = true
		me := MappingExplanation{Name: m.Name, File: m.File, Ops: []OpExplanation{}}
		exps, err := m.Explain(in)
		if err != nil {
			me.Error = err.Error()
		}
		for _, x := range exps {
			op := OpExplanation{ID: x.OpID, Repeat: x.Repeat, Skipped: x.Skipped, If: x.If}
			if !x.Skipped {
				n++
				op.Number = n
				op.Action, op.Object = x.Op.Action, x.Op.Object
				if x.Op.Action != mappings.Segment {
					op.KeyField, op.Key, op.KeyExpr = x.Op.KeyField, x.Op.Key, x.Key
				}
				for _, f := range x.Fields {
					fe := FieldExplanation{Name: f.Name, Expr: f.Expr}
					switch {
					case f.Warning != "":
						fe.LeftOut = f.Warning
					case !f.Value.IsSet():
						fe.LeftOut = "no value"
					default:
						fe.Value = f.Value.String()
					}
					op.Fields = append(op.Fields, fe)
				}
			}
			me.Ops = append(me.Ops, op)
		}
		ie.Mappings = append(ie.Mappings, me)
	}
	return ie
}

// InputType names an input: the HL7 message type with its trigger
// ("ADT^A01") or the FHIR resourceType.
func InputType(in mappings.Input) string {
	if in.HL7 != nil {
		h := in.HL7.Header()
		if h.Trigger != "" {
			return h.Type + "^" + h.Trigger
		}
		return h.Type
	}
	var r struct {
		ResourceType string `json:"resourceType"`
	}
	_ = json.Unmarshal(in.FHIR, &r)
	return r.ResourceType
}

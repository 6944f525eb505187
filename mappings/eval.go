package mappings

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofhir/fhirpath"
	"github.com/gofhir/fhirpath/types"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// Set is a loaded set of mappings. It is immutable and safe for
// concurrent use; reloading builds a new Set.
type Set struct {
	Mappings []*Mapping
}

// Input is one message to map: an HL7 v2 message or one FHIR resource
// (JSON).
type Input struct {
	HL7  *hl7.Message
	FHIR []byte
	// Patients resolves patient_key(reference) for FHIR input; nil gives
	// the reference's logical id.
	Patients PatientResolver
}

// Result is what mapping one input produced.
type Result struct {
	// Mappings names the mappings that accepted the input, in set order.
	Mappings []string
	// Ops are their ops, mapping by mapping, in the order written.
	Ops []Op
	// Warnings are the fields left out of Ops because their value could
	// not be written (a malformed optional timestamp, a date more precise
	// than its source): the input is mapped, with warnings.
	Warnings []Warning
}

// Warning is one field a mapping left out instead of failing the input.
// Text names the problem and never quotes the value (it reaches logs and
// the checkpoint log's reasons).
type Warning struct {
	Mapping, Op, Field string
	// Repeat is the 1-based repeat of a foreach op; 0 otherwise.
	Repeat int
	Text   string
}

// String renders the warning as "mapping/op.field: text", with the
// repeat of a foreach op as "mapping/op[2].field: text".
func (w Warning) String() string {
	op := w.Op
	if w.Repeat > 0 {
		op += "[" + strconv.Itoa(w.Repeat) + "]"
	}
	return w.Mapping + "/" + op + "." + w.Field + ": " + w.Text
}

// Accepts reports whether the mapping applies to the input.
func (m *Mapping) Accepts(in Input) bool {
	rt := ""
	if m.fhir && in.FHIR != nil {
		rt = resourceType(in.FHIR)
	}
	return m.accepts(in, rt)
}

// accepts is Accepts with a FHIR input's resource type already read.
func (m *Mapping) accepts(in Input, rt string) bool {
	if m.fhir {
		if in.FHIR == nil {
			return false
		}
		for _, r := range m.fhirRes {
			if r == rt {
				return true
			}
		}
		return false
	}
	if in.HL7 == nil {
		return false
	}
	h := in.HL7.Header()
	for _, t := range m.hl7Types {
		if t.typ != h.Type {
			continue
		}
		if t.triggers == nil {
			return true
		}
		for _, tr := range t.triggers {
			if tr == h.Trigger {
				return true
			}
		}
	}
	return false
}

// resourceType reads a FHIR resource's resourceType.
func resourceType(res []byte) string {
	var r struct {
		ResourceType string `json:"resourceType"`
	}
	if json.Unmarshal(res, &r) != nil {
		return ""
	}
	return r.ResourceType
}

// Map runs every mapping that accepts the input. A failure in any op
// fails the whole input with an *Error (nothing is half-mapped).
func (s *Set) Map(in Input) (Result, error) {
	var res Result
	rt := ""
	if in.FHIR != nil {
		rt = resourceType(in.FHIR)
	}
	for _, m := range s.Mappings {
		if !m.accepts(in, rt) {
			continue
		}
		ops, warns, err := m.MapWarnings(in)
		if err != nil {
			return Result{}, err
		}
		res.Mappings = append(res.Mappings, m.Name)
		res.Ops = append(res.Ops, ops...)
		res.Warnings = append(res.Warnings, warns...)
	}
	return res, nil
}

// Lane returns the lane key (patient identity) for the input from the
// first accepting mapping that defines lane:, else "" (the caller's
// default applies).
func (s *Set) Lane(in Input) (string, error) {
	for _, m := range s.Mappings {
		if m.lane == nil || !m.Accepts(in) {
			continue
		}
		e := m.newEnv(in)
		v, err := e.evalKey(m.lane)
		if err != nil {
			return "", &Error{Mapping: m.Name, Field: "lane", Err: err}
		}
		return textOf(v), nil
	}
	return "", nil
}

// env is the evaluation context of one input.
type env struct {
	m    *Mapping
	zone *time.Location
	// HL7: the message, its segments, and the current repeat: a segment
	// (cur ≥ 0) and/or a field repetition.
	msg      *hl7.Message
	segs     []*hl7.Segment
	cur      int
	field    *hl7.Path
	fieldSeg *hl7.Segment
	repVal   hl7.Value
	index    int // 1-based repeat number; 0 outside foreach
	// FHIR: the resource and the current item, and the resolver of
	// patient references.
	patients PatientResolver
	res      []byte
	resColl  types.Collection
	item     []byte
	// keys caches the keys of ops that others refer to.
	keys map[*opDef]Value
	// explain, when set, collects how each op came about (Explain).
	explain *[]Explained
	// opKey is the key of the op whose fields are being evaluated, as
	// sent (opkey()); "" elsewhere.
	opKey string
	// keyMode is set while a key is evaluated (an op's key, the lane, the
	// key of a ref): values read from the input that are blank (only
	// whitespace, or the HL7 null "") are absent there, and so are the
	// concat() and key() results with such a part (see evalKey).
	keyMode bool
	// target is the target field being evaluated, "" outside fields:
	// only there may a value that cannot be written be left out with a
	// warning (see evalStampAs) instead of failing the input.
	target string
	// warnings collects those, for the field being evaluated; out, when
	// set, collects them for the input.
	warnings []string
	out      *[]Warning
}

// blank reports whether a value is nothing in a key: absent, null, or
// text that is empty or only whitespace.
func blank(v Value) bool {
	switch v.Kind {
	case Absent, Null:
		return true
	case String:
		return strings.TrimSpace(v.Text) == ""
	}
	return false
}

// leaf applies key mode to a value read from the input: a blank value is
// absent in a key, and text is escaped with hl7.KeyEscape ("\" as \E\,
// "^" as \S\, "|" as \F\), so that the "|" and "^" that keys and
// namespaces are joined with never come from a value: authority "A" with
// MRN "B|C" and authority "A|B" with MRN "C" are "A|B\F\C" and
// "A\F\B|C". Text without those characters is kept as it is.
func (e *env) leaf(v Value) Value {
	if !e.keyMode || v.Kind == Bool || v.Kind == Number {
		return v
	}
	if blank(v) {
		return Value{}
	}
	if v.Kind == String {
		v.Text = hl7.KeyEscape(v.Text)
	}
	return v
}

// evalKey evaluates an expression in key position: blank parts are
// absent, and a blank result is absent.
func (e *env) evalKey(x *expression) (Value, error) {
	saved, savedTarget := e.keyMode, e.target
	e.keyMode, e.target = true, ""
	defer func() { e.keyMode, e.target = saved, savedTarget }()
	v, err := x.eval(e)
	if err != nil || blank(v) {
		return Value{}, err
	}
	return v, nil
}

// warn records that the current field is left out, and why (never the
// value). It reports false outside a field, where the caller must fail.
func (e *env) warn(text string) bool {
	if e.target == "" || e.keyMode {
		return false
	}
	e.warnings = append(e.warnings, text)
	return true
}

func (m *Mapping) newEnv(in Input) *env {
	e := &env{m: m, zone: m.zone, msg: in.HL7, cur: -1, res: in.FHIR, patients: in.Patients}
	if in.HL7 != nil {
		e.segs = in.HL7.Segments()
	}
	return e
}

// segment resolves the segment a path reads, given the current repeat: the
// repeat's own segment; else the nearest segment with that id before it
// (its group's header, such as the OBR above an OBX); else the first in
// the message. An explicit occurrence (OBX[2]-5) is taken as written.
func (e *env) segment(p hl7.Path) *hl7.Segment {
	if p.SegmentRep > 0 {
		return e.msg.Segment(p.Segment, p.SegmentRep)
	}
	if e.cur >= 0 {
		for i := e.cur; i >= 0; i-- {
			if e.segs[i].Name() == p.Segment {
				return e.segs[i]
			}
		}
	}
	if e.fieldSeg != nil && e.fieldSeg.Name() == p.Segment {
		return e.fieldSeg
	}
	return e.msg.Segment(p.Segment, 1)
}

// fhirEval evaluates a FHIRPath on the current item or the resource, with
// %resource bound to the resource.
func (e *env) fhirEval(x *fhirpath.Expression) (col types.Collection, err error) {
	// The FHIRPath engine is third-party code run on outside input: a
	// panic in it fails this input, not the daemon.
	defer func() {
		if r := recover(); r != nil {
			col, err = nil, fmt.Errorf("FHIRPath evaluation failed (%T)", r)
		}
	}()
	if e.res == nil {
		return nil, nil
	}
	if e.resColl == nil {
		e.resColl = types.Collection{types.NewObjectValue(e.res)}
	}
	src := e.res
	if e.item != nil {
		src = e.item
	}
	return x.EvaluateWithOptions(src, fhirpath.WithVariable("resource", e.resColl), fhirpath.WithMaxDepth(64), fhirpath.WithTimeout(2*time.Second))
}

// refKey evaluates (once) the key of an op another op refers to, outside
// any repeat.
func (e *env) refKey(op *opDef) (Value, error) {
	if v, ok := e.keys[op]; ok {
		return v, nil
	}
	top := *e
	top.cur, top.field, top.fieldSeg, top.repVal, top.index, top.item, top.explain = -1, nil, nil, hl7.Value{}, 0, nil, nil
	top.target, top.warnings, top.keyMode = "", nil, false
	// A reference to an op that its if: skips is no reference.
	if op.cond != nil {
		c, err := op.cond.eval(&top)
		if err != nil {
			return Value{}, fmt.Errorf("if of op %s: %w", op.ID, err)
		}
		if !c.truthy() {
			e.cacheKey(op, Value{})
			return Value{}, nil
		}
	}
	v, err := top.evalKey(op.key)
	if err != nil {
		return Value{}, fmt.Errorf("key of op %s: %w", op.ID, err)
	}
	e.cacheKey(op, v)
	return v, nil
}

func (e *env) cacheKey(op *opDef, v Value) {
	if e.keys == nil {
		e.keys = map[*opDef]Value{}
	}
	e.keys[op] = v
}

// Map runs this mapping's ops on the input, which it must accept.
func (m *Mapping) Map(in Input) ([]Op, error) {
	ops, _, err := m.MapWarnings(in)
	return ops, err
}

// MapWarnings is Map that also returns the fields left out with a
// warning (see Result.Warnings).
func (m *Mapping) MapWarnings(in Input) ([]Op, []Warning, error) {
	var warns []Warning
	e := m.newEnv(in)
	e.out = &warns
	ops, err := m.mapEnv(e)
	if err != nil {
		return nil, nil, err
	}
	return ops, warns, nil
}

func (m *Mapping) mapEnv(e *env) ([]Op, error) {
	var ops []Op
	for _, od := range m.ops {
		var err error
		switch {
		case od.foreach == nil:
			ops, err = m.emit(e, od, ops)
		case od.foreach.segment != "":
			ops, err = m.eachSegment(e, od, ops)
		case od.foreach.field != nil:
			ops, err = m.eachRepetition(e, od, ops)
		default:
			ops, err = m.eachFHIR(e, od, ops)
		}
		if err != nil {
			return nil, err
		}
	}
	return ops, nil
}

func (m *Mapping) eachSegment(e *env, od *opDef, ops []Op) ([]Op, error) {
	if e.msg == nil {
		return ops, nil
	}
	n := 0
	defer func() { e.cur, e.index = -1, 0 }()
	for i, s := range e.segs {
		if s.Name() != od.foreach.segment {
			continue
		}
		n++
		if n > MaxRepeats {
			return nil, &Error{Mapping: m.Name, Op: od.ID, Field: "foreach", Err: errTooManyRepeats}
		}
		e.cur, e.index = i, n
		var err error
		if ops, err = m.emit(e, od, ops); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

func (m *Mapping) eachRepetition(e *env, od *opDef, ops []Op) ([]Op, error) {
	if e.msg == nil {
		return ops, nil
	}
	f := od.foreach.field
	seg := e.segment(*f)
	if seg == nil {
		return ops, nil
	}
	defer func() { e.field, e.fieldSeg, e.repVal, e.index = nil, nil, hl7.Value{}, 0 }()
	r := 0
	for rep := range seg.Repetitions(f.Field) {
		if r++; r > MaxRepeats {
			return nil, &Error{Mapping: m.Name, Op: od.ID, Field: "foreach", Err: errTooManyRepeats}
		}
		e.field, e.fieldSeg, e.repVal, e.index = f, seg, rep, r
		var err error
		if ops, err = m.emit(e, od, ops); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

// MaxRepeats bounds the repeats of one foreach op for one input: a
// corrupt message with 100,000 OBX segments or PID-3 repetitions fails
// with a reason instead of flooding the CRM.
const MaxRepeats = 10000

var errTooManyRepeats = fmt.Errorf("more than %d repeats; the message is refused rather than flooding the CRM", MaxRepeats)

func (m *Mapping) eachFHIR(e *env, od *opDef, ops []Op) ([]Op, error) {
	col, err := e.fhirEval(od.foreach.fhir.expr)
	if err != nil {
		return nil, &Error{Mapping: m.Name, Op: od.ID, Field: "foreach", Err: fmt.Errorf("FHIRPath %q could not be evaluated", od.foreach.src)}
	}
	defer func() { e.item, e.index = nil, 0 }()
	if len(col) > MaxRepeats {
		return nil, &Error{Mapping: m.Name, Op: od.ID, Field: "foreach", Err: errTooManyRepeats}
	}
	for i, v := range col {
		ov, ok := v.(*types.ObjectValue)
		if !ok {
			return nil, &Error{Mapping: m.Name, Op: od.ID, Field: "foreach", Err: fmt.Errorf("FHIRPath %q gives values, not elements to repeat over", od.foreach.src)}
		}
		e.item, e.index = ov.Data(), i+1
		if ops, err = m.emit(e, od, ops); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

// MaxKeyLength is the longest key an op may have: a Salesforce External
// ID text field holds 255 characters, and no Dataverse key column more.
// A longer key (long namespaces, a long code) fails the input with a
// reason rather than being cut, which could make two keys one.
const MaxKeyLength = 255

var errNoKey = errors.New("the key expression gave no value (use if: to skip inputs without one)")

// emit evaluates one op in the current context and appends it.
func (m *Mapping) emit(e *env, od *opDef, ops []Op) ([]Op, error) {
	fail := func(field string, err error) ([]Op, error) {
		if e.index > 0 {
			field = fmt.Sprintf("repeat %d %s", e.index, field)
		}
		return nil, &Error{Mapping: m.Name, Op: od.ID, Field: strings.TrimSpace(field), Err: err}
	}
	if od.cond != nil {
		v, err := od.cond.eval(e)
		if err != nil {
			return fail("if", err)
		}
		if !v.truthy() {
			if e.explain != nil {
				*e.explain = append(*e.explain, Explained{Op: Op{Mapping: m.Name, Object: od.Object, Action: od.Action, KeyField: od.KeyField},
					OpID: od.ID, Repeat: e.index, Skipped: true, If: od.cond.src})
			}
			return ops, nil
		}
	}
	op := Op{Mapping: m.Name, Object: od.Object, Action: od.Action, KeyField: od.KeyField}
	if od.key != nil { // nil only in an hl7 output mapping
		key, err := e.evalKey(od.key)
		if err != nil {
			return fail("key", err)
		}
		if key.empty() {
			return fail("key", errNoKey)
		}
		op.Key = textOf(key)
		if n := utf8.RuneCountInString(op.Key); n > MaxKeyLength {
			return fail("key", fmt.Errorf("the key is %d characters long; an external id holds at most %d", n, MaxKeyLength))
		}
	}
	if len(od.fields) > 0 {
		op.Fields = make([]Field, 0, len(od.fields))
	}
	var ex *Explained
	if e.explain != nil {
		ex = &Explained{OpID: od.ID, Repeat: e.index}
		if od.key != nil {
			ex.Key = od.key.src
		}
		if od.cond != nil {
			ex.If = od.cond.src
		}
	}
	savedKey := e.opKey
	e.opKey = op.Key
	defer func() { e.opKey = savedKey }()
	for _, f := range od.fields {
		e.target, e.warnings = f.name, nil
		v, err := f.expr.eval(e)
		e.target = ""
		if err != nil {
			return fail("field "+f.name, err)
		}
		warning := ""
		if len(e.warnings) > 0 {
			// The value could not be written: the field is left out.
			v, warning = Value{}, strings.Join(e.warnings, "; ")
			if e.out != nil {
				*e.out = append(*e.out, Warning{Mapping: m.Name, Op: od.ID, Field: f.name, Repeat: e.index, Text: warning})
			}
		}
		if v.Kind != Absent {
			op.Fields = append(op.Fields, Field{Name: f.name, Value: v})
		}
		if ex != nil {
			ex.Fields = append(ex.Fields, ExplainedField{Name: f.name, Expr: f.expr.src, Value: v, Warning: warning})
		}
	}
	if ex != nil {
		ex.Op = op
		*e.explain = append(*e.explain, *ex)
	}
	return append(ops, op), nil
}

// Explained tells how one op came about, for people writing mappings: the
// expressions behind the key and every field, with the values they gave,
// those left out (absent) included; or that the op was skipped by if:.
type Explained struct {
	Op      Op
	OpID    string
	Repeat  int // 1-based repeat of a foreach op; 0 otherwise
	Skipped bool
	If      string // the if: expression, if any
	Key     string // the key expression
	Fields  []ExplainedField
}

// ExplainedField is one target field, set or not.
type ExplainedField struct {
	Name  string
	Expr  string
	Value Value
	// Warning, when set, says why the field was left out (a date the
	// target cannot hold); it never quotes the value.
	Warning string
}

// Explain maps the input like Map and also reports how each op came about.
func (m *Mapping) Explain(in Input) ([]Explained, error) {
	var out []Explained
	e := m.newEnv(in)
	e.explain = &out
	if _, err := m.mapEnv(e); err != nil {
		return out, err
	}
	return out, nil
}

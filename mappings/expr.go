package mappings

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gofhir/fhirpath"
	"github.com/gofhir/fhirpath/types"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// node is a compiled expression.
type node interface {
	eval(e *env) (Value, error)
}

// literal is a constant.
type literal struct{ v Value }

func (n literal) eval(*env) (Value, error) { return n.v, nil }

// hl7Path reads a value from the message, in the context of the current
// repeat (see env.segment).
type hl7Path struct {
	p     hl7.Path
	text  bool // render formatting escapes (text())
	whole bool // read with all its parts (ns())
}

func (n *hl7Path) eval(e *env) (Value, error) {
	if e.msg == nil {
		return Value{}, nil
	}
	seg := e.segment(n.p)
	if seg == nil {
		return Value{}, nil
	}
	return n.evalIn(e, seg)
}

// evalIn reads the path in a given segment.
func (n *hl7Path) evalIn(e *env, seg *hl7.Segment) (Value, error) {
	p := n.p
	var v hl7.Value
	if e.field != nil && seg == e.fieldSeg && p.Field == e.field.Field && p.Rep == 0 {
		v = narrow(e.repVal, p.Component, p.Subcomponent)
	} else {
		v = seg.Get(p)
	}
	if n.whole {
		return hdValue(v, p), nil
	}
	return e.leaf(readHL7(v, p, n.text)), nil
}

// narrow addresses a component and subcomponent (0: not given) of a field
// repetition.
func narrow(v hl7.Value, comp, sub int) hl7.Value {
	if comp > 0 {
		v = v.Component(comp)
		if sub > 0 {
			v = v.Subcomponent(sub)
		}
	}
	return v
}

// readHL7 turns an addressed HL7 value into a Value: "" is null, empty is
// absent. A field or component read whole that has structure below it
// reads its first part: HL7 v2's rule for fields that gained components
// in a later version (an ID that became a CWE).
func readHL7(v hl7.Value, p hl7.Path, text bool) Value {
	if !v.IsLeaf() && !v.IsNull() {
		if p.Component == 0 {
			v = v.Component(1)
		} else if p.Subcomponent == 0 {
			v = v.Subcomponent(1)
		}
	}
	switch {
	case v.IsNull():
		return NullValue
	case v.IsEmpty():
		return Value{}
	case text:
		return Str(v.Text())
	}
	return Str(v.String())
}

// fhirPath evaluates a compiled FHIRPath on the resource or the current
// repeat, taking the first item of the result.
type fhirPath struct {
	src  string
	expr *fhirpath.Expression
}

func (n *fhirPath) eval(e *env) (Value, error) {
	col, err := e.fhirEval(n.expr)
	if err != nil {
		return Value{}, fmt.Errorf("FHIRPath %q could not be evaluated", n.src)
	}
	if len(col) == 0 {
		return Value{}, nil
	}
	v, err := fhirValue(col[0], n.src)
	return e.leaf(v), err
}

// fhirValue converts a FHIRPath item to a Value.
func fhirValue(v types.Value, src string) (Value, error) {
	switch v.Type() {
	case "Boolean":
		return Boolean(v.String() == "true"), nil
	case "Integer", "Decimal":
		return Num(canonicalNumber(v.String())), nil
	case "String", "Date", "DateTime", "Time":
		t := strings.TrimPrefix(v.String(), "@")
		if t == "" {
			// FHIR has no empty strings: "" is what a FHIRPath such as
			// join() makes of nothing, so it is nothing.
			return Value{}, nil
		}
		return Str(t), nil
	case "Quantity":
		return Str(v.String()), nil
	}
	if _, ok := v.(*types.ObjectValue); ok {
		return Value{}, fmt.Errorf("FHIRPath %q gives an element with parts, not a value; address one of its parts", src)
	}
	return Str(v.String()), nil
}

// name is a bare word in a function's name argument: a table, an op id,
// an object or field name. It has no value of its own.
type name struct{ s string }

func (n name) eval(*env) (Value, error) { return Str(n.s), nil }

// call is a function application.
type call struct {
	fn   *function
	args []node
	// Resolved at compile time by the function's check:
	table  map[string]string
	ref    *opDef
	refOb  string
	refKF  string
	zone   *time.Location
	pieces []formatPiece
	count  int
}

func (n *call) eval(e *env) (Value, error) { return n.fn.eval(e, n) }

// arg evaluates argument i.
func (n *call) arg(e *env, i int) (Value, error) { return n.args[i].eval(e) }

// expression is a compiled expression with its source for messages.
type expression struct {
	src  string
	root node
}

func (x *expression) eval(e *env) (Value, error) {
	if x == nil {
		return Value{}, nil
	}
	return x.root.eval(e)
}

// exprParser turns expression text into nodes. Positions in errors are
// byte offsets into the text, turned into columns by the caller.
type exprParser struct {
	src  string
	pos  int
	fhir bool // paths are FHIRPath, not HL7
	// tables are the mapping's code tables, by name.
	tables map[string]map[string]string
	errs   []exprError
	// calls collects the calls whose names are resolved after all ops are
	// known (ref).
	calls []*call
	// checkPath, when set, says what is wrong with an HL7 path's segment
	// or field ("" when nothing is).
	checkPath func(hl7.Path) string
}

type exprError struct {
	off int
	msg string
}

func (p *exprParser) fail(off int, format string, args ...any) {
	p.errs = append(p.errs, exprError{off, fmt.Sprintf(format, args...)})
}

// parseExpression parses a whole expression.
func parseExpression(src string, fhir bool, tables map[string]map[string]string, checkPath func(hl7.Path) string) (node, []*call, []exprError) {
	p := &exprParser{src: src, fhir: fhir, tables: tables, checkPath: checkPath}
	p.skipSpace()
	if p.pos >= len(p.src) {
		p.fail(0, "empty expression")
		return nil, nil, p.errs
	}
	n := p.parse(false)
	p.skipSpace()
	if len(p.errs) == 0 && p.pos < len(p.src) {
		p.fail(p.pos, "unexpected %s after the expression", p.describe())
	}
	if len(p.errs) > 0 {
		return nil, nil, p.errs
	}
	return n, p.calls, nil
}

func (p *exprParser) skipSpace() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t' || p.src[p.pos] == '\n' || p.src[p.pos] == '\r') {
		p.pos++
	}
}

func (p *exprParser) describe() string {
	if p.pos >= len(p.src) {
		return "end of expression"
	}
	r := p.src[p.pos:]
	if len(r) > 12 {
		r = r[:12] + "..."
	}
	return strconv.Quote(r)
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }
func isIdentChar(c byte) bool  { return isIdentStart(c) || c >= '0' && c <= '9' }

// parse reads one term. asName says the caller wants a bare name here.
func (p *exprParser) parse(asName bool) node {
	p.skipSpace()
	if p.pos >= len(p.src) {
		p.fail(p.pos, "expected a value, found the end of the expression")
		return nil
	}
	start := p.pos
	c := p.src[p.pos]
	switch {
	case c == '\'' || c == '"':
		s, ok := p.stringLit()
		if !ok {
			return nil
		}
		return literal{Str(s)}
	case c >= '0' && c <= '9' || (c == '-' || c == '+') && p.pos+1 < len(p.src) && p.src[p.pos+1] >= '0' && p.src[p.pos+1] <= '9':
		return p.number()
	case p.fhir && (c == '%' || c == '$'):
		return p.fhirAtom(start)
	case !isIdentStart(c):
		p.fail(p.pos, "unexpected %s", p.describe())
		return nil
	}
	for p.pos < len(p.src) && isIdentChar(p.src[p.pos]) {
		p.pos++
	}
	word := p.src[start:p.pos]
	if p.pos < len(p.src) && p.src[p.pos] == '(' {
		return p.call(word, start)
	}
	if !p.fhir && len(word) == 3 && p.pos < len(p.src) && (p.src[p.pos] == '-' || p.src[p.pos] == '[') {
		return p.hl7Path(start)
	}
	if asName {
		return name{word}
	}
	switch word {
	case "true", "false":
		return literal{Boolean(word == "true")}
	case "null":
		return literal{NullValue}
	}
	if p.fhir {
		p.pos = start
		return p.fhirAtom(start)
	}
	if looksLikeSegment(word) {
		p.fail(start, "%s is a segment: add a field number, as in %s-3", word, word)
		return nil
	}
	p.fail(start, "unknown name %q: an HL7 path is written like PID-5.1, text in quotes (%q), a function with parentheses", word, word)
	return nil
}

func looksLikeSegment(w string) bool {
	if len(w) != 3 || w[0] < 'A' || w[0] > 'Z' {
		return false
	}
	for i := 1; i < 3; i++ {
		if !(w[i] >= 'A' && w[i] <= 'Z' || w[i] >= '0' && w[i] <= '9') {
			return false
		}
	}
	return true
}

func (p *exprParser) stringLit() (string, bool) {
	q := p.src[p.pos]
	start := p.pos
	p.pos++
	var b strings.Builder
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == q:
			p.pos++
			return b.String(), true
		case c == '\\' && p.pos+1 < len(p.src):
			p.pos++
			switch e := p.src[p.pos]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
		}
		p.pos++
	}
	p.fail(start, "text starting here has no closing %c", q)
	return "", false
}

func (p *exprParser) number() node {
	start := p.pos
	p.pos++
	dot := false
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if c == '.' && !dot {
			dot = true
		} else if c < '0' || c > '9' {
			break
		}
		p.pos++
	}
	text := p.src[start:p.pos]
	if _, err := strconv.ParseFloat(text, 64); err != nil || strings.HasSuffix(text, ".") {
		p.fail(start, "%q is not a number", text)
		return nil
	}
	return literal{Num(canonicalNumber(text))}
}

// hl7Path reads a path such as PID-3[2].4.1 or OBX[2]-5.
func (p *exprParser) hl7Path(start int) node {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if !(isIdentChar(c) || c == '-' || c == '[' || c == ']' || c == '.') {
			break
		}
		p.pos++
	}
	text := p.src[start:p.pos]
	path, err := hl7.ParsePath(text)
	if err != nil {
		p.fail(start, "%s", strings.TrimPrefix(err.Error(), "hl7 "))
		return nil
	}
	if p.checkPath != nil {
		if msg := p.checkPath(path); msg != "" {
			p.fail(start, "%s", msg)
			return nil
		}
	}
	return &hl7Path{p: path}
}

// fhirAtom reads a FHIRPath up to a comma or closing parenthesis at its
// own depth, or a space outside parentheses: name.where(use = 'official').family.
func (p *exprParser) fhirAtom(start int) node {
	depth := 0
loop:
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '\'' || c == '"' || c == '`':
			q := c
			p.pos++
			for p.pos < len(p.src) && p.src[p.pos] != q {
				if p.src[p.pos] == '\\' {
					p.pos++
				}
				p.pos++
			}
		case c == '(' || c == '[':
			depth++
		case c == ')' || c == ']':
			if depth == 0 {
				break loop
			}
			depth--
		case depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n'):
			break loop
		}
		p.pos++
	}
	return p.compileFHIR(start, p.src[start:min(p.pos, len(p.src))])
}

func (p *exprParser) compileFHIR(off int, src string) node {
	if fn := impureFHIRPath(src); fn != "" {
		p.fail(off, "FHIRPath %q uses %s, which depends on the clock or on other resources; a mapping's output must depend on the message alone", src, fn)
		return nil
	}
	x, err := fhirpath.Compile(src)
	if err != nil {
		p.fail(off, "FHIRPath %q does not compile: %s", src, firstLine(err.Error()))
		return nil
	}
	return &fhirPath{src: src, expr: x}
}

// impureFHIRPath names the first function in src (outside quotes) that
// reads the clock or reaches beyond the resource, or "".
func impureFHIRPath(src string) string {
	var word strings.Builder
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c == '\'' || c == '"' || c == '`' {
			for i++; i < len(src) && src[i] != c; i++ {
				if src[i] == '\\' {
					i++
				}
			}
			word.Reset()
			continue
		}
		if isIdentChar(c) || c == '%' {
			word.WriteByte(c)
			continue
		}
		w := word.String()
		word.Reset()
		if c == '(' {
			switch w {
			case "now", "today", "timeOfDay", "resolve", "memberOf", "subsumes", "subsumedBy", "conformsTo":
				return w + "()"
			}
		}
		if strings.HasPrefix(w, "%") && w != "%resource" && w != "%rootResource" && w != "%context" && w != "%ucum" && !strings.HasPrefix(w, "%sct") && !strings.HasPrefix(w, "%loinc") {
			return w
		}
	}
	if w := word.String(); strings.HasPrefix(w, "%") && w != "%resource" && w != "%rootResource" && w != "%context" && w != "%ucum" {
		return w
	}
	return ""
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// call reads name(args...) and checks it against the function table.
func (p *exprParser) call(fname string, start int) node {
	fn := functions[fname]
	p.pos++ // (
	var args []node
	var offs []int
	p.skipSpace()
	if p.pos < len(p.src) && p.src[p.pos] == ')' {
		p.pos++
	} else {
		for {
			p.skipSpace()
			offs = append(offs, p.pos)
			asName := fn != nil && fn.isName(len(args), -1)
			a := p.parse(asName)
			if a == nil {
				return nil
			}
			args = append(args, a)
			p.skipSpace()
			if p.pos >= len(p.src) {
				p.fail(start, "%s( has no closing parenthesis", fname)
				return nil
			}
			if p.src[p.pos] == ',' {
				p.pos++
				continue
			}
			if p.src[p.pos] == ')' {
				p.pos++
				break
			}
			p.fail(p.pos, "expected ',' or ')' in the arguments of %s, found %s", fname, p.describe())
			return nil
		}
	}
	if fn == nil {
		if p.fhir {
			// fhirpath functions at the start of a path, like
			// iif(...), are written with fhirpath("...").
			p.fail(start, "unknown function %s (for a FHIRPath function at the start of a path, write fhirpath(\"...\"))%s", fname, suggestFunction(fname))
		} else {
			p.fail(start, "unknown function %s%s", fname, suggestFunction(fname))
		}
		return nil
	}
	if len(args) < fn.min || (fn.max >= 0 && len(args) > fn.max) {
		p.fail(start, "%s takes %s, got %d", fname, fn.arity(), len(args))
		return nil
	}
	c := &call{fn: fn, args: args}
	for i, a := range args {
		if _, isName := a.(name); isName && !fn.isName(i, len(args)) {
			p.fail(offs[i], "argument %d of %s must be a value, not the bare word %q (quote text)", i+1, fname, a.(name).s)
			return nil
		}
	}
	if fn.compile != nil {
		if err := fn.compile(p, c); err != nil {
			p.fail(start, "%s: %s", fname, err)
			return nil
		}
	}
	return c
}

package mappings

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// function is one entry of the expression language's function set.
type function struct {
	min, max int // argument counts; max -1 for any number
	// nameArgs lists the arguments written as bare names (a table, an op).
	nameArgs []int
	// compile checks and resolves a call once, when the mapping loads.
	compile func(p *exprParser, c *call) error
	eval    func(e *env, c *call) (Value, error)
	usage   string // for arity messages and the docs
}

func (f *function) isName(i, _ int) bool {
	for _, n := range f.nameArgs {
		if n == i {
			return true
		}
	}
	return false
}

func (f *function) arity() string {
	switch {
	case f.max == f.min && f.min == 1:
		return "1 argument"
	case f.max == f.min:
		return fmt.Sprintf("%d arguments", f.min)
	case f.max < 0:
		return fmt.Sprintf("at least %d arguments", f.min)
	}
	return fmt.Sprintf("%d to %d arguments", f.min, f.max)
}

// functions is the expression language's whole function set. Nothing here
// reads files, the network, the clock or the environment: a mapping's
// output depends on its input alone.
var functions map[string]*function

func init() {
	functions = map[string]*function{
		"date":        {min: 1, max: 2, compile: compileZoneArg, eval: evalDate, usage: "date(value [, zone])"},
		"datetime":    {min: 1, max: 2, compile: compileZoneArg, eval: evalDateTime, usage: "datetime(value [, zone])"},
		"lookup":      {min: 2, max: 3, nameArgs: []int{0}, compile: compileLookup, eval: evalLookup, usage: "lookup(table, value [, default])"},
		"concat":      {min: 1, max: -1, eval: evalConcat, usage: "concat(value, ...)"},
		"key":         {min: 1, max: -1, eval: evalKey, usage: "key(part, ...)"},
		"format":      {min: 1, max: -1, compile: compileFormat, eval: evalFormat, usage: `format("{1} {2}", value, ...)`},
		"default":     {min: 2, max: 2, eval: evalCoalesce, usage: "default(value, fallback)"},
		"coalesce":    {min: 1, max: -1, eval: evalCoalesce, usage: "coalesce(value, ...)"},
		"trim":        {min: 1, max: 1, eval: stringFn(strings.TrimSpace), usage: "trim(value)"},
		"upper":       {min: 1, max: 1, eval: stringFn(strings.ToUpper), usage: "upper(value)"},
		"lower":       {min: 1, max: 1, eval: stringFn(strings.ToLower), usage: "lower(value)"},
		"replace":     {min: 3, max: 3, eval: evalReplace, usage: "replace(value, old, new)"},
		"truncate":    {min: 2, max: 2, compile: compileCountArg, eval: evalTruncate, usage: "truncate(value, n)"},
		"number":      {min: 1, max: 1, eval: evalNumber, usage: "number(value)"},
		"bool":        {min: 1, max: 1, eval: evalBool, usage: "bool(value)"},
		"text":        {min: 1, max: 1, compile: compileText, eval: evalArg0, usage: "text(HL7 path)"},
		"if":          {min: 2, max: 3, eval: evalIf, usage: "if(condition, then [, else])"},
		"eq":          {min: 2, max: 2, eval: evalEq, usage: "eq(a, b)"},
		"ne":          {min: 2, max: 2, eval: evalNe, usage: "ne(a, b)"},
		"in":          {min: 2, max: -1, eval: evalIn, usage: "in(value, candidate, ...)"},
		"present":     {min: 1, max: 1, eval: evalPresent, usage: "present(value)"},
		"empty":       {min: 1, max: 1, eval: evalEmpty, usage: "empty(value)"},
		"not":         {min: 1, max: 1, eval: evalNot, usage: "not(condition)"},
		"and":         {min: 2, max: -1, eval: evalAnd, usage: "and(condition, ...)"},
		"or":          {min: 2, max: -1, eval: evalOr, usage: "or(condition, ...)"},
		"index":       {min: 0, max: 0, eval: evalIndex, usage: "index()"},
		"pick":        {min: 4, max: 4, compile: compilePick, eval: evalPick, usage: `pick(PID-3, 5, "MR", 1)`},
		"ref":         {min: 1, max: 3, nameArgs: []int{0, 1}, compile: compileRef, eval: evalRef, usage: "ref(op) or ref(object, key_field, key)"},
		"patient_key": {min: 1, max: 1, eval: evalPatientKey, usage: "patient_key(FHIR reference)"},
		"fhirpath":    {min: 1, max: 1, compile: compileFHIRPathFn, eval: evalArg0, usage: `fhirpath("expression")`},
	}
}

// FunctionNames lists the function set, sorted.
func FunctionNames() []string {
	out := make([]string, 0, len(functions))
	for n := range functions {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func suggestFunction(name string) string {
	best, dist := "", 3
	for n := range functions {
		if d := editDistance(strings.ToLower(name), n); d < dist {
			best, dist = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// editDistance is the Levenshtein distance, for suggestions.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// literalText returns a constant string argument.
func literalText(n node) (string, bool) {
	switch v := n.(type) {
	case literal:
		if v.v.Kind == String {
			return v.v.Text, true
		}
	case name:
		return v.s, true
	}
	return "", false
}

func compileZoneArg(p *exprParser, c *call) error {
	if len(c.args) < 2 {
		return nil
	}
	z, ok := literalText(c.args[1])
	if !ok {
		return errors.New(`the zone must be a quoted IANA zone name, like "America/Chicago"`)
	}
	loc, err := time.LoadLocation(z)
	if err != nil {
		return fmt.Errorf("unknown time zone %q", z)
	}
	c.zone = loc
	return nil
}

func (c *call) zoneFor(e *env) *time.Location {
	if c.zone != nil {
		return c.zone
	}
	return e.zone
}

func evalStamp(e *env, c *call) (stamp, bool, error) {
	v, err := c.arg(e, 0)
	if err != nil || v.empty() {
		return stamp{}, false, err
	}
	st, err := parseStamp(v.Text, c.zoneFor(e))
	if err != nil {
		return stamp{}, false, fmt.Errorf("%s: the value is not a date/time (HL7 YYYYMMDD[HHMM[SS]][+ZZZZ] or ISO 8601)", c.fn.usage)
	}
	return st, true, nil
}

func evalDate(e *env, c *call) (Value, error) { return evalStampAs(e, c, "date()", stamp.isoDate) }

func evalDateTime(e *env, c *call) (Value, error) {
	return evalStampAs(e, c, "datetime()", stamp.isoDateTime)
}

// evalStampAs reads argument 0 as a date/time with at least a day and
// renders it; null stays null (it clears the field).
func evalStampAs(e *env, c *call, fn string, render func(stamp) string) (Value, error) {
	v, err := c.arg(e, 0)
	if err != nil || v.Kind == Null {
		return v, err
	}
	st, ok, err := evalStamp(e, c)
	if !ok {
		return Value{}, err
	}
	if st.precision < 8 {
		return Value{}, fmt.Errorf("%s: the value has no day (year or month precision only)", fn)
	}
	return Str(render(st)), nil
}

func (p *exprParser) table(nameText string) (map[string]string, error) {
	t, ok := p.tables[nameText]
	if !ok {
		known := make([]string, 0, len(p.tables))
		for k := range p.tables {
			known = append(known, k)
		}
		sort.Strings(known)
		if len(known) == 0 {
			return nil, fmt.Errorf("unknown table %q: the mapping defines no tables", nameText)
		}
		return nil, fmt.Errorf("unknown table %q (tables: %s)", nameText, strings.Join(known, ", "))
	}
	return t, nil
}

func compileLookup(p *exprParser, c *call) error {
	n, ok := literalText(c.args[0])
	if !ok {
		return errors.New("the first argument must be a table name")
	}
	t, err := p.table(n)
	if err != nil {
		return err
	}
	c.table = t
	return nil
}

func evalLookup(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 1)
	if err != nil || v.Kind == Absent || v.Kind == Null {
		return v, err
	}
	if out, ok := c.table[v.Text]; ok {
		return Str(out), nil
	}
	if len(c.args) == 3 {
		return c.arg(e, 2)
	}
	return Value{}, nil
}

// joinArgs evaluates args and reports whether any that is not a literal
// was set, and any null: literal separators alone ("|", " ") do not make
// a value, so concat(PID-5.2, " ", PID-5.1) of an empty name is absent.
func joinArgs(e *env, args []node, each func(i int, v Value)) (set, null bool, err error) {
	allLiteral := true
	for i, a := range args {
		v, err := a.eval(e)
		if err != nil {
			return false, false, err
		}
		_, lit := a.(literal)
		allLiteral = allLiteral && lit
		switch {
		case v.Kind == Absent:
		case v.Kind == Null:
			null = true
		case !lit:
			set = true
		}
		each(i, v)
	}
	return set || allLiteral, null, nil
}

// evalKey joins its parts with "|" for a composite external key, and is
// absent when any part is absent or empty: a key is never half made.
func evalKey(e *env, c *call) (Value, error) {
	var b strings.Builder
	for i := range c.args {
		v, err := c.arg(e, i)
		if err != nil || v.empty() {
			return Value{}, err
		}
		if i > 0 {
			b.WriteByte('|')
		}
		b.WriteString(textOf(v))
	}
	return Str(b.String()), nil
}

// textOf renders a value inside concatenated text.
func textOf(v Value) string {
	switch v.Kind {
	case Absent, Null:
		return ""
	case Ref:
		return v.Ref.Key
	}
	return v.Text
}

func evalConcat(e *env, c *call) (Value, error) {
	var b strings.Builder
	set, null, err := joinArgs(e, c.args, func(_ int, v Value) { b.WriteString(textOf(v)) })
	return joined(b.String(), set, null), err
}

// joined is the result of concat and format: absent when every part was
// absent, null when the parts were only nulls (clearing stays clearing).
func joined(s string, set, null bool) Value {
	switch {
	case set:
		return Str(s)
	case null:
		return NullValue
	}
	return Value{}
}

type formatPiece struct {
	lit string
	arg int // 1-based argument after the pattern; 0 for none
}

func compileFormat(_ *exprParser, c *call) error {
	pat, ok := literalText(c.args[0])
	if !ok {
		return errors.New("the pattern must be quoted text, like \"{1}, {2}\"")
	}
	var pieces []formatPiece
	used := make([]bool, len(c.args))
	for pat != "" {
		i := strings.IndexByte(pat, '{')
		if i < 0 {
			pieces = append(pieces, formatPiece{lit: pat})
			break
		}
		if i+1 < len(pat) && pat[i+1] == '{' {
			pieces = append(pieces, formatPiece{lit: pat[:i+1]})
			pat = pat[i+2:]
			continue
		}
		j := strings.IndexByte(pat[i:], '}')
		if j < 0 {
			return errors.New("the pattern has a '{' without '}' (write {{ for a brace)")
		}
		n, err := strconv.Atoi(pat[i+1 : i+j])
		if err != nil || n < 1 || n >= len(c.args) {
			return fmt.Errorf("the pattern refers to {%s}, but there are %d values after it", pat[i+1:i+j], len(c.args)-1)
		}
		used[n] = true
		pieces = append(pieces, formatPiece{lit: pat[:i]}, formatPiece{arg: n})
		pat = pat[i+j+1:]
	}
	for n := 1; n < len(c.args); n++ {
		if !used[n] {
			return fmt.Errorf("value %d is not used in the pattern (write {%d})", n, n)
		}
	}
	c.pieces = pieces
	return nil
}

func evalFormat(e *env, c *call) (Value, error) {
	vals := make([]Value, len(c.args))
	set, null, err := joinArgs(e, c.args[1:], func(i int, v Value) { vals[i+1] = v })
	if err != nil {
		return Value{}, err
	}
	var b strings.Builder
	for _, p := range c.pieces {
		if p.arg > 0 {
			b.WriteString(textOf(vals[p.arg]))
		} else {
			b.WriteString(p.lit)
		}
	}
	return joined(b.String(), set, null), nil
}

// evalCoalesce returns the first argument that is not absent, null or
// empty; failing that null if any was null (so a clear still clears),
// else absent.
func evalCoalesce(e *env, c *call) (Value, error) {
	null := false
	for _, a := range c.args {
		v, err := a.eval(e)
		if err != nil {
			return Value{}, err
		}
		if !v.empty() {
			return v, nil
		}
		null = null || v.Kind == Null
	}
	if null {
		return NullValue, nil
	}
	return Value{}, nil
}

func stringFn(f func(string) string) func(e *env, c *call) (Value, error) {
	return func(e *env, c *call) (Value, error) {
		v, err := c.arg(e, 0)
		if err != nil || v.Kind != String {
			return v, err
		}
		return Str(f(v.Text)), nil
	}
}

func evalReplace(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	if err != nil || v.Kind != String {
		return v, err
	}
	old, err := c.arg(e, 1)
	if err != nil {
		return Value{}, err
	}
	repl, err := c.arg(e, 2)
	if err != nil {
		return Value{}, err
	}
	if old.Text == "" {
		return v, nil
	}
	return Str(strings.ReplaceAll(v.Text, old.Text, textOf(repl))), nil
}

func compileCountArg(_ *exprParser, c *call) error {
	l, ok := c.args[1].(literal)
	if !ok || l.v.Kind != Number {
		return errors.New("the length must be a whole number")
	}
	n, err := strconv.Atoi(l.v.Text)
	if err != nil || n < 1 {
		return errors.New("the length must be a whole number of at least 1")
	}
	c.count = n
	return nil
}

// evalTruncate cuts text to at most n characters (not bytes), for CRM
// fields with a length limit.
func evalTruncate(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	if err != nil || v.Kind != String {
		return v, err
	}
	n := 0
	for i := range v.Text {
		if n == c.count {
			return Str(v.Text[:i]), nil
		}
		n++
	}
	return v, nil
}

// evalNumber reads a decimal number. Text that is not a number (a lab's
// "<5", say) gives absent, leaving a numeric field untouched: map the text
// to a text field as well.
func evalNumber(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	if err != nil || v.Kind == Absent || v.Kind == Null || v.Kind == Number {
		return v, err
	}
	s := strings.TrimSpace(v.Text)
	if _, err := strconv.ParseFloat(s, 64); err != nil || strings.ContainsAny(s, "eEinfINFnN") {
		return Value{}, nil
	}
	return Num(canonicalNumber(s)), nil
}

// evalBool reads Y/N, T/F, true/false, yes/no and 1/0; anything else is
// absent.
func evalBool(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	if err != nil || v.Kind == Absent || v.Kind == Null || v.Kind == Bool {
		return v, err
	}
	switch strings.ToLower(strings.TrimSpace(v.Text)) {
	case "y", "yes", "t", "true", "1":
		return Boolean(true), nil
	case "n", "no", "f", "false", "0":
		return Boolean(false), nil
	}
	return Value{}, nil
}

func compileText(_ *exprParser, c *call) error {
	p, ok := c.args[0].(*hl7Path)
	if !ok {
		return errors.New("the argument must be an HL7 path, like text(OBX-5)")
	}
	cp := *p
	cp.text = true
	c.args[0] = &cp
	return nil
}

func evalArg0(e *env, c *call) (Value, error) { return c.arg(e, 0) }

func compileFHIRPathFn(p *exprParser, c *call) error {
	src, ok := literalText(c.args[0])
	if _, isName := c.args[0].(name); !ok || isName {
		return errors.New("the argument must be a FHIRPath in quotes")
	}
	if !p.fhir {
		return errors.New("FHIRPath applies to FHIR input; this mapping reads HL7 v2")
	}
	n := p.compileFHIR(0, src)
	if n == nil {
		msg := p.errs[len(p.errs)-1].msg
		p.errs = p.errs[:len(p.errs)-1]
		return errors.New(msg)
	}
	c.args[0] = n
	return nil
}

func evalIf(e *env, c *call) (Value, error) {
	cond, err := c.arg(e, 0)
	if err != nil {
		return Value{}, err
	}
	if cond.truthy() {
		return c.arg(e, 1)
	}
	if len(c.args) == 3 {
		return c.arg(e, 2)
	}
	return Value{}, nil
}

func evalTwo(e *env, c *call) (Value, Value, error) {
	a, err := c.arg(e, 0)
	if err != nil {
		return a, a, err
	}
	b, err := c.arg(e, 1)
	return a, b, err
}

// same compares as conditions do: absent and null are equal to nothing
// but themselves; text and numbers compare by their text.
func same(a, b Value) bool {
	if a.Kind == Number && b.Kind == String || a.Kind == String && b.Kind == Number {
		return canonicalNumber(a.Text) == canonicalNumber(b.Text)
	}
	return a.Equal(b)
}

func evalEq(e *env, c *call) (Value, error) {
	a, b, err := evalTwo(e, c)
	return Boolean(same(a, b)), err
}

func evalNe(e *env, c *call) (Value, error) {
	a, b, err := evalTwo(e, c)
	return Boolean(!same(a, b)), err
}

func evalIn(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	if err != nil {
		return Value{}, err
	}
	for i := 1; i < len(c.args); i++ {
		w, err := c.arg(e, i)
		if err != nil {
			return Value{}, err
		}
		if same(v, w) {
			return Boolean(true), nil
		}
	}
	return Boolean(false), nil
}

func evalPresent(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	return Boolean(!v.empty()), err
}

func evalEmpty(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	return Boolean(v.empty()), err
}

func evalNot(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	return Boolean(!v.truthy()), err
}

func evalAnd(e *env, c *call) (Value, error) {
	for i := range c.args {
		v, err := c.arg(e, i)
		if err != nil || !v.truthy() {
			return Boolean(false), err
		}
	}
	return Boolean(true), nil
}

func evalOr(e *env, c *call) (Value, error) {
	for i := range c.args {
		v, err := c.arg(e, i)
		if err != nil {
			return Value{}, err
		}
		if v.truthy() {
			return Boolean(true), nil
		}
	}
	return Boolean(false), nil
}

func evalIndex(e *env, _ *call) (Value, error) {
	if e.index == 0 {
		return Value{}, errors.New("index() is only meaningful in an op with foreach")
	}
	return Num(strconv.Itoa(e.index)), nil
}

// compileRef checks the form; the op a one-argument ref names is resolved
// once every op of the mapping is known (see resolveRefs).
func compileRef(p *exprParser, c *call) error {
	switch len(c.args) {
	case 1:
		if _, ok := c.args[0].(name); !ok {
			return errors.New("ref(op) names an op of this mapping by its id, without quotes")
		}
		p.calls = append(p.calls, c)
	case 2:
		return errors.New("write ref(op) or ref(object, key_field, key)")
	case 3:
		ob, ok1 := literalText(c.args[0])
		kf, ok2 := literalText(c.args[1])
		if !ok1 || !ok2 {
			return errors.New("the object and key field of ref(object, key_field, key) must be names")
		}
		c.refOb, c.refKF = ob, kf
	}
	return nil
}

func evalRef(e *env, c *call) (Value, error) {
	if c.ref != nil {
		key, err := e.refKey(c.ref)
		if err != nil || key.empty() {
			return Value{}, err
		}
		return Value{Kind: Ref, Ref: &Reference{Object: c.ref.Object, KeyField: c.ref.KeyField, Key: textOf(key)}}, nil
	}
	key, err := c.arg(e, 2)
	if err != nil || key.empty() {
		return Value{}, err
	}
	return Value{Kind: Ref, Ref: &Reference{Object: c.refOb, KeyField: c.refKF, Key: textOf(key)}}, nil
}

// compilePick checks pick(FIELD, match_component, value, want_component):
// in a repeating HL7 field, the first repetition whose match component
// equals value, and its want component (PID-3 with type MR, say).
func compilePick(_ *exprParser, c *call) error {
	p, ok := c.args[0].(*hl7Path)
	if !ok || p.p.Component > 0 || p.p.Rep > 0 {
		return errors.New(`the first argument must be a repeating HL7 field without component, like pick(PID-3, 5, "MR", 1)`)
	}
	for _, i := range []int{1, 3} {
		l, ok := c.args[i].(literal)
		n, err := strconv.Atoi(l.v.Text)
		if !ok || l.v.Kind != Number || err != nil || n < 1 {
			return fmt.Errorf("argument %d must be a component number (1, 2, ...)", i+1)
		}
	}
	return nil
}

func evalPick(e *env, c *call) (Value, error) {
	want, err := c.arg(e, 2)
	if err != nil || want.empty() {
		return Value{}, err
	}
	base := c.args[0].(*hl7Path)
	matchComp, _ := strconv.Atoi(c.args[1].(literal).v.Text)
	wantComp, _ := strconv.Atoi(c.args[3].(literal).v.Text)
	if e.msg == nil {
		return Value{}, nil
	}
	seg := e.segment(base.p)
	if seg == nil {
		return Value{}, nil
	}
	mp := hl7.Path{Component: matchComp}
	wp := hl7.Path{Component: wantComp}
	for rep := range seg.Repetitions(base.p.Field) {
		if same(readHL7(rep.Component(matchComp), mp, false), want) {
			return readHL7(rep.Component(wantComp), wp, base.text), nil
		}
	}
	return Value{}, nil
}

package mappings

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"

	"github.com/ehrbridge/ehrbridge/internal/problems"
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
		"keysafe":     {min: 1, max: 1, eval: evalKeySafe, usage: "keysafe(value)"},
		"ns":          {min: 1, max: -1, compile: compileNS, eval: evalNS, usage: "ns(HL7 path, ...)"},
		"required":    {min: 2, max: 2, compile: compileRequired, eval: evalRequired, usage: `required(value, "reason")`},
		"format":      {min: 1, max: -1, compile: compileFormat, eval: evalFormat, usage: `format("{1} {2}", value, ...)`},
		"default":     {min: 2, max: 2, eval: evalCoalesce, usage: "default(value, fallback)"},
		"coalesce":    {min: 1, max: -1, eval: evalCoalesce, usage: "coalesce(value, ...)"},
		"trim":        {min: 1, max: 1, eval: stringFn(strings.TrimSpace), usage: "trim(value)"},
		"upper":       {min: 1, max: 1, eval: stringFn(strings.ToUpper), usage: "upper(value)"},
		"lower":       {min: 1, max: 1, eval: stringFn(strings.ToLower), usage: "lower(value)"},
		"replace":     {min: 3, max: 3, eval: evalReplace, usage: "replace(value, old, new)"},
		"truncate":    {min: 2, max: 2, compile: compileCountArg, eval: evalTruncate, usage: "truncate(value, n)"},
		"split":       {min: 3, max: 3, compile: compileSplit, eval: evalSplit, usage: `split(value, "^", n)`},
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
		"opkey":       {min: 0, max: 0, eval: evalOpKey, usage: "opkey()"},
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
		if d := problems.EditDistance(strings.ToLower(name), n); d < dist {
			best, dist = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
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

func evalDate(e *env, c *call) (Value, error) { return evalStampAs(e, c, "date()", stamp.isoDate) }

func evalDateTime(e *env, c *call) (Value, error) {
	return evalStampAs(e, c, "datetime()", stamp.isoDateTime)
}

// evalStampAs reads argument 0 as an HL7 DTM/TS or ISO 8601 date/time, at
// any precision the standards allow, and renders it; null stays null (it
// clears the field). A value with less than a day (YYYY, YYYYMM) cannot
// be written to a Date or DateTime field without inventing a day: in a
// field it is left out with a warning, and so is a value that is not a
// date/time at all; in a key, a lane or a condition either fails the
// input.
func evalStampAs(e *env, c *call, fn string, render func(stamp) string) (Value, error) {
	v, err := c.arg(e, 0)
	if err != nil || v.Kind == Null || v.empty() {
		return v, err
	}
	st, err := parseStamp(v.Text, c.zoneFor(e))
	if err != nil {
		msg := fn + ": the value is not a date/time (HL7 YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ] or ISO 8601)"
		if e.warn(msg + "; the field is left out") {
			return Value{}, nil
		}
		return Value{}, errors.New(msg)
	}
	if st.precision < 8 {
		msg := fn + ": the value has no day (" + precisionName(st.precision) + " precision only)"
		if e.warn(msg + "; the field is left out rather than given an invented day") {
			return Value{}, nil
		}
		return Value{}, errors.New(msg)
	}
	return Str(render(st)), nil
}

func precisionName(p int) string {
	if p == 4 {
		return "year"
	}
	return "month"
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
// In a key (key mode), a part that is not a literal and comes out blank
// makes the whole result absent (blank reports it), so that
// concat(PID-3.4, "|", PID-3.1) never gives "HOSP|" or "|" — except a
// part written as an explicit fallback to a literal, like
// coalesce(OBX-3.3, ""), which says the part may be empty.
func joinArgs(e *env, args []node, each func(i int, v Value)) (set, null, blankPart bool, err error) {
	allLiteral := true
	for i, a := range args {
		v, err := a.eval(e)
		if err != nil {
			return false, false, false, err
		}
		_, lit := a.(literal)
		allLiteral = allLiteral && lit
		if e.keyMode && !lit && !optionalPart(a) && blank(v) {
			blankPart = true
		}
		switch {
		case v.Kind == Absent:
		case v.Kind == Null:
			null = true
		case !lit:
			set = true
		}
		each(i, v)
	}
	return set || allLiteral, null, blankPart, nil
}

// optionalPart reports whether a key part is written as a fallback to a
// literal (coalesce(x, "") or default(x, "none")): the part may be
// empty, by the mapping's own word.
func optionalPart(n node) bool {
	c, ok := n.(*call)
	if !ok || (c.fn != functions["coalesce"] && c.fn != functions["default"]) || len(c.args) == 0 {
		return false
	}
	_, lit := c.args[len(c.args)-1].(literal)
	return lit
}

// evalKey joins its parts with "|" for a composite external key, and is
// absent when any part is absent, null or blank (only whitespace): a key
// is never half made, so a patient without an id never shares the key
// "HOSP|" with every other such patient.
func evalKey(e *env, c *call) (Value, error) {
	var b strings.Builder
	for i := range c.args {
		v, err := c.arg(e, i)
		if err != nil || blank(v) {
			return Value{}, err
		}
		if i > 0 {
			b.WriteByte('|')
		}
		b.WriteString(textOf(v))
	}
	return Str(b.String()), nil
}

// KeyUnsafeChars are the characters a Dataverse alternate-key value must
// not contain: a row whose key holds one cannot be read or written by
// that key, percent-encoded or not ("Using alternate keys", Microsoft
// Learn: "... contains one of these characters: / < > * % & : \ ? +";
// the crm-metadata README lists '#' beside them). KeyEscape, '~', is
// escaped too, so that two different values never give the same key.
const (
	KeyUnsafeChars = "/#<>*%&:\\?+"
	KeyEscape      = '~'
)

// KeySafe escapes each character of KeyUnsafeChars, and KeyEscape itself,
// as '~' and two upper-case hex digits ("GLU/CIT" -> "GLU~2FCIT",
// "a~b" -> "a~7Eb"). Everything else is kept as is, so a value without
// those characters is its own key. KeyUnsafe undoes it.
func KeySafe(s string) string {
	if !strings.ContainsAny(s, KeyUnsafeChars+string(KeyEscape)) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == KeyEscape || strings.IndexByte(KeyUnsafeChars, c) >= 0 {
			fmt.Fprintf(&b, "~%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// KeyUnsafe reverses KeySafe: each '~' with two hex digits becomes the
// byte they name; a '~' without them is kept.
func KeyUnsafe(s string) string {
	if strings.IndexByte(s, KeyEscape) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == KeyEscape && i+2 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// evalKeySafe is keysafe(v): KeySafe of v's text; absent and null stay.
func evalKeySafe(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	if err != nil {
		return Value{}, err
	}
	switch v.Kind {
	case Absent, Null, Ref:
		return v, nil
	}
	return Str(KeySafe(v.Text)), nil
}

// compileNS marks the HL7 path of a one-argument ns() (also the field of
// a pick()) to be read whole, as an HD: all the parts of a namespace.
// With more arguments each is one part of the HD (ns(OBR-3.2, OBR-3.3,
// OBR-3.4), the namespace of an EI), and an HD has three.
func compileNS(_ *exprParser, c *call) error {
	if len(c.args) > 3 {
		return errors.New("a namespace (HD) has at most three parts: namespace id, universal id, universal id type")
	}
	if len(c.args) > 1 {
		return nil
	}
	switch n := c.args[0].(type) {
	case *hl7Path:
		cp := *n
		cp.whole = true
		c.args[0] = &cp
	case *call:
		if n.fn == functions["pick"] {
			cp := *n.args[0].(*hl7Path)
			cp.whole = true
			pc := *n
			pc.args = append([]node{&cp}, n.args[1:]...)
			c.args[0] = &pc
		}
	}
	return nil
}

// evalNS renders a namespace — an HD (MSH-4, CX.4 as in PID-3.4), or the
// components 2–4 of an EI given one by one (ns(OBR-3.2, OBR-3.3,
// OBR-3.4)) — as hl7.HD.Normalized does, the form the sender identity
// has too: parts trimmed, the universal id type upper-cased, trailing
// empty parts dropped, "\", "^" and "|" within a part escaped
// (hl7.KeyEscape), joined with "^". So "HOSP" stays "HOSP",
// "HOSP&1.2.3&ISO" gives "HOSP^1.2.3^ISO", and two different namespaces
// never render the same. Blank, it is absent.
func evalNS(e *env, c *call) (Value, error) {
	if len(c.args) == 1 && readsWhole(c.args[0]) {
		return c.arg(e, 0) // hdValue already
	}
	// The parts are escaped by Normalized, not as key parts.
	saved := e.keyMode
	e.keyMode = false
	defer func() { e.keyMode = saved }()
	var parts [3]string
	for i := range c.args {
		v, err := c.arg(e, i)
		if err != nil {
			return Value{}, err
		}
		if v.Kind != Null {
			parts[i] = textOf(v)
		}
	}
	return nsValue(hl7.HD{Namespace: parts[0], UniversalID: parts[1], UniversalIDType: parts[2]}), nil
}

// readsWhole reports whether compileNS marked the argument to be read
// whole.
func readsWhole(n node) bool {
	switch v := n.(type) {
	case *hl7Path:
		return v.whole
	case *call:
		return v.fn == functions["pick"] && v.args[0].(*hl7Path).whole
	}
	return false
}

// hdValue reads an addressed value whole, as an HD: a field's components
// 1–3, or a component's subcomponents 1–3, in ns()'s normal form.
func hdValue(v hl7.Value, p hl7.Path) Value {
	if v.IsNull() || v.IsEmpty() {
		return Value{}
	}
	part := v.Subcomponent
	if p.Component == 0 {
		part = v.Component
	}
	s := func(i int) string {
		if x := part(i); !x.IsNull() {
			return x.String()
		}
		return ""
	}
	return nsValue(hl7.HD{Namespace: s(1), UniversalID: s(2), UniversalIDType: s(3)})
}

// nsValue is the normalised HD, absent when blank.
func nsValue(h hl7.HD) Value {
	// A universal id type without a universal id (or namespace) names no
	// one (HL7 2.A.33: HD-3 qualifies HD-2): "^^ISO" would key every such
	// sender alike.
	if strings.TrimSpace(h.Namespace) == "" && strings.TrimSpace(h.UniversalID) == "" {
		return Value{}
	}
	if s := h.Normalized(); s != "" {
		return Str(s)
	}
	return Value{}
}

func compileRequired(_ *exprParser, c *call) error {
	if _, ok := c.args[1].(literal); !ok {
		return errors.New(`the reason must be quoted text, like required(PID-5.1, "no patient name (PID-5)"); it is the dead letter's reason and must not quote the message`)
	}
	if r, _ := literalText(c.args[1]); strings.TrimSpace(r) == "" {
		return errors.New("the reason must say what is missing")
	}
	return nil
}

// evalRequired is its first argument, unless that is blank (absent, null
// or only whitespace): then the input is refused with the reason.
func evalRequired(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	if err != nil {
		return Value{}, err
	}
	if blank(v) {
		r, _ := literalText(c.args[1])
		return Value{}, errors.New(r)
	}
	return v, nil
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
	set, null, blankPart, err := joinArgs(e, c.args, func(_ int, v Value) { b.WriteString(textOf(v)) })
	if err != nil || blankPart {
		return Value{}, err
	}
	return joined(b.String(), set, null), nil
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
	set, null, blankPart, err := joinArgs(e, c.args[1:], func(i int, v Value) { vals[i+1] = v })
	if err != nil || blankPart {
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

func compileSplit(_ *exprParser, c *call) error {
	if sep, ok := literalText(c.args[1]); !ok || sep == "" {
		return errors.New(`the separator must be quoted text, like split(patient.authority, "^", 2)`)
	}
	l, ok := c.args[2].(literal)
	n, err := strconv.Atoi(l.v.Text)
	if !ok || l.v.Kind != Number || err != nil || n < 1 {
		return errors.New("the piece must be a whole number of at least 1")
	}
	c.count = n
	return nil
}

// evalSplit is piece n (1-based) of text split at a separator: the parts
// of a namespace that ns() joined with "^" (split(authority, "^", 2) is
// the universal id of an HD). Absent when there is no such piece or it
// is empty.
func evalSplit(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	if err != nil || v.Kind != String {
		return v, err
	}
	sep, _ := literalText(c.args[1])
	parts := strings.Split(v.Text, sep)
	if c.count > len(parts) || parts[c.count-1] == "" {
		return Value{}, nil
	}
	return Str(parts[c.count-1]), nil
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

// evalPresent is true when its argument has a value that is not blank:
// an HL7 field of spaces is no more present than an empty one.
func evalPresent(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	return Boolean(!blank(v)), err
}

func evalEmpty(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	return Boolean(blank(v)), err
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

// evalOpKey is the key of the op whose fields are evaluated, exactly as
// the op sends it (escaped as keys are): for writing the same key to a
// second field, such as Health Cloud's SourceSystemIdentifier beside the
// External ID the op upserts by.
func evalOpKey(e *env, _ *call) (Value, error) {
	if e.opKey == "" || e.keyMode {
		return Value{}, errors.New("opkey() is only meaningful in an op's fields")
	}
	return Str(e.opKey), nil
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
	key, err := e.evalKey(&expression{root: c.args[2]})
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
			if base.whole {
				return hdValue(rep.Component(wantComp), wp), nil
			}
			return e.leaf(readHL7(rep.Component(wantComp), wp, base.text)), nil
		}
	}
	return Value{}, nil
}

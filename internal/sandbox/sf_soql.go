package sandbox

// This file holds the sandbox's SOQL engine: the subset of the Salesforce
// Object Query Language that ehrbridge's connectors and jsforce send. It is
// deliberately strict: a query real Salesforce would reject is rejected here
// too, and anything outside the subset fails with MALFORMED_QUERY instead of
// being half-understood, so a test never passes against the sandbox with a
// query production would refuse or answer differently.

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Record is one sObject's fields by API name. Values are what encoding/json
// produces when decoding into any (string, float64, bool, nil), plus
// map[string]any (or Record) for a pre-joined relationship such as
// "Patient": {"Name": ...}.
type Record map[string]any

// Get returns a field's value, matching the name case-insensitively as
// Salesforce does. An exact match wins over a case-insensitive one.
func (r Record) Get(name string) (any, bool) {
	_, v, ok := soqlLookup(r, name)
	return v, ok
}

// soqlLookup finds name in m case-insensitively and also returns the key as
// stored, so results can carry the record's own spelling of a field. When
// keys differ only by case the smallest one wins, to stay deterministic.
func soqlLookup(m map[string]any, name string) (string, any, bool) {
	if v, ok := m[name]; ok {
		return name, v, true
	}
	found, key := false, ""
	for k := range m {
		if strings.EqualFold(k, name) && (!found || k < key) {
			found, key = true, k
		}
	}
	if !found {
		return "", nil, false
	}
	return key, m[key], true
}

// soqlNested returns v as a relationship object, or nil if it is not one.
func soqlNested(v any) map[string]any {
	switch m := v.(type) {
	case map[string]any:
		return m
	case Record:
		return m
	}
	return nil
}

// soqlResolve follows a dotted path through nested relationship objects.
// A missing or non-object hop yields nil, as Salesforce does for an empty
// lookup.
func soqlResolve(r Record, path []string) any {
	var cur map[string]any = r
	for i, seg := range path {
		_, v, ok := soqlLookup(cur, seg)
		if !ok {
			return nil
		}
		if i == len(path)-1 {
			return v
		}
		if cur = soqlNested(v); cur == nil {
			return nil
		}
	}
	return nil
}

// SOQLError is a query rejected by ParseSOQL. Code is the Salesforce
// errorCode (MALFORMED_QUERY, or NUMBER_OUTSIDE_VALID_RANGE for an OFFSET
// above 2000) and Message the text Salesforce would put beside it; the
// server answers HTTP 400 with [{"errorCode":Code,"message":Message}].
type SOQLError struct{ Code, Message string }

func (e *SOQLError) Error() string { return e.Code + ": " + e.Message }

// Query is a parsed SOQL query of the subset ehrbridge's connectors and
// jsforce use.
type Query struct {
	Object string   // FROM, as written
	Fields []string // SELECT list, as written
	Limit  int      // LIMIT; 0 = none unless the query said LIMIT 0 (see Apply)
	Offset int      // OFFSET; 0 = none
	// Count is SELECT COUNT(): the answer is the number of matching rows
	// (totalSize), no records. "COUNT() returns the number of rows that
	// match the filtering conditions ... The records field returns null.
	// COUNT() must be the only element in the SELECT list ... You can use
	// COUNT() with a LIMIT clause. You can't use COUNT() with an ORDER BY
	// clause" (https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_count.htm);
	// the REST answer is {"totalSize": n, "done": true, "records": []}.
	// COUNT(fieldName) and other aggregates are not supported.
	Count bool

	hasLimit bool
	where    soqlExpr
	orderBy  []soqlOrder
}

type soqlOrder struct {
	path       []string
	desc       bool
	nullsFirst bool
}

// soqlMaxOffset is Salesforce's ceiling on OFFSET.
const soqlMaxOffset = 2000

// soqlMaxDepth bounds parenthesis nesting so hostile input cannot recurse
// without limit.
const soqlMaxDepth = 100

// Match reports whether r satisfies the WHERE clause (true without one).
func (q *Query) Match(r Record) bool {
	return q.where == nil || q.where.eval(r)
}

// Sort orders records by ORDER BY, stably; without ORDER BY it leaves them
// as they are. Nulls sort first unless NULLS LAST is given, whatever the
// direction, and text sorts case-insensitively, as Salesforce documents.
func (q *Query) Sort(rs []Record) {
	if len(q.orderBy) == 0 {
		return
	}
	sort.SliceStable(rs, func(i, j int) bool {
		for _, o := range q.orderBy {
			a, b := soqlResolve(rs[i], o.path), soqlResolve(rs[j], o.path)
			switch {
			case a == nil && b == nil:
				continue
			case a == nil:
				return o.nullsFirst
			case b == nil:
				return !o.nullsFirst
			}
			c := soqlCompareValues(a, b)
			if o.desc {
				c = -c
			}
			if c != 0 {
				return c < 0
			}
		}
		return false
	})
}

// Apply runs the whole query over one object's records: it keeps those that
// Match, sorts them, then applies OFFSET and LIMIT (including LIMIT 0, which
// the Limit field alone cannot express). rs is not modified.
func (q *Query) Apply(rs []Record) []Record {
	out := make([]Record, 0, len(rs))
	for _, r := range rs {
		if q.Match(r) {
			out = append(out, r)
		}
	}
	q.Sort(out)
	if q.Offset >= len(out) {
		return out[:0]
	}
	out = out[q.Offset:]
	if q.hasLimit && q.Limit < len(out) {
		out = out[:q.Limit]
	}
	return out
}

// Project returns a new Record holding only the SELECT fields plus
// "attributes": {"type": q.Object, "url": urlPrefix+"/sobjects/<Object>/<Id>"},
// the shape Salesforce returns. A field takes the record's own spelling of
// its name when the record has it (Salesforce answers with canonical API
// names, not the query's casing) and the spelling in the query otherwise, with
// a nil value. A dotted path (Patient.Name) comes back nested, as Salesforce
// nests relationship fields: "Patient": {"Name": ...}, or "Patient": nil when
// the record holds no such relationship object.
func (q *Query) Project(r Record, urlPrefix string) Record {
	url := urlPrefix + "/sobjects/" + q.Object
	if id, ok := r.Get("Id"); ok && id != nil {
		url += "/" + fmt.Sprint(id)
	}
	out := Record{"attributes": map[string]any{"type": q.Object, "url": url}}
	for _, f := range q.Fields {
		soqlProjectPath(out, r, strings.Split(f, "."))
	}
	return out
}

func soqlProjectPath(dst, src map[string]any, path []string) {
	name, v, ok := soqlLookup(src, path[0])
	if !ok {
		name = path[0]
	}
	// Reuse a spelling already placed in dst so that Patient.Name and
	// patient.Id end up in one nested object.
	if k, _, ok := soqlLookup(dst, name); ok {
		name = k
	}
	if len(path) == 1 {
		if _, exists := dst[name]; !exists || soqlNested(dst[name]) == nil {
			dst[name] = v
		}
		return
	}
	child := soqlNested(v)
	if child == nil {
		if _, exists := dst[name]; !exists {
			dst[name] = nil
		}
		return
	}
	out := soqlNested(dst[name])
	if out == nil {
		out = map[string]any{}
		if attrs, ok := child["attributes"]; ok {
			if m := soqlNested(attrs); m != nil {
				attrs = maps.Clone(m)
			}
			out["attributes"] = attrs
		}
		dst[name] = out
	}
	soqlProjectPath(out, child, path[1:])
}

// ---- lexer ----

type soqlKind int

const (
	soqlEOF soqlKind = iota
	soqlIdent
	soqlString
	soqlNumber
	soqlDate
	soqlDateTime
	soqlComma
	soqlLParen
	soqlRParen
	soqlOp
	soqlIllegal
)

type soqlToken struct {
	kind soqlKind
	text string // as written (a string token without its quotes)
	pos  int    // byte offset in the query
}

// soqlLexError is a lexing failure, turned into a SOQLError by the parser.
type soqlLexError struct {
	pos    int
	detail string
}

func soqlIsIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func soqlIsDigit(c byte) bool { return c >= '0' && c <= '9' }

func soqlLex(src string) ([]soqlToken, *soqlLexError) {
	var toks []soqlToken
	i := 0
	for {
		for i < len(src) && strings.IndexByte(" \t\r\n\f", src[i]) >= 0 {
			i++
		}
		if i >= len(src) {
			toks = append(toks, soqlToken{kind: soqlEOF, text: "<EOF>", pos: i})
			return toks, nil
		}
		start, c := i, src[i]
		switch {
		case c == ',':
			toks = append(toks, soqlToken{soqlComma, ",", i})
			i++
		case c == '(':
			toks = append(toks, soqlToken{soqlLParen, "(", i})
			i++
		case c == ')':
			toks = append(toks, soqlToken{soqlRParen, ")", i})
			i++
		case c == '=':
			toks = append(toks, soqlToken{soqlOp, "=", i})
			i++
		case c == '!' || c == '<' || c == '>':
			i++
			if i < len(src) && (src[i] == '=' || (c == '<' && src[i] == '>')) {
				i++
			}
			text := src[start:i]
			kind := soqlOp
			if text == "!" {
				kind = soqlIllegal
			}
			toks = append(toks, soqlToken{kind, text, start})
		case c == '\'':
			i++
			for {
				if i >= len(src) {
					return nil, &soqlLexError{start, "unterminated string literal"}
				}
				if src[i] == '\\' {
					i += 2
					continue
				}
				if src[i] == '\'' {
					break
				}
				i++
			}
			body := src[start+1 : i]
			if _, _, err := soqlUnescape(body); err != "" {
				return nil, &soqlLexError{start, err}
			}
			toks = append(toks, soqlToken{soqlString, body, start})
			i++
		case soqlIsIdentStart(c):
			for i < len(src) && (soqlIsIdentStart(src[i]) || soqlIsDigit(src[i]) || src[i] == '.') {
				i++
			}
			text := src[start:i]
			kind := soqlIdent
			for _, seg := range strings.Split(text, ".") {
				if seg == "" || !soqlIsIdentStart(seg[0]) {
					kind = soqlIllegal
				}
			}
			toks = append(toks, soqlToken{kind, text, start})
		case soqlIsDigit(c) || ((c == '-' || c == '+' || c == '.') && i+1 < len(src) && (soqlIsDigit(src[i+1]) || src[i+1] == '.')):
			tok, err := soqlLexNumberOrDate(src, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, tok)
			i += len(tok.text)
		default:
			_, size := utf8.DecodeRuneInString(src[i:])
			toks = append(toks, soqlToken{soqlIllegal, src[i : i+size], i})
			i += size
		}
	}
}

// soqlLexNumberOrDate reads a number, or a date / date-time literal, which
// SOQL writes unquoted: 2026-01-05, 2026-01-05T10:30:00Z,
// 2026-01-05T10:30:00.000+0000, 2026-01-05T10:30:00+01:00.
func soqlLexNumberOrDate(src string, start int) (soqlToken, *soqlLexError) {
	if soqlLooksLikeDate(src[start:]) {
		i := start + 10
		kind := soqlDate
		if i < len(src) && (src[i] == 'T' || src[i] == 't') {
			kind = soqlDateTime
			i++
			for i < len(src) && (soqlIsDigit(src[i]) || strings.IndexByte(":.+-Zz", src[i]) >= 0) {
				i++
			}
		}
		text := src[start:i]
		if _, err := soqlParseTime(text, kind == soqlDateTime); err != nil {
			what := "date"
			if kind == soqlDateTime {
				what = "date-time"
			}
			return soqlToken{}, &soqlLexError{start, fmt.Sprintf("invalid %s literal: %s", what, text)}
		}
		return soqlToken{kind, text, start}, nil
	}
	i := start
	if src[i] == '-' || src[i] == '+' {
		i++
	}
	digits, dot := 0, false
	for i < len(src) && (soqlIsDigit(src[i]) || (src[i] == '.' && !dot)) {
		if src[i] == '.' {
			dot = true
		} else {
			digits++
		}
		i++
	}
	text := src[start:i]
	if digits == 0 {
		return soqlToken{soqlIllegal, text, start}, nil
	}
	return soqlToken{soqlNumber, text, start}, nil
}

func soqlLooksLikeDate(s string) bool {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return false
	}
	for _, p := range []int{0, 1, 2, 3, 5, 6, 8, 9} {
		if !soqlIsDigit(s[p]) {
			return false
		}
	}
	return true
}

// Layouts for date-time values: Salesforce writes +0000, ISO writers +00:00
// or Z. Fractional seconds are accepted by time.Parse without a layout
// element.
var soqlDateTimeLayouts = []string{"2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05Z0700"}

func soqlParseTime(s string, withTime bool) (time.Time, error) {
	if !withTime {
		return time.Parse("2006-01-02", s)
	}
	var err error
	for _, layout := range soqlDateTimeLayouts {
		var t time.Time
		if t, err = time.Parse(layout, strings.ToUpper(s)); err == nil {
			return t, nil
		}
	}
	return time.Time{}, err
}

// soqlUnescape decodes a string literal's body. literal marks the runes that
// came from \% and \_, which LIKE must treat as plain characters rather than
// wildcards. A non-empty err is the reason the literal is invalid.
func soqlUnescape(body string) (runes []rune, literal []bool, err string) {
	for i := 0; i < len(body); {
		r, size := utf8.DecodeRuneInString(body[i:])
		if r != '\\' {
			runes, literal = append(runes, r), append(literal, false)
			i += size
			continue
		}
		if i+1 >= len(body) {
			return nil, nil, "invalid escape sequence at end of string literal"
		}
		e := body[i+1]
		var out rune
		lit := false
		switch e {
		case 'n', 'N':
			out = '\n'
		case 'r', 'R':
			out = '\r'
		case 't', 'T':
			out = '\t'
		case 'b', 'B':
			out = '\b'
		case 'f', 'F':
			out = '\f'
		case '"', '\'', '\\':
			out = rune(e)
		case '%', '_':
			out, lit = rune(e), true
		default:
			r, _ := utf8.DecodeRuneInString(body[i+1:])
			return nil, nil, fmt.Sprintf("invalid escape sequence '\\%c' in string literal", r)
		}
		runes, literal = append(runes, out), append(literal, lit)
		i += 2
	}
	return runes, literal, ""
}

// ---- parser ----

// soqlReserved are SOQL's reserved words, never a field or object name.
// ORDER and OFFSET are not among them: Order is a standard object.
var soqlReserved = map[string]bool{
	"AND": true, "ASC": true, "DESC": true, "EXCLUDES": true, "FIRST": true, "FROM": true,
	"GROUP": true, "HAVING": true, "IN": true, "INCLUDES": true, "LAST": true, "LIKE": true,
	"LIMIT": true, "NOT": true, "NULL": true, "NULLS": true, "OR": true, "SELECT": true,
	"WHERE": true, "WITH": true,
}

// soqlUnsupportedClauses are valid SOQL the sandbox does not implement.
var soqlUnsupportedClauses = map[string]string{
	"USING":  "USING SCOPE",
	"WITH":   "WITH clauses",
	"GROUP":  "GROUP BY",
	"HAVING": "HAVING",
	"FOR":    "FOR VIEW / FOR REFERENCE / FOR UPDATE",
	"UPDATE": "UPDATE TRACKING / UPDATE VIEWSTAT",
}

type soqlParser struct {
	src  string
	toks []soqlToken
	i    int
}

// ParseSOQL parses q. Errors are *SOQLError, normally MALFORMED_QUERY with
// a Salesforce-style message naming the row, column and offending token.
func ParseSOQL(q string) (*Query, error) {
	toks, lexErr := soqlLex(q)
	p := &soqlParser{src: q, toks: toks}
	if lexErr != nil {
		return nil, p.errAt(lexErr.pos, lexErr.detail)
	}
	query, err := p.parseQuery()
	if err != nil {
		return nil, err
	}
	return query, nil
}

func (p *soqlParser) peek() soqlToken { return p.toks[p.i] }

func (p *soqlParser) next() soqlToken {
	t := p.toks[p.i]
	if t.kind != soqlEOF {
		p.i++
	}
	return t
}

func soqlIsKeyword(t soqlToken, kw string) bool {
	return t.kind == soqlIdent && strings.EqualFold(t.text, kw)
}

// errAt builds the message the way Salesforce lays it out: the offending
// line, a caret under the column, the position, then the reason.
func (p *soqlParser) errAt(pos int, detail string) *SOQLError {
	if pos > len(p.src) {
		pos = len(p.src)
	}
	lineStart := strings.LastIndexByte(p.src[:pos], '\n') + 1
	lineEnd := len(p.src)
	if k := strings.IndexByte(p.src[pos:], '\n'); k >= 0 {
		lineEnd = pos + k
	}
	row := strings.Count(p.src[:pos], "\n") + 1
	prefix := p.src[lineStart:pos]
	col := utf8.RuneCountInString(prefix) + 1
	var caret strings.Builder
	for _, r := range prefix {
		if r == '\t' {
			caret.WriteByte('\t')
		} else {
			caret.WriteByte(' ')
		}
	}
	caret.WriteByte('^')
	line := strings.TrimRight(p.src[lineStart:lineEnd], "\r")
	return &SOQLError{
		Code:    "MALFORMED_QUERY",
		Message: fmt.Sprintf("\n%s\n%s\nERROR at Row:%d:Column:%d\n%s", line, caret.String(), row, col, detail),
	}
}

func (p *soqlParser) unexpected(t soqlToken) *SOQLError {
	return p.errAt(t.pos, fmt.Sprintf("unexpected token: '%s'", t.text))
}

func (p *soqlParser) unsupported(t soqlToken, what string) *SOQLError {
	return p.errAt(t.pos, what+" is not supported by the ehrbridge sandbox")
}

func (p *soqlParser) expectKeyword(kw string) error {
	if t := p.next(); !soqlIsKeyword(t, kw) {
		return p.unexpected(t)
	}
	return nil
}

func (p *soqlParser) parseQuery() (*Query, error) {
	if err := p.expectKeyword("SELECT"); err != nil {
		return nil, err
	}
	q := &Query{}
	if t := p.peek(); t.kind == soqlIdent && strings.EqualFold(t.text, "COUNT") {
		p.next()
		if p.next().kind != soqlLParen {
			return nil, p.unexpected(t)
		}
		if c := p.next(); c.kind != soqlRParen {
			return nil, p.unsupported(t, "COUNT(fieldName)")
		}
		q.Count = true
		if c := p.peek(); c.kind == soqlComma {
			return nil, p.errAt(c.pos, "COUNT() must be the only element in the SELECT list")
		}
	}
	for !q.Count {
		t := p.peek()
		if t.kind == soqlLParen {
			return nil, p.unsupported(t, "a subquery in the SELECT list")
		}
		if soqlIsKeyword(t, "TYPEOF") {
			return nil, p.unsupported(t, "TYPEOF")
		}
		f, err := p.parseField()
		if err != nil {
			return nil, err
		}
		q.Fields = append(q.Fields, f)
		if p.peek().kind != soqlComma {
			break
		}
		p.next()
	}
	if err := p.expectKeyword("FROM"); err != nil {
		return nil, err
	}
	obj := p.next()
	if obj.kind != soqlIdent || soqlReserved[strings.ToUpper(obj.text)] || strings.Contains(obj.text, ".") {
		return nil, p.unexpected(obj)
	}
	q.Object = obj.text

	if soqlIsKeyword(p.peek(), "WHERE") {
		p.next()
		w, err := p.parseExpr(0)
		if err != nil {
			return nil, err
		}
		q.where = w
	}
	if t := p.peek(); soqlIsKeyword(t, "ORDER") {
		if q.Count {
			return nil, p.errAt(t.pos, "You can't use COUNT() with an ORDER BY clause")
		}
		p.next()
		if err := p.expectKeyword("BY"); err != nil {
			return nil, err
		}
		if err := p.parseOrderBy(q); err != nil {
			return nil, err
		}
	}
	if soqlIsKeyword(p.peek(), "LIMIT") {
		p.next()
		n, err := p.parseCount()
		if err != nil {
			return nil, err
		}
		q.Limit, q.hasLimit = n, true
	}
	if soqlIsKeyword(p.peek(), "OFFSET") {
		p.next()
		n, err := p.parseCount()
		if err != nil {
			return nil, err
		}
		if n > soqlMaxOffset {
			return nil, &SOQLError{Code: "NUMBER_OUTSIDE_VALID_RANGE", Message: fmt.Sprintf("Maximum SOQL offset allowed is %d", soqlMaxOffset)}
		}
		q.Offset = n
	}
	if t := p.peek(); t.kind != soqlEOF {
		if t.kind == soqlIdent {
			if what, ok := soqlUnsupportedClauses[strings.ToUpper(t.text)]; ok {
				return nil, p.unsupported(t, what)
			}
		}
		return nil, p.unexpected(t)
	}
	return q, nil
}

// parseField reads a field name or dotted relationship path; function calls
// (COUNT(), FIELDS(ALL), CALENDAR_YEAR(...), toLabel(...)) are rejected.
func (p *soqlParser) parseField() (string, error) {
	t := p.next()
	if t.kind != soqlIdent {
		return "", p.unexpected(t)
	}
	if p.peek().kind == soqlLParen {
		return "", p.unsupported(t, "the function "+t.text+"()")
	}
	if soqlReserved[strings.ToUpper(t.text)] {
		return "", p.unexpected(t)
	}
	return t.text, nil
}

func (p *soqlParser) parseCount() (int, error) {
	t := p.next()
	if t.kind != soqlNumber || strings.ContainsAny(t.text, ".+-") {
		return 0, p.unexpected(t)
	}
	n, err := strconv.Atoi(t.text)
	if err != nil || n > math.MaxInt32 {
		return 0, p.errAt(t.pos, fmt.Sprintf("number out of range: %s", t.text))
	}
	return n, nil
}

func (p *soqlParser) parseOrderBy(q *Query) error {
	for {
		f, err := p.parseField()
		if err != nil {
			return err
		}
		o := soqlOrder{path: strings.Split(f, "."), nullsFirst: true}
		if t := p.peek(); soqlIsKeyword(t, "ASC") || soqlIsKeyword(t, "DESC") {
			p.next()
			o.desc = soqlIsKeyword(t, "DESC")
		}
		if soqlIsKeyword(p.peek(), "NULLS") {
			p.next()
			switch t := p.next(); {
			case soqlIsKeyword(t, "FIRST"):
			case soqlIsKeyword(t, "LAST"):
				o.nullsFirst = false
			default:
				return p.unexpected(t)
			}
		}
		q.orderBy = append(q.orderBy, o)
		if p.peek().kind != soqlComma {
			return nil
		}
		p.next()
	}
}

// parseExpr reads conditions joined by AND or OR. Salesforce requires
// parentheses whenever AND and OR are mixed, so a second, different
// operator at the same level is an error rather than a precedence question.
func (p *soqlParser) parseExpr(depth int) (soqlExpr, error) {
	first, err := p.parseUnary(depth)
	if err != nil {
		return nil, err
	}
	items := []soqlExpr{first}
	op := ""
	for {
		t := p.peek()
		kw := ""
		switch {
		case soqlIsKeyword(t, "AND"):
			kw = "AND"
		case soqlIsKeyword(t, "OR"):
			kw = "OR"
		}
		if kw == "" {
			break
		}
		if op != "" && op != kw {
			return nil, p.errAt(t.pos, fmt.Sprintf("unexpected token: '%s' (AND and OR mixed without parentheses)", t.text))
		}
		op = kw
		p.next()
		e, err := p.parseUnary(depth)
		if err != nil {
			return nil, err
		}
		items = append(items, e)
	}
	switch op {
	case "AND":
		return soqlAnd(items), nil
	case "OR":
		return soqlOr(items), nil
	}
	return first, nil
}

func (p *soqlParser) parseUnary(depth int) (soqlExpr, error) {
	t := p.peek()
	if depth >= soqlMaxDepth {
		return nil, p.errAt(t.pos, "query is nested too deeply")
	}
	switch {
	case soqlIsKeyword(t, "NOT"):
		p.next()
		e, err := p.parseUnary(depth + 1)
		if err != nil {
			return nil, err
		}
		return soqlNot{e}, nil
	case t.kind == soqlLParen:
		p.next()
		e, err := p.parseExpr(depth + 1)
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != soqlRParen {
			return nil, p.unexpected(c)
		}
		return e, nil
	}
	return p.parseCondition()
}

func (p *soqlParser) parseCondition() (soqlExpr, error) {
	f, err := p.parseField()
	if err != nil {
		return nil, err
	}
	path := strings.Split(f, ".")
	t := p.next()
	switch {
	case t.kind == soqlOp:
		v, err := p.parseValue()
		if err != nil {
			return nil, err
		}
		op := t.text
		if op == "<>" {
			op = "!="
		}
		if v.kind == soqlNullValue && op != "=" && op != "!=" {
			return nil, p.errAt(t.pos, fmt.Sprintf("null can only be compared with = or !=, not %s", t.text))
		}
		return soqlCompare{path: path, op: op, lit: v}, nil
	case soqlIsKeyword(t, "IN"):
		return p.parseIn(path, false)
	case soqlIsKeyword(t, "NOT"):
		if in := p.next(); !soqlIsKeyword(in, "IN") {
			return nil, p.unexpected(in)
		}
		return p.parseIn(path, true)
	case soqlIsKeyword(t, "LIKE"):
		s := p.next()
		if s.kind != soqlString {
			return nil, p.unexpected(s)
		}
		runes, lit, _ := soqlUnescape(s.text)
		return soqlLike{path: path, pattern: runes, literal: lit}, nil
	case soqlIsKeyword(t, "INCLUDES") || soqlIsKeyword(t, "EXCLUDES"):
		return nil, p.unsupported(t, strings.ToUpper(t.text)+" (multi-select picklists)")
	}
	return nil, p.unexpected(t)
}

func (p *soqlParser) parseIn(path []string, negate bool) (soqlExpr, error) {
	if t := p.next(); t.kind != soqlLParen {
		return nil, p.unexpected(t)
	}
	if t := p.peek(); soqlIsKeyword(t, "SELECT") {
		return nil, p.unsupported(t, "a semi-join or anti-join subquery (IN (SELECT ...))")
	}
	var vals []soqlValue
	for {
		v, err := p.parseValue()
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
		t := p.next()
		if t.kind == soqlRParen {
			break
		}
		if t.kind != soqlComma {
			return nil, p.unexpected(t)
		}
	}
	return soqlIn{path: path, negate: negate, vals: vals}, nil
}

// soqlIsDateLiteral recognises SOQL's relative date literals (TODAY,
// LAST_N_DAYS:n, THIS_FISCAL_QUARTER ...), which the sandbox does not
// evaluate.
func soqlIsDateLiteral(word string) bool {
	w := strings.ToUpper(word)
	switch w {
	case "TODAY", "YESTERDAY", "TOMORROW":
		return true
	}
	for _, prefix := range []string{"LAST_", "NEXT_", "THIS_", "N_"} {
		if strings.HasPrefix(w, prefix) {
			return true
		}
	}
	return false
}

func (p *soqlParser) parseValue() (soqlValue, error) {
	t := p.next()
	switch t.kind {
	case soqlString:
		runes, _, _ := soqlUnescape(t.text)
		return soqlValue{kind: soqlStringValue, s: string(runes)}, nil
	case soqlNumber:
		n, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return soqlValue{}, p.errAt(t.pos, "invalid number: "+t.text)
		}
		return soqlValue{kind: soqlNumberValue, n: n, s: t.text}, nil
	case soqlDate, soqlDateTime:
		tm, _ := soqlParseTime(t.text, t.kind == soqlDateTime)
		kind := soqlDateValue
		if t.kind == soqlDateTime {
			kind = soqlDateTimeValue
		}
		return soqlValue{kind: kind, t: tm, s: t.text}, nil
	case soqlIdent:
		switch strings.ToUpper(t.text) {
		case "NULL":
			return soqlValue{kind: soqlNullValue}, nil
		case "TRUE":
			return soqlValue{kind: soqlBoolValue, b: true}, nil
		case "FALSE":
			return soqlValue{kind: soqlBoolValue}, nil
		}
		if soqlIsDateLiteral(t.text) {
			return soqlValue{}, p.unsupported(t, "the date literal "+t.text+" (write an explicit date or date-time)")
		}
	}
	return soqlValue{}, p.unexpected(t)
}

// ---- evaluation ----

type soqlValueKind int

const (
	soqlStringValue soqlValueKind = iota
	soqlNumberValue
	soqlBoolValue
	soqlNullValue
	soqlDateValue
	soqlDateTimeValue
)

// soqlValue is a literal from the query.
type soqlValue struct {
	kind soqlValueKind
	s    string // string value, or the text of a number or date
	n    float64
	b    bool
	t    time.Time
}

type soqlExpr interface{ eval(r Record) bool }

type soqlAnd []soqlExpr

func (e soqlAnd) eval(r Record) bool {
	for _, x := range e {
		if !x.eval(r) {
			return false
		}
	}
	return true
}

type soqlOr []soqlExpr

func (e soqlOr) eval(r Record) bool {
	for _, x := range e {
		if x.eval(r) {
			return true
		}
	}
	return false
}

type soqlNot struct{ e soqlExpr }

func (e soqlNot) eval(r Record) bool { return !e.e.eval(r) }

type soqlCompare struct {
	path []string
	op   string // =, !=, <, >, <=, >=
	lit  soqlValue
}

func (e soqlCompare) eval(r Record) bool {
	v := soqlResolve(r, e.path)
	if e.lit.kind == soqlNullValue {
		if e.op == "=" {
			return v == nil
		}
		return v != nil
	}
	if v == nil {
		// Only "= null" and "!= null" see a null; every other comparison
		// with one is false.
		return false
	}
	c, ok := soqlCompareLiteral(v, e.lit)
	if !ok {
		return false
	}
	switch e.op {
	case "=":
		return c == 0
	case "!=":
		return c != 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	}
	return false
}

type soqlIn struct {
	path   []string
	negate bool
	vals   []soqlValue
}

func (e soqlIn) eval(r Record) bool {
	v := soqlResolve(r, e.path)
	found := false
	for _, lit := range e.vals {
		if lit.kind == soqlNullValue {
			found = v == nil
		} else if v != nil {
			c, ok := soqlCompareLiteral(v, lit)
			found = ok && c == 0
		}
		if found {
			break
		}
	}
	if e.negate {
		// As with !=, a null field never satisfies NOT IN unless the list
		// names null.
		if v == nil {
			return false
		}
		return !found
	}
	return found
}

type soqlLike struct {
	path    []string
	pattern []rune
	literal []bool // pattern[i] came from \% or \_ and is no wildcard
}

func (e soqlLike) eval(r Record) bool {
	s, ok := soqlResolve(r, e.path).(string)
	if !ok {
		return false
	}
	return soqlLikeMatch([]rune(strings.ToLower(s)), e.pattern, e.literal)
}

// soqlLikeMatch matches case-insensitively with % (any run) and _ (one
// character), backtracking only to the last % so it stays O(len(s)*len(p)).
func soqlLikeMatch(s, pat []rune, literal []bool) bool {
	si, pi := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pat) && pat[pi] == '%' && !literal[pi]:
			star, mark = pi, si
			pi++
		case pi < len(pat) && ((pat[pi] == '_' && !literal[pi]) || unicode.ToLower(pat[pi]) == s[si]):
			si++
			pi++
		case star >= 0:
			mark++
			si, pi = mark, star+1
		default:
			return false
		}
	}
	for pi < len(pat) && pat[pi] == '%' && !literal[pi] {
		pi++
	}
	return pi == len(pat)
}

// soqlToNumber converts a record value to a number: float64 from JSON, other
// Go numbers a server might store, or numeric text.
func soqlToNumber(v any) (float64, bool) {
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case float32:
		f = float64(n)
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	case int32:
		f = float64(n)
	case uint64:
		f = float64(n)
	case json.Number:
		x, err := n.Float64()
		if err != nil {
			return 0, false
		}
		f = x
	case string:
		x, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		if err != nil {
			return 0, false
		}
		f = x
	default:
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

func soqlIsGoNumber(v any) bool {
	switch v.(type) {
	case float64, float32, int, int64, int32, uint64, json.Number:
		return true
	}
	return false
}

// soqlToTime reads a record value as a date or date-time.
func soqlToTime(v any) (t time.Time, dateOnly bool, ok bool) {
	switch x := v.(type) {
	case time.Time:
		return x, false, true
	case string:
		if len(x) == 10 && soqlLooksLikeDate(x) {
			t, err := time.Parse("2006-01-02", x)
			return t, true, err == nil
		}
		if len(x) > 10 && soqlLooksLikeDate(x) && (x[10] == 'T' || x[10] == 't') {
			t, err := soqlParseTime(x, true)
			return t, false, err == nil
		}
	}
	return time.Time{}, false, false
}

func soqlCmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func soqlCmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// soqlCmpText compares text case-insensitively, by upper-cased value as
// Salesforce's English-locale ordering does.
func soqlCmpText(a, b string) int {
	if strings.EqualFold(a, b) {
		return 0
	}
	return strings.Compare(strings.ToUpper(a), strings.ToUpper(b))
}

func soqlDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// soqlCompareLiteral compares a non-nil record value with a literal, the
// literal's type deciding how the value is read. ok is false when the value
// cannot be read as that type, which makes every comparison false.
func soqlCompareLiteral(v any, lit soqlValue) (int, bool) {
	switch lit.kind {
	case soqlNumberValue:
		f, ok := soqlToNumber(v)
		return soqlCmpFloat(f, lit.n), ok
	case soqlBoolValue:
		switch b := v.(type) {
		case bool:
			return soqlCmpBool(b, lit.b), true
		case string:
			if strings.EqualFold(b, "true") || strings.EqualFold(b, "false") {
				return soqlCmpBool(strings.EqualFold(b, "true"), lit.b), true
			}
		}
		return 0, false
	case soqlDateValue, soqlDateTimeValue:
		t, dateOnly, ok := soqlToTime(v)
		if !ok {
			return 0, false
		}
		if lit.kind == soqlDateValue && !dateOnly {
			// A date-time against a date compares its UTC calendar day.
			t = soqlDay(t)
		}
		return t.Compare(lit.t), true
	case soqlStringValue:
		switch x := v.(type) {
		case string:
			return soqlCmpText(x, lit.s), true
		case bool:
			return soqlCmpText(strconv.FormatBool(x), lit.s), true
		case time.Time:
			return soqlCmpText(x.UTC().Format("2006-01-02T15:04:05.000+0000"), lit.s), true
		}
		if soqlIsGoNumber(v) {
			f, _ := soqlToNumber(v)
			if n, ok := soqlToNumber(lit.s); ok {
				return soqlCmpFloat(f, n), true
			}
			return soqlCmpText(strconv.FormatFloat(f, 'f', -1, 64), lit.s), true
		}
	}
	return 0, false
}

// soqlCompareValues orders two non-nil record values for ORDER BY: numbers
// numerically, dates and date-times in time, booleans false first, anything
// else as case-insensitive text.
func soqlCompareValues(a, b any) int {
	if ab, ok := a.(bool); ok {
		if bb, ok := b.(bool); ok {
			return soqlCmpBool(ab, bb)
		}
	}
	if ta, _, ok := soqlToTime(a); ok {
		if tb, _, ok := soqlToTime(b); ok {
			return ta.Compare(tb)
		}
	}
	if fa, ok := soqlToNumber(a); ok {
		if fb, ok := soqlToNumber(b); ok {
			return soqlCmpFloat(fa, fb)
		}
	}
	return soqlCmpText(soqlText(a), soqlText(b))
}

func soqlText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// Paths lists the field paths the query names: the SELECT list, then the
// WHERE clause and ORDER BY, each as written ("Patient.Name" is
// ["Patient", "Name"]).
func (q *Query) Paths() [][]string {
	var out [][]string
	for _, f := range q.Fields {
		out = append(out, strings.Split(f, "."))
	}
	var walk func(e soqlExpr)
	walk = func(e soqlExpr) {
		switch e := e.(type) {
		case soqlAnd:
			for _, x := range e {
				walk(x)
			}
		case soqlOr:
			for _, x := range e {
				walk(x)
			}
		case soqlNot:
			walk(e.e)
		case soqlCompare:
			out = append(out, e.path)
		case soqlIn:
			out = append(out, e.path)
		case soqlLike:
			out = append(out, e.path)
		}
	}
	if q.where != nil {
		walk(q.where)
	}
	for _, o := range q.orderBy {
		out = append(out, o.path)
	}
	return out
}

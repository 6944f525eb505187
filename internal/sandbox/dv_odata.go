package sandbox

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The OData subset of the Dataverse side: entity references
// (set(guid), set(key='v',key2=2)), literals, $filter, $orderby, $select.

// dvPredicate is what names one row: its id, or an alternate key.
type dvPredicate struct {
	id  string
	key dvKey
}

var errODataSyntax = errors.New("malformed OData")

// splitEntityRef splits "set" or "set(predicate)" (already unescaped).
// Quotes are honoured, so a key value may hold "/", ")" or "," — clients
// do not percent-encode them.
func splitEntityRef(ref string) (set string, pred dvPredicate, err error) {
	open := strings.IndexByte(ref, '(')
	if open < 0 {
		if strings.ContainsAny(ref, "/'") {
			return "", pred, errODataSyntax
		}
		return ref, pred, nil
	}
	set = ref[:open]
	body, rest, err := scanParens(ref[open:])
	if err != nil || rest != "" {
		return "", pred, errODataSyntax
	}
	pred, err = parsePredicate(body)
	return set, pred, err
}

// scanParens reads "(...)" honouring quotes and returns its inside and
// what follows.
func scanParens(s string) (inside, rest string, err error) {
	if s == "" || s[0] != '(' {
		return "", "", errODataSyntax
	}
	inQuote := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			if inQuote && i+1 < len(s) && s[i+1] == '\'' {
				i++
				continue
			}
			inQuote = !inQuote
		case c == ')' && !inQuote:
			return s[1:i], s[i+1:], nil
		}
	}
	return "", "", errODataSyntax
}

// parsePredicate reads "guid" or "col='v',col2=5".
func parsePredicate(body string) (dvPredicate, error) {
	var p dvPredicate
	body = strings.TrimSpace(body)
	if isGUID(body) {
		p.id = strings.ToLower(body)
		return p, nil
	}
	for body != "" {
		eq := strings.IndexByte(body, '=')
		if eq <= 0 {
			return p, errODataSyntax
		}
		col := strings.ToLower(strings.TrimSpace(body[:eq]))
		if !validName(col) {
			return p, errODataSyntax
		}
		lit, rest, err := readLiteral(strings.TrimSpace(body[eq+1:]))
		if err != nil {
			return p, err
		}
		p.key.cols, p.key.vals = append(p.key.cols, col), append(p.key.vals, lit)
		rest = strings.TrimSpace(rest)
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return p, errODataSyntax
		}
		body = strings.TrimSpace(rest[1:])
	}
	if len(p.key.cols) == 0 {
		return p, errODataSyntax
	}
	return p, nil
}

// readLiteral reads one OData literal at the start of s: 'text' (with ”
// for a quote), a number, true, false, null, a GUID or a date-time.
func readLiteral(s string) (any, string, error) {
	if s == "" {
		return nil, "", errODataSyntax
	}
	if s[0] == '\'' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			if s[i] == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					b.WriteByte('\'')
					i++
					continue
				}
				return b.String(), s[i+1:], nil
			}
			b.WriteByte(s[i])
		}
		return nil, "", errODataSyntax
	}
	end := strings.IndexAny(s, " ,)")
	if end < 0 {
		end = len(s)
	}
	tok, rest := s[:end], s[end:]
	switch tok {
	case "true":
		return true, rest, nil
	case "false":
		return false, rest, nil
	case "null":
		return nil, rest, nil
	}
	if isGUID(tok) {
		return strings.ToLower(tok), rest, nil
	}
	if f, err := strconv.ParseFloat(tok, 64); err == nil {
		return f, rest, nil
	}
	if _, ok := dvParseTime(tok); ok {
		return tok, rest, nil
	}
	return nil, "", errODataSyntax
}

// dvFilter is a compiled $filter.
type dvFilter func(Record) bool

// parseFilter compiles comparisons (eq, ne, gt, ge, lt, le) of a column
// with a literal, joined by and / or, with not and parentheses.
func parseFilter(src string) (dvFilter, error) {
	p := &filterParser{s: src}
	f, err := p.or()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		// The position, not the text: a $filter's literals are keys.
		return nil, fmt.Errorf("%w: unexpected text at offset %d of $filter", errODataSyntax, p.i)
	}
	return f, nil
}

type filterParser struct {
	s string
	i int
}

func (p *filterParser) space() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

// word reads an identifier or keyword.
func (p *filterParser) word() string {
	p.space()
	start := p.i
	for p.i < len(p.s) && (p.s[p.i] == '_' || p.s[p.i] >= 'a' && p.s[p.i] <= 'z' || p.s[p.i] >= 'A' && p.s[p.i] <= 'Z' || p.s[p.i] >= '0' && p.s[p.i] <= '9') {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *filterParser) peekWord(w string) bool {
	save := p.i
	got := p.word()
	if strings.EqualFold(got, w) {
		return true
	}
	p.i = save
	return false
}

func (p *filterParser) or() (dvFilter, error) {
	left, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peekWord("or") {
		right, err := p.and()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(r Record) bool { return l(r) || right(r) }
	}
	return left, nil
}

func (p *filterParser) and() (dvFilter, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.peekWord("and") {
		right, err := p.unary()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(r Record) bool { return l(r) && right(r) }
	}
	return left, nil
}

func (p *filterParser) unary() (dvFilter, error) {
	if p.peekWord("not") {
		f, err := p.unary()
		if err != nil {
			return nil, err
		}
		return func(r Record) bool { return !f(r) }, nil
	}
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '(' {
		p.i++
		f, err := p.or()
		if err != nil {
			return nil, err
		}
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != ')' {
			return nil, fmt.Errorf("%w: missing ) in $filter", errODataSyntax)
		}
		p.i++
		return f, nil
	}
	col := strings.ToLower(p.word())
	if col == "" {
		return nil, fmt.Errorf("%w: expected a column in $filter", errODataSyntax)
	}
	op := strings.ToLower(p.word())
	p.space()
	lit, rest, err := readLiteral(p.s[p.i:])
	if err != nil {
		return nil, fmt.Errorf("%w: bad literal after %s %s", errODataSyntax, col, op)
	}
	p.i = len(p.s) - len(rest)
	var test func(c int, ok bool) bool
	switch op {
	case "eq":
		return func(r Record) bool { return dvEqual(r[col], lit) }, nil
	case "ne":
		return func(r Record) bool { return !dvEqual(r[col], lit) }, nil
	case "gt":
		test = func(c int, ok bool) bool { return ok && c > 0 }
	case "ge":
		test = func(c int, ok bool) bool { return ok && c >= 0 }
	case "lt":
		test = func(c int, ok bool) bool { return ok && c < 0 }
	case "le":
		test = func(c int, ok bool) bool { return ok && c <= 0 }
	default:
		return nil, fmt.Errorf("%w: unsupported operator %q in $filter", errODataSyntax, op)
	}
	return func(r Record) bool { return test(dvCompare(r[col], lit)) }, nil
}

// dvCompare orders two values of one kind: numbers, date-times, text.
func dvCompare(a, b any) (int, bool) {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		if !ok {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		tx, okx := dvParseTime(x)
		ty, oky := dvParseTime(y)
		if okx && oky {
			return tx.Compare(ty), true
		}
		return strings.Compare(strings.ToLower(x), strings.ToLower(y)), true
	case bool:
		y, ok := b.(bool)
		if !ok {
			return 0, false
		}
		if x == y {
			return 0, true
		}
		if !x {
			return -1, true
		}
		return 1, true
	}
	return 0, false
}

// dvOrder is one $orderby term.
type dvOrder struct {
	col  string
	desc bool
}

func parseOrderBy(src string) ([]dvOrder, error) {
	var out []dvOrder
	for _, term := range strings.Split(src, ",") {
		f := strings.Fields(term)
		if len(f) == 0 || len(f) > 2 || !validName(f[0]) {
			return nil, fmt.Errorf("%w: bad $orderby", errODataSyntax)
		}
		o := dvOrder{col: strings.ToLower(f[0])}
		if len(f) == 2 {
			switch strings.ToLower(f[1]) {
			case "asc":
			case "desc":
				o.desc = true
			default:
				return nil, fmt.Errorf("%w: bad $orderby direction", errODataSyntax)
			}
		}
		out = append(out, o)
	}
	return out, nil
}

// sortRows orders rows by the terms; nulls first ascending, as SQL
// Server does; ties keep creation order.
func sortRows(rows []Record, order []dvOrder) {
	sort.SliceStable(rows, func(i, j int) bool { return rowCompare(rows[i], rows[j], order) < 0 })
}

// rowCompare orders two rows by order: a missing value first, descending
// columns reversed.
func rowCompare(x, y Record, order []dvOrder) int {
	for _, o := range order {
		a, b := x[o.col], y[o.col]
		var c int
		switch {
		case a == nil && b == nil:
			c = 0
		case a == nil:
			c = -1
		case b == nil:
			c = 1
		default:
			c, _ = dvCompare(a, b)
		}
		if o.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// parseSelect reads $select: column names.
func parseSelect(src string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(src, ",") {
		c = strings.ToLower(strings.TrimSpace(c))
		if !validName(c) {
			return nil, fmt.Errorf("%w: bad $select", errODataSyntax)
		}
		out = append(out, c)
	}
	return out, nil
}

// dvView is a row as the Web API returns it: the etag, the primary key,
// and the selected columns (all without $select). Lookup columns come
// with the annotations Dataverse adds.
func dvView(t *objectStore, r Record, sel []string) map[string]any {
	out := map[string]any{"@odata.etag": fmt.Sprintf("W/\"%v\"", r["versionnumber"])}
	pk := primaryKey(t)
	out[pk] = r[pk]
	if sel == nil {
		for k, v := range r {
			out[k] = v
		}
		return out
	}
	for _, c := range sel {
		v, ok := r[c]
		if !ok {
			v = nil
		}
		out[c] = v
	}
	return out
}

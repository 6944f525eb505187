package mappings

import (
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// Key lint: findings about key expressions (op keys, lanes, the key of
// ref(object, key_field, key)) that do not stop a mapping from loading,
// because the key rules at run time already refuse what they would
// break, but that an admin should fix: parts that run together, a part
// that falls back to blank text, and identifiers read without their
// namespace.

// identifierFields are the HL7 fields of type CX (id in component 1,
// assigning authority HD in component 4) and EI (id in component 1,
// namespace in components 2–4) that keys are commonly made of.
var identifierFields = map[string]string{
	"PID-2": "CX", "PID-3": "CX", "PID-4": "CX", "PID-18": "CX", "PID-21": "CX",
	"MRG-1": "CX", "MRG-2": "CX", "MRG-3": "CX", "MRG-5": "CX", "MRG-6": "CX",
	"PV1-19": "CX", "PV1-50": "CX",
	"OBR-2": "EI", "OBR-3": "EI", "ORC-2": "EI", "ORC-3": "EI", "ORC-4": "EI",
	"SCH-1": "EI", "SCH-2": "EI", "SCH-4": "EI", "SCH-5": "EI",
	"TXA-12": "EI", "TXA-13": "EI", "TXA-14": "EI", "TXA-16": "EI",
}

// lintKey reports, as warnings at n, what is wrong with a key expression.
func (sc *scope) lintKey(x *expression, n *yaml.Node, what string) {
	if x == nil || sc.m.fhir {
		if x != nil {
			sc.lintJoins(x.root, n, what)
		}
		return
	}
	sc.lintJoins(x.root, n, what)
	sc.lintBlankFallbacks(x.root, n, what)
	var ids []string
	reads := map[string]bool{} // "PID-3.4", "PID-3*" (read whole), "MSH-4"
	walkPaths(x.root, func(p hl7.Path, comp int, whole bool) {
		f := fmt.Sprintf("%s-%d", p.Segment, p.Field)
		if f == "MSH-4" || f == "MSH-3" {
			reads["MSH-4"] = true
		}
		if whole && comp == 0 {
			reads[f+"*"] = true
		}
		reads[fmt.Sprintf("%s.%d", f, comp)] = true
		if _, ok := identifierFields[f]; ok && comp == 1 {
			ids = append(ids, f)
		}
	})
	seen := map[string]bool{}
	for _, f := range ids {
		if seen[f] {
			continue
		}
		seen[f] = true
		if reads["MSH-4"] || reads[f+"*"] {
			continue
		}
		switch identifierFields[f] {
		case "CX":
			if !reads[f+".4"] {
				sc.warnAt(n, "%s: %s.1 is an identifier (CX) read without its assigning authority (%s.4, ns(%s.4)) or the sending facility (ns(MSH-4)): two senders' identifiers can collide", what, f, f, f)
			}
		case "EI":
			if !reads[f+".2"] && !reads[f+".3"] {
				sc.warnAt(n, "%s: %s.1 is an entity identifier (EI) read without its namespace (ns(%s.2, %s.3, %s.4)) or the sending facility (ns(MSH-4)): two senders' identifiers can collide", what, f, f, f, f)
			}
		}
	}
}

// lintJoins warns about concat() and format() parts that run together
// with nothing between them: concat(A, B) gives the same key for "1"+"23"
// and "12"+"3".
func (sc *scope) lintJoins(root node, n *yaml.Node, what string) {
	walk(root, func(nd node) {
		c, ok := nd.(*call)
		if !ok {
			return
		}
		switch c.fn {
		case functions["concat"]:
			for i := 1; i < len(c.args); i++ {
				if !isSeparator(c.args[i-1]) && !isSeparator(c.args[i]) {
					sc.warnAt(n, "%s: parts %d and %d of concat() run together with no separator: add one, like concat(a, \"|\", b), or use key(a, b)", what, i, i+1)
				}
			}
		case functions["format"]:
			prev := 0 // the value just before, with no text since
			for _, p := range c.pieces {
				switch {
				case p.arg > 0 && prev > 0:
					sc.warnAt(n, "%s: values {%d} and {%d} of format() run together with no separator: put one between them", what, prev, p.arg)
					prev = p.arg
				case p.arg > 0:
					prev = p.arg
				case p.lit != "":
					prev = 0
				}
			}
		}
	})
}

// lintBlankFallbacks warns about a key part that falls back to blank
// literal text (coalesce(PID-3.4, ""), default(x, " "), if(c, x, ""),
// lookup(t, x, "")): blank parts are absent in a key so that a missing
// identifier refuses the message, and such a fallback writes one anyway,
// so that every message without the value shares the part. HL7 mappings
// only: a message always has a namespace to fall back to (MSH-4, MSH-3),
// while a FHIR coding without a system has none.
func (sc *scope) lintBlankFallbacks(root node, n *yaml.Node, what string) {
	warned := false
	walk(root, func(nd node) {
		c, ok := nd.(*call)
		if !ok || warned {
			return
		}
		var alts []node
		name := ""
		switch c.fn {
		case functions["coalesce"]:
			alts, name = c.args, "coalesce"
		case functions["default"]:
			alts, name = c.args, "default"
		case functions["if"]:
			alts, name = c.args[1:], "if"
		case functions["lookup"]:
			alts, name = c.args[2:], "lookup"
		}
		for _, a := range alts {
			if l, ok := a.(literal); ok && (l.v.Kind == Null || strings.TrimSpace(l.v.Text) == "") {
				sc.warnAt(n, "%s: a part falls back to blank text in %s(): every input without the value shares that part; leave the fallback out so that such an input is refused", what, name)
				warned = true
				return
			}
		}
	})
}

// isSeparator reports whether a concat part is literal text that is not
// empty.
func isSeparator(n node) bool {
	l, ok := n.(literal)
	return ok && l.v.Kind == String && l.v.Text != ""
}

// walk calls fn on every node of an expression.
func walk(n node, fn func(node)) {
	fn(n)
	if c, ok := n.(*call); ok {
		for _, a := range c.args {
			walk(a, fn)
		}
	}
}

// walkPaths calls fn for every HL7 value an expression reads: the path,
// the component it reads (a pick() reads its want component), and
// whether it is read whole (ns()).
func walkPaths(n node, fn func(p hl7.Path, comp int, whole bool)) {
	walk(n, func(nd node) {
		switch v := nd.(type) {
		case *hl7Path:
			comp := v.p.Component
			if comp == 0 && !v.whole {
				comp = 1 // a field read alone reads its first component
			}
			fn(v.p, comp, v.whole)
		case *call:
			if v.fn == functions["pick"] {
				base := v.args[0].(*hl7Path)
				if want, ok := v.args[3].(literal); ok {
					var comp int
					fmt.Sscan(want.v.Text, &comp)
					fn(base.p, comp, base.whole)
				}
			}
		}
	})
}

// keyCalls returns the key arguments of ref(object, key_field, key)
// calls in an expression.
func keyCalls(n node) []node {
	var out []node
	walk(n, func(nd node) {
		if c, ok := nd.(*call); ok && c.fn == functions["ref"] && len(c.args) == 3 {
			out = append(out, c.args[2])
		}
	})
	return out
}

func (sc *scope) warnAt(n *yaml.Node, format string, args ...any) {
	sc.m.lint = append(sc.m.lint, Problem{File: sc.l.file, Line: n.Line, Col: n.Column, Msg: "warning: " + fmt.Sprintf(format, args...)})
}

// Lint returns the mapping's warnings: findings that do not stop it from
// loading (see ehrbridge lint).
func (m *Mapping) Lint() Problems { return m.lint }

// Lint returns the warnings of every mapping of the set, in file order.
func (s *Set) Lint() Problems {
	var out Problems
	for _, m := range s.Mappings {
		out = append(out, m.lint...)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Line < out[j].Line
	})
	return out
}

package mappings

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ehrbridge/ehrbridge/hl7"

	"github.com/ehrbridge/ehrbridge/internal/problems"
)

// Mapping is one compiled mapping file.
type Mapping struct {
	// Name is the file's base name without extension; it is unique in a Set.
	Name string
	// File is the path the mapping was read from.
	File        string
	Description string

	fhir     bool
	hl7Out   bool      // output: hl7 — ops are segments of an HL7 message
	hl7Types []msgType // HL7 input: accepted MSH-9 types and triggers
	fhirRes  []string  // FHIR input: accepted resource types
	lane     *expression
	zone     *time.Location
	ops      []*opDef
	onDelete *deleteRule // FHIR: what a deleted resource's record becomes
	lint     Problems    // warnings (Lint)
}

// Output is what the mapping's ops are: OutputCRM or OutputHL7.
func (m *Mapping) Output() string {
	if m.hl7Out {
		return OutputHL7
	}
	return OutputCRM
}

// msgType is one accepted MSH-9: a type with its triggers (nil: any).
type msgType struct {
	typ      string
	triggers []string
}

// opDef is one compiled op of a mapping.
type opDef struct {
	ID       string
	Object   string
	Action   string
	KeyField string
	key      *expression
	cond     *expression
	foreach  *foreach
	fields   []fieldDef
	line     int
	col      int
	keyLine  int // position of key_field's value, for schema problems
	keyCol   int
	objLine  int // position of object's value
	objCol   int
}

type fieldDef struct {
	name      string
	expr      *expression
	line, col int // position of the target field's name
}

// foreach says what an op repeats over: HL7 segments (OBX), the
// repetitions of an HL7 field (PID-3), or the items a FHIRPath gives.
type foreach struct {
	src     string
	segment string    // HL7: repeat per segment with this id
	field   *hl7.Path // HL7: repeat per repetition of this field
	fhir    *fhirPath // FHIR: repeat per item
}

// Options configure loading.
type Options struct {
	// Zone is where HL7 times without an offset are placed, unless a
	// mapping names its own timezone; default the machine's local zone.
	Zone *time.Location
	// Schemas, when given, make unknown target fields and key fields that
	// are not external ids into problems.
	Schemas *Schemas
	// OnSchemaCheck, when set, is told every check made against Schemas,
	// passed or failed (crm check prints them as a checklist; a failed one
	// is also a problem of Load).
	OnSchemaCheck func(SchemaCheck)
}

// loader compiles mapping files and collects their problems.
type loader struct {
	opts  Options
	file  string
	probs Problems
}

func (l *loader) add(line, col int, format string, args ...any) {
	l.probs = append(l.probs, Problem{File: l.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) addAt(n *yaml.Node, format string, args ...any) {
	l.add(n.Line, n.Column, format, args...)
}

// Load compiles the mapping files at paths; a directory contributes its
// *.yaml and *.yml files, except test files (*_test.yaml). It returns every
// problem found, as Problems, and no set if there is any.
func Load(paths []string, opts Options) (*Set, error) {
	files, probs := mappingFiles(paths)
	if opts.Zone == nil {
		opts.Zone = time.Local
	}
	s := &Set{}
	names := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			probs = append(probs, Problem{File: f, Msg: "cannot read: " + errText(err)})
			continue
		}
		m, ps := compileFile(f, data, opts)
		probs = append(probs, ps...)
		if m == nil {
			continue
		}
		if first, dup := names[m.Name]; dup {
			probs = append(probs, Problem{File: f, Msg: fmt.Sprintf("a mapping named %q is already loaded from %s; mapping names (file names) must be unique", m.Name, first)})
			continue
		}
		names[m.Name] = f
		s.Mappings = append(s.Mappings, m)
	}
	if len(probs) > 0 {
		return nil, probs.Sorted()
	}
	return s, nil
}

// mappingFiles expands paths into mapping files, sorted within each
// directory.
func mappingFiles(paths []string) ([]string, Problems) {
	var files []string
	var probs Problems
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			probs = append(probs, Problem{File: p, Msg: "cannot read: " + errText(err)})
			continue
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			probs = append(probs, Problem{File: p, Msg: "cannot read: " + errText(err)})
			continue
		}
		for _, e := range entries {
			n := e.Name()
			if e.IsDir() || IsTestFile(n) || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
				continue
			}
			files = append(files, filepath.Join(p, n))
		}
	}
	return files, probs
}

// IsTestFile reports whether a file name is a mapping test file.
func IsTestFile(name string) bool {
	return strings.HasSuffix(name, "_test.yaml") || strings.HasSuffix(name, "_test.yml")
}

func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Compile compiles one mapping from its bytes; name is used for positions
// and as the base of relative table paths.
func Compile(name string, data []byte, opts Options) (*Mapping, error) {
	if opts.Zone == nil {
		opts.Zone = time.Local
	}
	m, probs := compileFile(name, data, opts)
	if len(probs) > 0 {
		return nil, probs.Sorted()
	}
	return m, nil
}

// parseYAML reads a document into its root mapping node.
func parseYAML(file string, data []byte) (*yaml.Node, Problems) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Problems{yamlSyntaxProblem(file, data, err)}
	}
	if len(doc.Content) == 0 {
		return nil, Problems{{File: file, Msg: "the file is empty"}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, Problems{{File: file, Line: root.Line, Col: root.Column, Msg: "expected a mapping of keys (description, when, ops, ...)"}}
	}
	return root, nil
}

func compileFile(file string, data []byte, opts Options) (*Mapping, Problems) {
	root, probs := parseYAML(file, data)
	if root == nil {
		return nil, probs
	}
	l := &loader{opts: opts, file: file}
	base := filepath.Base(file)
	m := &Mapping{Name: strings.TrimSuffix(base, filepath.Ext(base)), File: file, zone: opts.Zone}
	keys := l.entries(root, []string{"description", "when", "output", "lane", "timezone", "tables", "z_segments", "ops", "on_delete"}, "mapping")
	if n := keys["description"]; n != nil {
		m.Description, _ = l.str(n, "description")
	}
	if n := keys["output"]; n != nil {
		if s, ok := l.str(n, "output"); ok {
			switch s {
			case OutputCRM:
			case OutputHL7:
				m.hl7Out = true
			default:
				l.addAt(n, "output %q: use crm (records, the default) or hl7 (segments of an HL7 message)", s)
			}
		}
	}
	if n := keys["timezone"]; n != nil {
		if s, ok := l.str(n, "timezone"); ok {
			loc, err := time.LoadLocation(s)
			if err != nil || s == "" {
				l.addAt(n, "timezone: unknown time zone %q (use an IANA name such as America/Chicago)", s)
			} else {
				m.zone = loc
			}
		}
	}
	if n := keys["when"]; n != nil {
		l.when(m, n)
	} else {
		l.add(root.Line, root.Column, "missing when: say which messages the mapping applies to (when: {hl7: ADT^A01|A04} or when: {fhir: Patient})")
	}
	tables := map[string]map[string]string{}
	if n := keys["tables"]; n != nil {
		tables = l.tables(n, filepath.Dir(file))
	}
	sc := &scope{l: l, m: m, tables: tables}
	if n := keys["z_segments"]; n != nil {
		sc.zsegs = l.zSegments(n)
	}
	if n := keys["lane"]; n != nil {
		m.lane = sc.expr(n, "lane")
		sc.lintKey(m.lane, n, "lane")
	}
	if n := keys["ops"]; n != nil {
		sc.ops(n)
	} else {
		l.add(root.Line, root.Column, "missing ops: a mapping needs at least one op")
	}
	sc.resolveRefs()
	if n := keys["on_delete"]; n != nil {
		l.onDelete(m, n, sc.byID)
	}
	if l.opts.Schemas != nil && len(l.probs) == 0 && !m.hl7Out {
		l.checkSchema(m)
	}
	if len(l.probs) > 0 {
		return nil, l.probs
	}
	return m, nil
}

// entries returns a mapping node's values by key, reporting unknown and
// repeated keys.
func (l *loader) entries(n *yaml.Node, known []string, what string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		l.addAt(n, "%s must be a mapping of keys (%s)", what, strings.Join(known, ", "))
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if _, dup := out[k.Value]; dup {
			l.addAt(k, "%s is given twice in this %s", k.Value, what)
			continue
		}
		if !slices.Contains(known, k.Value) {
			l.addAt(k, "unknown key %q in %s%s (known: %s)", k.Value, what, suggest(k.Value, known), strings.Join(known, ", "))
			continue
		}
		out[k.Value] = deref(v)
	}
	return out
}

func suggest(word string, known []string) string {
	best, dist := "", 3
	for _, k := range known {
		if d := problems.EditDistance(strings.ToLower(word), k); d < dist {
			best, dist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// deref follows YAML aliases (*name) to the anchored node (&name), so
// that a long expression can be written once and reused.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

// str reads a plain string value.
func (l *loader) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.addAt(n, "%s must be text", what)
		return "", false
	}
	return n.Value, true
}

// strList reads a string or a list of strings.
func (l *loader) strList(n *yaml.Node, what string) []string {
	if n.Kind == yaml.SequenceNode {
		var out []string
		for _, c := range n.Content {
			if s, ok := l.str(c, what); ok {
				out = append(out, s)
			}
		}
		return out
	}
	if s, ok := l.str(n, what); ok {
		return []string{s}
	}
	return nil
}

var (
	hl7TypeRe  = regexp.MustCompile(`^[A-Z0-9]{3}$`)
	triggerRe  = regexp.MustCompile(`^[A-Z0-9]{3}$`)
	resourceRe = regexp.MustCompile(`^[A-Z][A-Za-z]+$`)
)

// when reads `when: {hl7: "ADT^A01|A04"}` or `when: {fhir: Patient}`.
func (l *loader) when(m *Mapping, n *yaml.Node) {
	keys := l.entries(n, []string{"hl7", "fhir"}, "when")
	h, f := keys["hl7"], keys["fhir"]
	switch {
	case h != nil && f != nil:
		l.addAt(n, "when: give hl7 or fhir, not both (one mapping reads one kind of input)")
	case h != nil:
		for _, s := range l.strList(h, "when.hl7") {
			typ, trig, hasTrig := strings.Cut(strings.TrimSpace(s), "^")
			t := msgType{typ: strings.ToUpper(typ)}
			if !hl7TypeRe.MatchString(t.typ) {
				l.addAt(h, "when.hl7: %q is not a message type: write TYPE^TRIGGER|TRIGGER, like ADT^A01|A04", s)
				continue
			}
			if hasTrig {
				for _, tr := range strings.Split(trig, "|") {
					tr = strings.ToUpper(strings.TrimSpace(tr))
					if !triggerRe.MatchString(tr) {
						l.addAt(h, "when.hl7: %q is not a trigger event like A01", tr)
						continue
					}
					t.triggers = append(t.triggers, tr)
				}
			}
			m.hl7Types = append(m.hl7Types, t)
		}
	case f != nil:
		m.fhir = true
		for _, s := range l.strList(f, "when.fhir") {
			if !resourceRe.MatchString(s) {
				l.addAt(f, "when.fhir: %q is not a FHIR resource type like Patient", s)
				continue
			}
			m.fhirRes = append(m.fhirRes, s)
		}
	default:
		l.addAt(n, "when: give hl7 (like ADT^A01|A04) or fhir (like Patient)")
	}
}

// tables reads `tables:`: each a mapping of code → value, or the path of
// a CSV file (code,value per line) relative to the mapping file.
func (l *loader) tables(n *yaml.Node, dir string) map[string]map[string]string {
	out := map[string]map[string]string{}
	if n.Kind != yaml.MappingNode {
		l.addAt(n, "tables must map table names to code tables")
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !identRe.MatchString(k.Value) {
			l.addAt(k, "table name %q must be a word (letters, digits, _)", k.Value)
			continue
		}
		if _, dup := out[k.Value]; dup {
			l.addAt(k, "table %s is defined twice", k.Value)
			continue
		}
		switch v.Kind {
		case yaml.MappingNode:
			t := map[string]string{}
			for j := 0; j+1 < len(v.Content); j += 2 {
				ck, cv := v.Content[j], v.Content[j+1]
				if _, dup := t[ck.Value]; dup {
					l.addAt(ck, "code %q appears twice in table %s", ck.Value, k.Value)
				}
				if cv.Kind != yaml.ScalarNode {
					l.addAt(cv, "table %s: the value for code %q must be text", k.Value, ck.Value)
					continue
				}
				t[ck.Value] = cv.Value
			}
			out[k.Value] = t
		case yaml.ScalarNode:
			out[k.Value] = l.csvTable(v, k.Value, filepath.Join(dir, v.Value))
		default:
			l.addAt(v, "table %s must be a mapping of codes or the path of a CSV file", k.Value)
		}
	}
	return out
}

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// csvTable reads a code table: two columns, code and value; a first row
// "code,value" is a header; lines starting with # are comments.
func (l *loader) csvTable(n *yaml.Node, tname, path string) map[string]string {
	data, err := os.ReadFile(path)
	if err != nil {
		l.addAt(n, "table %s: cannot read %s: %s", tname, n.Value, errText(err))
		return nil
	}
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	r.FieldsPerRecord = 2
	r.TrimLeadingSpace = true
	t := map[string]string{}
	for first := true; ; first = false {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				l.addAt(n, "table %s: %s line %d: %s (want two columns: code,value)", tname, n.Value, pe.Line, pe.Err)
			} else {
				l.addAt(n, "table %s: %s: %s", tname, n.Value, err)
			}
			return nil
		}
		if first && strings.EqualFold(rec[0], "code") && strings.EqualFold(rec[1], "value") {
			continue
		}
		if _, dup := t[rec[0]]; dup {
			line, _ := r.FieldPos(0)
			l.addAt(n, "table %s: %s line %d: code %q appears twice", tname, n.Value, line, rec[0])
			continue
		}
		t[rec[0]] = rec[1]
	}
	return t
}

// scope compiles the expressions of one mapping.
type scope struct {
	l      *loader
	m      *Mapping
	tables map[string]map[string]string
	zsegs  map[string]bool // z_segments: the site-defined segments the mapping reads
	// at is the node being compiled, where a warning about it is put;
	// zWarned, the undeclared Z segments already warned about.
	at      *yaml.Node
	zWarned map[string]bool
	refs    []pendingRef
	byID    map[string]*opDef
}

type pendingRef struct {
	c    *call
	from *opDef
	n    *yaml.Node
}

// expr compiles a YAML value as an expression. A plain (unquoted) scalar
// or a block scalar (| or >, for long expressions) is an expression;
// quoted text is literal text unless it starts with "=" (for expressions
// YAML needs quoted); numbers, booleans and null are literals.
func (sc *scope) expr(n *yaml.Node, what string) *expression {
	x, _ := sc.exprCalls(n, what)
	return x
}

func (sc *scope) exprCalls(n *yaml.Node, what string) (*expression, []*call) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode {
		sc.l.addAt(n, "%s must be an expression or a value, not a %s", what, kindName(n))
		return nil, nil
	}
	switch n.Tag {
	case "!!null":
		return &expression{src: "null", root: literal{NullValue}}, nil
	case "!!int", "!!float":
		if _, err := strconv.ParseFloat(n.Value, 64); err != nil {
			sc.l.addAt(n, "%s: %q is not a number", what, n.Value)
			return nil, nil
		}
		return &expression{src: n.Value, root: literal{Num(canonicalNumber(n.Value))}}, nil
	case "!!bool":
		b, _ := strconv.ParseBool(strings.ToLower(n.Value))
		return &expression{src: n.Value, root: literal{Boolean(b)}}, nil
	}
	src, colShift := n.Value, 0
	if n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 {
		if !strings.HasPrefix(src, "=") {
			return &expression{src: strconv.Quote(src), root: literal{Str(src)}}, nil
		}
		src, colShift = src[1:], 2 // the quote and the "="
	} else if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		src = strings.TrimPrefix(strings.TrimSpace(src), "=")
	}
	sc.at = n
	root, calls, errs := parseExpression(src, sc.m.fhir, sc.tables, sc.pathProblem)
	for _, e := range errs {
		col := n.Column + colShift + e.off
		if strings.Contains(n.Value, "\n") || n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			col = n.Column
		}
		sc.l.add(n.Line, col, "%s: %s", what, e.msg)
	}
	if root == nil {
		return nil, nil
	}
	return &expression{src: src, root: root}, calls
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

var opKeys = []string{"id", "object", "action", "key_field", "key", "if", "foreach", "fields"}

func (sc *scope) ops(n *yaml.Node) {
	l := sc.l
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		l.addAt(n, "ops must be a list of one or more ops")
		return
	}
	sc.byID = map[string]*opDef{}
	for _, on := range n.Content {
		keys := l.entries(on, opKeys, "op")
		op := &opDef{Action: Upsert, line: on.Line, col: on.Column, keyLine: on.Line, keyCol: on.Column}
		if sc.m.hl7Out {
			op.Action = Segment
		}
		if k := keys["object"]; k != nil {
			if s, ok := l.str(k, "object"); ok {
				switch {
				case sc.m.hl7Out && !segmentRe.MatchString(s):
					l.addAt(k, "object %q is not an HL7 segment id (three letters or digits, like TXA or ZNT)", s)
				case sc.m.hl7Out && strings.HasPrefix(s, "Z"):
					// An op that writes a Z segment declares it.
					if sc.zsegs == nil {
						sc.zsegs = map[string]bool{}
					}
					sc.zsegs[s] = true
				case sc.m.hl7Out && sc.segmentProblem(s) != "":
					l.addAt(k, "object: %s", sc.segmentProblem(s))
				case !sc.m.hl7Out && !identRe.MatchString(s):
					l.addAt(k, "object %q is not an API name (letters, digits, _)", s)
				}
				op.Object = s
				op.objLine, op.objCol = k.Line, k.Column
			}
		} else if sc.m.hl7Out {
			l.addAt(on, "op has no object: say which segment it writes (object: TXA)")
		} else {
			l.addAt(on, "op has no object: say which CRM object it writes (object: Account)")
		}
		if sc.m.hl7Out {
			for _, k := range []string{"action", "key_field", "key"} {
				if n := keys[k]; n != nil {
					l.addAt(n, "%s: an op of an hl7 output mapping writes one segment; it has no %s", k, k)
				}
			}
		}
		op.ID = strings.ToLower(op.Object)
		if k := keys["id"]; k != nil {
			if s, ok := l.str(k, "id"); ok {
				if !identRe.MatchString(s) {
					l.addAt(k, "op id %q must be a word (letters, digits, _)", s)
				}
				op.ID = s
			}
		}
		if first, dup := sc.byID[op.ID]; dup && op.ID != "" {
			l.addAt(on, "op id %q is already used by the op at line %d; give this op its own id:", op.ID, first.line)
		} else {
			sc.byID[op.ID] = op
		}
		if k := keys["action"]; k != nil && !sc.m.hl7Out {
			if s, ok := l.str(k, "action"); ok {
				switch s {
				case Upsert, Update, Delete:
					op.Action = s
				default:
					l.addAt(k, "action %q: use upsert (the default), update or delete", s)
				}
			}
		}
		if k := keys["key_field"]; k != nil {
			if s, ok := l.str(k, "key_field"); ok {
				op.KeyField = s
				op.keyLine, op.keyCol = k.Line, k.Column
			}
		} else if !sc.m.hl7Out {
			l.addAt(on, "op %s has no key_field: name the external id field its key is written to", op.ID)
		}
		if k := keys["foreach"]; k != nil {
			op.foreach = sc.foreach(k)
		}
		var calls []*call
		if k := keys["key"]; k != nil {
			if !sc.m.hl7Out {
				op.key, calls = sc.exprCalls(k, "key")
				sc.pend(calls, op, k)
				sc.lintKey(op.key, k, "key")
			}
		} else if !sc.m.hl7Out {
			l.addAt(on, "op %s has no key: every op is written by a deterministic external key (key: PID-3.1)", op.ID)
		}
		if k := keys["if"]; k != nil {
			op.cond, calls = sc.exprCalls(k, "if")
			sc.pend(calls, op, k)
		}
		if k := keys["fields"]; k != nil {
			sc.fields(op, k)
		} else if op.Action != Delete {
			l.addAt(on, "op %s has no fields", op.ID)
		}
		sc.m.ops = append(sc.m.ops, op)
	}
}

func (sc *scope) pend(calls []*call, op *opDef, n *yaml.Node) {
	for _, c := range calls {
		sc.refs = append(sc.refs, pendingRef{c: c, from: op, n: n})
	}
}

func (sc *scope) fields(op *opDef, n *yaml.Node) {
	l := sc.l
	if n.Kind != yaml.MappingNode {
		l.addAt(n, "fields must map target fields to expressions (LastName: PID-5.1)")
		return
	}
	if op.Action == Delete && len(n.Content) > 0 {
		l.addAt(n, "a delete op writes no fields; remove fields or use update")
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if sc.m.hl7Out {
			if !sc.segmentField(op, k) {
				continue
			}
		} else if !fieldNameRe.MatchString(k.Value) {
			l.addAt(k, "target field %q is not an API name", k.Value)
			continue
		}
		if line, dup := seen[strings.ToLower(k.Value)]; dup {
			l.addAt(k, "duplicate target field %s (first at line %d)", k.Value, line)
			continue
		}
		seen[strings.ToLower(k.Value)] = k.Line
		if strings.EqualFold(k.Value, op.KeyField) {
			l.addAt(k, "%s is the op's key_field; its value comes from key:", k.Value)
			continue
		}
		x, calls := sc.exprCalls(v, k.Value)
		sc.pend(calls, op, v)
		if x != nil {
			for _, kn := range keyCalls(x.root) {
				sc.lintKey(&expression{root: kn}, v, k.Value+": the key of ref()")
			}
			op.fields = append(op.fields, fieldDef{name: k.Value, expr: x, line: k.Line, col: k.Column})
		}
	}
}

var (
	fieldNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.@]*$`)
	segmentRe   = regexp.MustCompile(`^[A-Z][A-Z0-9]{2}$`)
)

// segmentField checks a target of an hl7 output op: a path within the
// op's own segment (TXA-12.1, PID-3[2].4), reporting what is wrong.
func (sc *scope) segmentField(op *opDef, k *yaml.Node) bool {
	sc.at = k
	p, err := hl7.ParsePath(k.Value)
	switch {
	case err != nil:
		sc.l.addAt(k, "target %q is not an HL7 path like TXA-12.1: %s", k.Value, errText(err))
	case op.Object != "" && p.Segment != op.Object:
		sc.l.addAt(k, "target %s is not in segment %s: an op writes its own segment (add an op with object: %s)", k.Value, op.Object, p.Segment)
	case p.SegmentRep != 0:
		sc.l.addAt(k, "target %s names a segment occurrence; each op writes one new segment, so write %s", k.Value, strings.Replace(k.Value, k.Value[3:strings.IndexByte(k.Value, ']')+1], "", 1))
	case p.Segment == "MSH" && p.Field <= 2:
		sc.l.addAt(k, "MSH-1 and MSH-2 hold the delimiters; they cannot be mapped")
	case sc.segmentProblem(p.Segment) == "" && sc.pathProblem(p) != "":
		// (an unknown segment is reported once, at the op's object)
		sc.l.addAt(k, "target %s", sc.pathProblem(p))
	default:
		return true
	}
	return false
}

func (sc *scope) foreach(n *yaml.Node) *foreach {
	l := sc.l
	s, ok := l.str(n, "foreach")
	if !ok {
		return nil
	}
	fe := &foreach{src: s}
	sc.at = n
	if sc.m.fhir {
		var p exprParser
		p.fhir = true
		fp := p.compileFHIR(0, s)
		if fp == nil {
			l.addAt(n, "foreach: %s", p.errs[0].msg)
			return nil
		}
		fe.fhir = fp.(*fhirPath)
		return fe
	}
	if looksLikeSegment(s) {
		if msg := sc.segmentProblem(s); msg != "" {
			l.addAt(n, "foreach: %s", msg)
			return nil
		}
		fe.segment = s
		return fe
	}
	p, err := hl7.ParsePath(s)
	if err != nil || p.Component > 0 || p.Rep > 0 {
		l.addAt(n, "foreach: %q must be a segment id (OBX) or a repeating field (PID-3)", s)
		return nil
	}
	if msg := sc.pathProblem(p); msg != "" {
		l.addAt(n, "foreach: %s", msg)
		return nil
	}
	fe.field = &p
	return fe
}

// resolveRefs binds each ref(op) to its op, now that all ops are known.
func (sc *scope) resolveRefs() {
	for _, r := range sc.refs {
		id := r.c.args[0].(name).s
		target, ok := sc.byID[id]
		switch {
		case !ok:
			ids := make([]string, 0, len(sc.byID))
			for k := range sc.byID {
				ids = append(ids, k)
			}
			sort.Strings(ids)
			sc.l.addAt(r.n, "ref(%s): there is no op with id %q in this mapping (ops: %s)", id, id, strings.Join(ids, ", "))
		case sc.m.hl7Out:
			sc.l.addAt(r.n, "ref(%s): an hl7 output mapping writes segments, which do not refer to each other", id)
		case target == r.from:
			sc.l.addAt(r.n, "ref(%s): an op cannot refer to itself", id)
		case target.foreach != nil:
			sc.l.addAt(r.n, "ref(%s): op %s repeats (foreach), so its key is not one record; refer to a single op", id, id)
		default:
			r.c.ref = target
		}
	}
}

package config

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf16"

	"go.yaml.in/yaml/v3"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
	"github.com/ehrbridge/ehrbridge/internal/problems"
)

// maxProblems bounds the problems collected from one file. Past it the
// rest is noise, and aliases could otherwise multiply problems without
// limit in a hostile file.
const maxProblems = 100

var (
	durationType = reflect.TypeFor[Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
	secretType   = reflect.TypeFor[SecretRef]()
)

// wantString is what a string field expects, in messages.
const wantString = "a string"

// defaulter is implemented (on the pointer) by schema structs whose zero
// value is not their default. The decoder calls it on every struct it
// creates for a list item or pointer, before decoding into it, so that a
// value explicitly written as 0 is kept and reported rather than replaced.
type defaulter interface {
	setDefaults()
}

// sharedDefaulter is [defaulter] for the settings types declared outside
// this package (configvalue, the components).
type sharedDefaulter interface {
	SetDefaults()
}

// decoder turns a yaml.Node tree into schema structs, collecting problems
// instead of stopping at the first one.
type decoder struct {
	pos    positions
	lookup func(string) (string, bool)
	probs  Problems

	// active holds alias targets being decoded, to stop self-referencing
	// anchors (which yaml.v3 accepts in a Node tree) from recursing forever.
	active map[*yaml.Node]bool
	// merged memoizes each mapping's entries after merge keys, so that
	// chains of merges cost linear time instead of exponential.
	merged  map[*yaml.Node][]entry
	merging map[*yaml.Node]bool
}

// decodeDocument parses data as one YAML document and decodes it into
// target, a pointer to a struct that already holds its defaults. complete
// is false when decoding did not run to the end (a syntax error or too
// many problems), in which case validation would only add noise.
func decodeDocument(name string, data []byte, lookup func(string) (string, bool), target any) (pos positions, probs Problems, complete bool) {
	d := &decoder{
		pos:     positions{file: name, m: map[string]position{}, env: map[string]string{}},
		lookup:  lookup,
		active:  map[*yaml.Node]bool{},
		merged:  map[*yaml.Node][]entry{},
		merging: map[*yaml.Node]bool{},
	}
	data = toUTF8(data)
	root, probs := parseYAML(name, data)
	if root == nil && len(probs) > 0 {
		return d.pos, probs, false
	}
	d.probs = probs
	if root == nil {
		// An empty file is an empty mapping; it has no position.
		root = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	}
	d.pos.m[""] = position{root.Line, root.Column}
	d.decode(root, reflect.ValueOf(target).Elem(), "")
	return d.pos, d.probs, len(d.probs) < maxProblems
}

// parseYAML returns the content node of the only document in data, nil
// for an empty file. A second document is a problem but the first is still
// returned so its own problems are reported too.
func parseYAML(name string, data []byte) (*yaml.Node, Problems) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, Problems{syntaxProblem(name, data, err)}
	}
	var root *yaml.Node
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	var probs Problems
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		probs = append(probs, Problem{File: name, Line: next.Line, Col: next.Column,
			Msg: "multiple YAML documents in one file are not supported (remove the extra ---)"})
	case !errors.Is(err, io.EOF):
		probs = append(probs, syntaxProblem(name, data, err))
	}
	if root == nil {
		root = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	}
	return root, probs
}

var (
	yamlLineRe   = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)
	yamlAnchorRe = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
)

// yamlParserErrors are the messages of libyaml's parser stage (the rest
// come from its scanner). yaml.v3 reports the 0-based line for these, and
// no line at all for the first line, while scanner lines are 1-based.
var yamlParserErrors = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found undefined tag handle":             true,
	"found duplicate %YAML directive":        true,
	"found duplicate %TAG directive":         true,
	"found incompatible YAML document":       true,
}

// syntaxProblem turns a yaml.v3 parse error into a Problem. yaml.v3 only
// reports a line, so the column is 1.
func syntaxProblem(name string, data []byte, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if yamlParserErrors[msg] {
		line++
	}
	// At the end of the input the reported line can be one past the last.
	line = min(line, lineCount(data))
	p := Problem{File: name, Line: line, Msg: "invalid YAML: " + msg}
	if line > 0 {
		p.Col = 1
	}
	if m := yamlAnchorRe.FindStringSubmatch(msg); m != nil {
		// yaml.v3 gives no position for this one; the first use of the
		// alias is where the operator has to look.
		if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
			p.Line = bytes.Count(data[:i], []byte("\n")) + 1
			p.Col = i - bytes.LastIndexByte(data[:i], '\n')
		}
	}
	return p
}

// toUTF8 transcodes UTF-16 input (which YAML allows, marked by a BOM) to
// UTF-8, so that line counting and searches in data see what the parser
// sees. Anything else is returned unchanged.
func toUTF8(data []byte) []byte {
	var order binary.ByteOrder
	switch {
	case len(data)%2 != 0:
		return data
	case bytes.HasPrefix(data, []byte{0xFE, 0xFF}):
		order = binary.BigEndian
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}):
		order = binary.LittleEndian
	default:
		return data
	}
	units := make([]uint16, 0, len(data)/2-1)
	for i := 2; i < len(data); i += 2 {
		units = append(units, order.Uint16(data[i:]))
	}
	return []byte(string(utf16.Decode(units)))
}

// lineCount is the number of lines in data as YAML counts them: \n, \r\n,
// a lone \r and the Unicode breaks NEL, LS and PS all end a line.
func lineCount(data []byte) int {
	n := 1 + bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n"))
	for _, br := range []string{"\u0085", "\u2028", "\u2029"} {
		n += bytes.Count(data, []byte(br))
	}
	return n
}

// addf records a problem at node n.
func (d *decoder) addf(n *yaml.Node, format string, args ...any) {
	if len(d.probs) >= maxProblems {
		return
	}
	d.probs = append(d.probs, Problem{File: d.pos.file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)})
}

// full reports whether decoding should stop.
func (d *decoder) full() bool { return len(d.probs) >= maxProblems }

// decode decodes n into v, which is addressable. Problems are reported for
// path; v is left unchanged when n is null or invalid.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if d.full() {
		return
	}
	if n.Kind == yaml.AliasNode {
		t := n.Alias
		if t == nil || d.active[t] {
			d.addf(n, "%s: alias *%s refers to itself", pathName(path), n.Value)
			return
		}
		d.active[t] = true
		defer delete(d.active, t)
		d.decode(t, v, path)
		return
	}

	t := v.Type()
	switch {
	case t == durationType:
		const want = "a duration (like 30s, 5m or 7d)"
		if s, ok := d.scalarText(n, path, want); ok {
			x, err := parseDuration(s)
			if err != nil {
				detail := ""
				if errors.Is(err, errNoUnit) {
					detail = err.Error()
				}
				d.badValue(n, path, want, s, detail)
				return
			}
			v.SetInt(int64(x))
		}
		return
	case t == byteSizeType:
		const want = "a size (like 10MiB)"
		if s, ok := d.scalarText(n, path, want); ok {
			x, err := parseByteSize(s)
			if err != nil {
				d.badValue(n, path, want, s, "")
				return
			}
			v.SetInt(int64(x))
		}
		return
	case t == secretType:
		panic("config: a SecretRef must be a struct field, at " + path)
	}

	switch t.Kind() {
	case reflect.String:
		if s, ok := d.scalarText(n, path, wantString); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if s, ok := d.scalarText(n, path, "a boolean"); ok {
			switch s {
			case "true", "True", "TRUE":
				v.SetBool(true)
			case "false", "False", "FALSE":
				v.SetBool(false)
			default:
				d.badValue(n, path, "a boolean", s, "use true or false")
			}
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if s, ok := d.scalarText(n, path, "an integer"); ok {
			x, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			switch {
			case err != nil && errors.Is(err, strconv.ErrRange), err == nil && v.OverflowInt(x):
				d.badValue(n, path, "an integer", s, "out of range")
			case err != nil:
				d.badValue(n, path, "an integer", s, "")
			default:
				v.SetInt(x)
			}
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if s, ok := d.scalarText(n, path, "a non-negative integer"); ok {
			x, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			switch {
			case err != nil && errors.Is(err, strconv.ErrRange), err == nil && v.OverflowUint(x):
				d.badValue(n, path, "a non-negative integer", s, "out of range")
			case err != nil:
				d.badValue(n, path, "a non-negative integer", s, "")
			default:
				v.SetUint(x)
			}
		}
	case reflect.Float32, reflect.Float64:
		if s, ok := d.scalarText(n, path, "a number"); ok {
			x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || math.IsInf(x, 0) || math.IsNaN(x) || v.OverflowFloat(x) {
				d.badValue(n, path, "a number", s, "")
				return
			}
			v.SetFloat(x)
		}
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Pointer:
		if isNull(n) {
			return
		}
		if v.IsNil() {
			nv := reflect.New(t.Elem())
			applyDefaults(nv.Elem())
			v.Set(nv)
		}
		d.decode(n, v.Elem(), path)
	case reflect.Slice:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.addf(n, "%s: expected a list, got %s", pathName(path), describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			d.pos.m[ip] = position{item.Line, item.Column}
			applyDefaults(s.Index(i))
			d.decode(item, s.Index(i), ip)
		}
		v.Set(s)
	default:
		panic(fmt.Sprintf("config: unsupported field type %s at %s", t, path))
	}
}

// applyDefaults fills v with its defaults if its type has any.
func applyDefaults(v reflect.Value) {
	if v.CanAddr() {
		switch d := v.Addr().Interface().(type) {
		case defaulter:
			d.setDefaults()
		case sharedDefaulter:
			d.SetDefaults()
		}
	}
}

// scalarText returns the env-expanded text of scalar n. ok is false when
// the destination must keep its current value: n is null, n is not a
// scalar, expansion failed (all reported), or a reference expanded to
// nothing in a value that is not a string, which reads as "use the default".
func (d *decoder) scalarText(n *yaml.Node, path, want string) (s string, ok bool) {
	if n.Kind != yaml.ScalarNode {
		d.addf(n, "%s: expected %s, got %s", pathName(path), want, describe(n))
		return "", false
	}
	if isNull(n) {
		return "", false
	}
	s, fromEnv, errs := expandEnv(n.Value, d.lookup)
	for _, e := range errs {
		d.addf(n, "%s: %s", pathName(path), e)
	}
	if len(errs) > 0 {
		return "", false
	}
	if fromEnv {
		d.pos.env[path] = n.Value
	}
	if fromEnv && s == "" && want != wantString {
		return "", false
	}
	return s, true
}

// badValue reports a scalar that does not convert to the wanted type. A
// value that came from the environment is not shown, as it may be secret.
func (d *decoder) badValue(n *yaml.Node, path, want, s string, detail string) {
	got := d.pos.show(path, quoteShort(s))
	msg := fmt.Sprintf("%s: expected %s, got %s", pathName(path), want, got)
	if detail != "" {
		msg += ": " + detail
	}
	d.addf(n, "%s", msg)
}

// isNull reports whether n is YAML null (~, null or nothing).
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what n is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		if n.Alias != nil && n.Alias.Kind != yaml.AliasNode {
			return describe(n.Alias)
		}
		return "an alias"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return quoteShort(n.Value)
	}
	return "an unsupported YAML node"
}

// quoteShort is [configvalue.Quote].
func quoteShort(s string) string { return configvalue.Quote(s) }

// pathName is path as used at the start of a message.
func pathName(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}

// entry is one key/value pair of a mapping, after merge keys are applied.
type entry struct {
	key  *yaml.Node // where the key is written
	val  *yaml.Node // may be an alias
	name string
}

// entries lists m's keys: explicit ones first, then those brought in by
// merge keys (<<) that are not overridden. Duplicate explicit keys are
// reported at their second occurrence and dropped.
func (d *decoder) entries(m *yaml.Node, path string) []entry {
	if es, ok := d.merged[m]; ok {
		return es
	}
	if d.merging[m] {
		d.addf(m, "%s: merge (<<) refers to itself", pathName(path))
		return nil
	}
	d.merging[m] = true
	defer delete(d.merging, m)

	var es []entry
	var sources []*yaml.Node
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kpos, val := m.Content[i], m.Content[i+1]
		k := kpos
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			d.addf(kpos, "%s: keys must be plain names, got %s", pathName(path), describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			sources = append(sources, d.mergeSources(val, path)...)
			continue
		}
		if prev, dup := first[k.Value]; dup {
			d.addf(kpos, "duplicate key %q %s (first at %s)", k.Value, section(path),
				location(Problem{File: d.pos.file, Line: prev.Line, Col: prev.Column}))
			continue
		}
		first[k.Value] = kpos
		es = append(es, entry{key: kpos, val: val, name: k.Value})
	}
	for _, src := range sources {
		for _, e := range d.entries(src, path) {
			if _, ok := first[e.name]; !ok {
				first[e.name] = e.key
				es = append(es, e)
			}
		}
	}
	d.merged[m] = es
	return es
}

// mergeSources returns the mappings named by the value of a << key.
func (d *decoder) mergeSources(val *yaml.Node, path string) []*yaml.Node {
	resolve := func(n *yaml.Node) *yaml.Node {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			return n.Alias
		}
		return n
	}
	v := resolve(val)
	switch v.Kind {
	case yaml.MappingNode:
		return []*yaml.Node{v}
	case yaml.SequenceNode:
		var out []*yaml.Node
		for _, item := range v.Content {
			if r := resolve(item); r.Kind == yaml.MappingNode {
				out = append(out, r)
			} else {
				d.addf(item, "%s: merge (<<) needs a mapping or a list of mappings, got %s", pathName(path), describe(item))
			}
		}
		return out
	}
	d.addf(val, "%s: merge (<<) needs a mapping or a list of mappings, got %s", pathName(path), describe(val))
	return nil
}

// decodeStruct decodes mapping n into struct v. A null n is an empty
// mapping, so required keys are still reported.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	var es []entry
	switch {
	case n.Kind == yaml.MappingNode:
		es = d.entries(n, path)
	case isNull(n):
	default:
		d.addf(n, "%s: expected a mapping, got %s", pathName(path), describe(n))
		return
	}
	info := structInfoOf(v.Type())
	present := map[int]bool{}
	for _, e := range es {
		if d.full() {
			return
		}
		k, ok := info.byKey[e.name]
		if !ok && path == "" && strings.HasPrefix(e.name, "x-") {
			// Top-level x-* keys are extension fields: a place to define
			// anchors for merge keys, as in Compose files.
			continue
		}
		if !ok {
			d.unknownKey(e, info, path)
			continue
		}
		f := info.fields[k.field]
		fp := joinPath(path, e.name)
		d.pos.m[fp] = valuePos(e)
		fv := v.FieldByIndex(f.index)
		present[k.field] = true
		before := len(d.probs)
		if f.secret {
			ref := fv.Addr().Interface().(*SecretRef)
			dst := &ref.Env
			if k.part == "file" {
				dst = &ref.File
			}
			d.decode(e.val, reflect.ValueOf(dst).Elem(), fp)
			continue
		}
		d.decode(e.val, fv, fp)
		if f.required && len(d.probs) == before && fv.IsZero() {
			d.addf(e.key, "%s: must not be empty", fp)
		}
	}
	for i, f := range info.fields {
		if !f.required || present[i] {
			continue
		}
		line, col := d.pos.at(path)
		want := strconv.Quote(f.key)
		if f.secret {
			want = strconv.Quote(f.key+"_env") + " or " + strconv.Quote(f.key+"_file")
		}
		d.addf(&yaml.Node{Line: line, Column: col}, "%s: missing required key %s", pathName(path), want)
	}
}

// valuePos is the position recorded for a key's path: the value when it is
// written on the key's line, the key itself for nested blocks and nulls,
// whose node positions are less useful to a reader.
func valuePos(e entry) position {
	v := e.val
	if v.Kind == yaml.AliasNode || (v.Kind == yaml.ScalarNode && !isNull(v)) {
		return position{v.Line, v.Column}
	}
	return position{e.key.Line, e.key.Column}
}

// secretKeyNames are keys that hold a secret when written inline.
var secretKeyNames = map[string]bool{
	"password": true, "passwd": true, "secret": true, "client_secret": true,
	"token": true, "api_key": true, "apikey": true, "private_key": true,
	"passphrase": true, "secret_key": true, "access_key": true,
}

// looksLikeSecret reports whether an unknown key probably holds an inline
// secret, so the message can say why it will never be accepted.
func looksLikeSecret(key string) bool {
	k := strings.ToLower(key)
	if secretKeyNames[k] {
		return true
	}
	for _, suf := range []string{"_password", "_secret", "_token", "_passphrase", "_api_key", "_private_key", "_secret_key"} {
		if strings.HasSuffix(k, suf) {
			return true
		}
	}
	return false
}

// unknownKey reports a key the struct does not accept.
func (d *decoder) unknownKey(e entry, info *structInfo, path string) {
	if i, ok := info.secretBase[e.name]; ok {
		f := info.fields[i]
		d.addf(e.key, "%s: inline secrets are not allowed: use %s_env or %s_file", joinPath(path, e.name), f.key, f.key)
		return
	}
	if looksLikeSecret(e.name) {
		var refs []string
		for _, f := range info.fields {
			if f.secret {
				refs = append(refs, f.key+"_env or "+f.key+"_file")
			}
		}
		if len(refs) == 0 {
			d.addf(e.key, "unknown key %q %s; inline secrets are not allowed, and %s takes no secrets", e.name, section(path), pathName(path))
			return
		}
		d.addf(e.key, "unknown key %q %s; inline secrets are not allowed: use %s", e.name, section(path), strings.Join(refs, ", or "))
		return
	}
	msg := fmt.Sprintf("unknown key %q %s", e.name, section(path))
	if s := suggest(e.name, info.keys); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	d.addf(e.key, "%s", msg)
}

// suggest returns the known key closest to key, or "" if none is close
// enough to be a likely typo: at most 2 edits, and few enough for the
// key's length that "foo" is not "corrected" to "log".
func suggest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := problems.EditDistance(key, k); dist < bestDist && dist*3 <= len(key) {
			best, bestDist = k, dist
		}
	}
	return best
}

// fieldInfo describes one tagged struct field.
type fieldInfo struct {
	index    []int // for reflect.Value.FieldByIndex: through inline sections
	key      string
	required bool
	secret   bool // a SecretRef, written as key_env / key_file
}

// keyRef points a YAML key at a field; part is "env" or "file" for the
// two keys of a SecretRef.
type keyRef struct {
	field int
	part  string
}

// structInfo is the decoding table of a struct type.
type structInfo struct {
	fields     []fieldInfo
	byKey      map[string]keyRef
	secretBase map[string]int // "password" -> field, to explain its rejection
	keys       []string       // every accepted key, for suggestions
}

// structInfoOf builds the decoding table of t from its yaml tags. Fields
// without a tag are not configurable. A struct field tagged `yaml:",inline"`
// (a component's settings embedded in a section) adds its keys to the
// section's, as if declared there. A bad tag is a programming error and
// panics, so schema mistakes fail every test rather than hide.
func structInfoOf(t reflect.Type) *structInfo {
	info := &structInfo{byKey: map[string]keyRef{}, secretBase: map[string]int{}}
	info.addFields(t, nil)
	return info
}

// addFields adds the tagged fields of t, reached through index (the inline
// fields leading to t), to the table.
func (info *structInfo) addFields(t reflect.Type, index []int) {
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("yaml")
		if !ok || tag == "-" || !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		f := fieldInfo{index: append(append([]int(nil), index...), i), key: name, secret: sf.Type == secretType}
		inline := false
		for opt := range strings.SplitSeq(opts, ",") {
			switch opt {
			case "":
			case "required":
				f.required = true
			case "inline":
				inline = true
			default:
				panic(fmt.Sprintf("config: unknown yaml tag option %q on %s.%s", opt, t, sf.Name))
			}
		}
		if inline {
			if name != "" || f.required || sf.Type.Kind() != reflect.Struct || f.secret {
				panic(fmt.Sprintf("config: inline %s.%s must be a struct without a key or other options", t, sf.Name))
			}
			info.addFields(sf.Type, f.index)
			continue
		}
		if name == "" {
			panic(fmt.Sprintf("config: empty yaml key on %s.%s", t, sf.Name))
		}
		idx := len(info.fields)
		info.fields = append(info.fields, f)
		keys := []string{name}
		if f.secret {
			keys = []string{name + "_env", name + "_file"}
		}
		for _, k := range keys {
			if _, dup := info.byKey[k]; dup {
				panic(fmt.Sprintf("config: yaml key %q declared twice in %s (through an inline section)", k, t))
			}
		}
		if f.secret {
			info.secretBase[name] = idx
			info.byKey[keys[0]] = keyRef{idx, "env"}
			info.byKey[keys[1]] = keyRef{idx, "file"}
		} else {
			info.byKey[name] = keyRef{field: idx}
		}
		info.keys = append(info.keys, keys...)
	}
}

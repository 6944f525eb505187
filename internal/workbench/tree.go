package workbench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// MaxInput is the largest message or resource Tree and Explain take: a
// record view is for one message, and a cap keeps a pasted file from
// holding the console's memory.
const MaxInput = 16 << 20

// maxJSONDepth caps the nesting of FHIR JSON: real resources nest a dozen
// levels; the cap keeps a hostile input from exhausting the stack.
const maxJSONDepth = 256

// Formats of a MessageTree.
const (
	FormatHL7  = "hl7"  // HL7 v2
	FormatFHIR = "fhir" // FHIR JSON
)

// Kinds of Node. HL7 nodes nest segment > field > repetition > component
// > subcomponent; FHIR nodes are objects, arrays and scalars.
const (
	KindSegment      = "segment"
	KindField        = "field"
	KindRepetition   = "repetition"
	KindComponent    = "component"
	KindSubcomponent = "subcomponent"
	KindObject       = "object"
	KindArray        = "array"
	KindString       = "string"
	KindNumber       = "number"
	KindBool         = "bool"
	KindNull         = "null"
)

// MessageTree is one message (or FHIR resource) as a tree, for the record
// view and hl7 show.
type MessageTree struct {
	Format string `json:"format"` // FormatHL7 or FormatFHIR
	// Type is the HL7 message type ("ADT^A01") or the FHIR resourceType.
	Type string `json:"type,omitempty"`
	// Version is the message's MSH-12 as written ("" when it has none).
	Version string `json:"version,omitempty"`
	// NamesVersion is the version whose definitions name the fields:
	// Version itself, or the nearest one defined (2.7.1 for 2.8).
	NamesVersion string `json:"names_version,omitempty"`
	// NamesNote says whose names these are when NamesVersion is not the
	// message's own version, as hl7 show's "# names from" line does.
	NamesNote string `json:"names_note,omitempty"`
	// Nodes are the HL7 segments in order, or the FHIR root object.
	Nodes []*Node `json:"nodes"`
}

// Node is one part of a message. Only populated parts appear, so that the
// leaves are the values hl7 show and Message.Walk list, in their order.
type Node struct {
	Kind string `json:"kind"`
	// Path addresses the node as mappings and hl7 get do: "PID-3[2].4",
	// "OBX[2]-5" (an index only where a segment occurs, or a field
	// repeats, more than once); for FHIR a JSON path,
	// "Patient.name[0].family".
	Path string `json:"path"`
	// Name is what the definitions call the node ("Patient Name / Family
	// Name", as hl7 show prints it; "" for a Z segment or a field no
	// version defines); for FHIR the member's key.
	Name string `json:"name,omitempty"`
	// Type is the HL7 data type ("XPN"), when the definitions give one.
	Type string `json:"type,omitempty"`
	// NamedBy, on a segment, is the HL7 version whose definition named it.
	NamedBy string `json:"named_by,omitempty"`
	// Leaf is set when the node holds a value rather than parts.
	Leaf bool `json:"leaf,omitempty"`
	// Value is a leaf's decoded value (formatting escapes such as \.br\
	// kept); a FHIR number or boolean as written.
	Value string `json:"value,omitempty"`
	// Text, when set, is Value with formatting escapes rendered (\.br\ as
	// a line break); nil when that is Value itself.
	Text *string `json:"text,omitempty"`
	// Null marks an explicit null: HL7 "" (clear the value) or JSON null.
	Null     bool    `json:"null,omitempty"`
	Children []*Node `json:"children,omitempty"`
}

// Leaves returns the tree's leaves in order: for HL7 the values hl7 show
// lists.
func (t *MessageTree) Leaves() []*Node {
	var out []*Node
	var walk func([]*Node)
	walk = func(ns []*Node) {
		for _, n := range ns {
			if n.Leaf {
				out = append(out, n)
			}
			walk(n.Children)
		}
	}
	walk(t.Nodes)
	return out
}

// Tree reads one HL7 v2 message (LF or CR line ends, a byte order mark and
// a batch envelope accepted) or one FHIR JSON resource (a Bundle too) and
// returns it as a tree. Input holding several HL7 messages is refused:
// Trees returns one tree each.
func Tree(raw []byte) (*MessageTree, error) {
	ts, err := Trees(raw)
	if err != nil {
		return nil, err
	}
	if len(ts) != 1 {
		return nil, fmt.Errorf("the input holds %d HL7 messages; a tree shows one", len(ts))
	}
	return ts[0], nil
}

// Trees is Tree for input that may hold several HL7 messages: one tree
// per message, in order (a FHIR resource is always one tree).
func Trees(raw []byte) ([]*MessageTree, error) {
	if len(raw) > MaxInput {
		return nil, fmt.Errorf("the input is %d bytes; the most a tree shows is %d", len(raw), MaxInput)
	}
	trimmed := bytes.TrimSpace(bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")))
	if len(trimmed) == 0 {
		return nil, errors.New("the input is empty")
	}
	if trimmed[0] == '{' {
		t, err := FHIRTree(trimmed)
		if err != nil {
			return nil, err
		}
		return []*MessageTree{t}, nil
	}
	// Split gets the bytes as they are: trimming would cut trailing
	// spaces off the last field.
	parts, err := hl7.Split(raw)
	if err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return nil, errors.New("no HL7 message (MSH) or FHIR resource (JSON object) found")
	}
	out := make([]*MessageTree, 0, len(parts))
	for i, p := range parts {
		m, err := hl7.Parse(p)
		if err != nil {
			if len(parts) > 1 {
				return nil, fmt.Errorf("message %d: %w", i+1, err)
			}
			return nil, err
		}
		out = append(out, HL7Tree(m))
	}
	return out, nil
}

// NamesVersion is the version whose definitions name the fields of a
// message of version v: v itself, or the nearest one defined.
func NamesVersion(v string) string {
	if s, ok := hl7.LookupSegment(v, "MSH"); ok {
		return s.Version
	}
	return v
}

// HL7Tree returns a parsed message as a tree.
func HL7Tree(m *hl7.Message) *MessageTree {
	h := m.Header()
	t := &MessageTree{Format: FormatHL7, Type: h.Type, Version: h.Version, NamesVersion: NamesVersion(h.Version)}
	if h.Trigger != "" {
		t.Type += "^" + h.Trigger
	}
	if t.NamesVersion != t.Version {
		was := "no MSH-12"
		if t.Version != "" {
			was = fmt.Sprintf("MSH-12 is %q", t.Version)
		}
		t.NamesNote = fmt.Sprintf("names from HL7 %s definitions (%s)", t.NamesVersion, was)
	}
	b := &hl7Builder{version: h.Version, d: m.Delimiters(), types: map[string]hl7.TypeDef{}}
	counts := map[string]int{}
	for _, s := range m.Segments() {
		counts[s.Name()]++
	}
	seen := map[string]int{}
	for _, s := range m.Segments() {
		t.Nodes = append(t.Nodes, b.segment(s, counts, seen))
	}
	return t
}

// hl7Builder builds the nodes of one message. It follows hl7.Message.Walk
// step by step, so that the leaves are Walk's values with Walk's paths
// (a test holds them equal over the corpus).
type hl7Builder struct {
	version string
	d       hl7.Delimiters
	types   map[string]hl7.TypeDef // by version|id; absent ones too
}

func (b *hl7Builder) lookupType(version, id string) (hl7.TypeDef, bool) {
	if id == "" {
		return hl7.TypeDef{}, false
	}
	k := version + "|" + id
	if td, ok := b.types[k]; ok {
		return td, td.ID != ""
	}
	td, ok := hl7.LookupType(version, id)
	if !ok {
		td = hl7.TypeDef{}
	}
	b.types[k] = td
	return td, ok
}

func (b *hl7Builder) segment(s *hl7.Segment, counts, seen map[string]int) *Node {
	id := s.Name()
	seen[id]++
	base := hl7.Path{Segment: id}
	prefix := id
	if counts[id] > 1 {
		base.SegmentRep = seen[id]
		prefix += "[" + strconv.Itoa(seen[id]) + "]"
	}
	sn := &Node{Kind: KindSegment, Path: prefix}
	def, ok := hl7.LookupSegment(b.version, id)
	if ok {
		sn.Name, sn.NamedBy = def.Name, def.Version
	}
	for f := 1; f <= s.NumFields(); f++ {
		raw := s.Field(f)
		if raw == "" {
			continue
		}
		p := base
		p.Field = f
		fp := prefix + "-" + strconv.Itoa(f)
		fn := &Node{Kind: KindField, Path: fp, Name: hl7.PathName(b.version, p)}
		fieldType := ""
		if fd, ok := def.Field(f); ok {
			fieldType = fd.Type
		}
		fn.Type = fieldType
		if id == "MSH" && f <= 2 {
			b.setLeaf(fn, s.Get(hl7.Path{Field: f}))
			sn.Children = append(sn.Children, fn)
			continue
		}
		reps := strings.Count(raw, string(b.d.Repetition)) + 1
		if b.d.Repetition == 0 {
			reps = 1
		}
		for r := 1; r <= reps; r++ {
			rp, pr := fp, p
			if reps > 1 {
				rp += "[" + strconv.Itoa(r) + "]"
				pr.Rep = r
			}
			if rn := b.repetition(s, pr, rp, fn.Name, fieldType, def.Version); rn != nil {
				fn.Children = append(fn.Children, rn)
			}
		}
		if len(fn.Children) > 0 {
			sn.Children = append(sn.Children, fn)
		}
	}
	return sn
}

// repetition builds one field repetition, nil when nothing in it is
// populated.
func (b *hl7Builder) repetition(s *hl7.Segment, p hl7.Path, path, name, fieldType, defVersion string) *Node {
	rep := s.Get(hl7.Path{Field: p.Field, Rep: max(p.Rep, 1)})
	if rep.IsEmpty() {
		return nil
	}
	rn := &Node{Kind: KindRepetition, Path: path, Name: name, Type: fieldType}
	if rep.IsLeaf() {
		b.setLeaf(rn, rep)
		return rn
	}
	td, typed := b.lookupType(defVersion, fieldType)
	comps := 1
	if b.d.Component != 0 {
		comps = strings.Count(rep.Raw(), string(b.d.Component)) + 1
	}
	for c := 1; c <= comps; c++ {
		pc := p
		pc.Component = c
		cv := s.Get(hl7.Path{Field: p.Field, Rep: max(p.Rep, 1), Component: c})
		if cv.IsEmpty() {
			continue
		}
		cn := &Node{Kind: KindComponent, Path: path + "." + strconv.Itoa(c), Name: hl7.PathName(b.version, pc)}
		compType := ""
		if typed {
			if cd, ok := td.Component(c); ok {
				compType = cd.Type
			}
		}
		cn.Type = compType
		if cv.IsLeaf() {
			b.setLeaf(cn, cv)
			rn.Children = append(rn.Children, cn)
			continue
		}
		st, subTyped := b.lookupType(defVersion, compType)
		subs := strings.Count(cv.Raw(), string(b.d.Subcomponent)) + 1
		for sc := 1; sc <= subs; sc++ {
			sv := s.Get(hl7.Path{Field: p.Field, Rep: max(p.Rep, 1), Component: c, Subcomponent: sc})
			if sv.IsEmpty() {
				continue
			}
			ps := pc
			ps.Subcomponent = sc
			sn := &Node{Kind: KindSubcomponent, Path: cn.Path + "." + strconv.Itoa(sc), Name: hl7.PathName(b.version, ps)}
			if subTyped && compType != "" {
				if sd, ok := st.Component(sc); ok {
					sn.Type = sd.Type
				}
			}
			b.setLeaf(sn, sv)
			cn.Children = append(cn.Children, sn)
		}
		if len(cn.Children) > 0 {
			rn.Children = append(rn.Children, cn)
		}
	}
	if len(rn.Children) == 0 {
		return nil
	}
	return rn
}

func (b *hl7Builder) setLeaf(n *Node, v hl7.Value) {
	n.Leaf = true
	n.Value = v.String()
	n.Null = v.IsNull()
	if txt := v.Text(); txt != n.Value {
		n.Text = &txt
	}
}

// FHIRTree returns one FHIR JSON resource (a Bundle too) as a tree of
// JSON paths rooted at its resourceType, members in the order written.
func FHIRTree(data []byte) (*MessageTree, error) {
	if len(data) > MaxInput {
		return nil, fmt.Errorf("the input is %d bytes; the most a tree shows is %d", len(data), MaxInput)
	}
	var probe struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("FHIR input is not valid JSON: %v", jsonErrText(err))
	}
	if probe.ResourceType == "" {
		return nil, errors.New("FHIR input has no resourceType")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	root, err := jsonNode(dec, probe.ResourceType, "", 0)
	if err != nil {
		return nil, fmt.Errorf("FHIR input: %v", jsonErrText(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("FHIR input: more data after the resource")
	}
	return &MessageTree{Format: FormatFHIR, Type: probe.ResourceType, Nodes: []*Node{root}}, nil
}

// jsonErrText keeps a JSON error to its kind and offset: a type error
// would otherwise quote the value.
func jsonErrText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s at byte %d is a JSON %s", te.Field, te.Offset, te.Value)
	}
	var de depthError
	if errors.As(err, &de) {
		return de.Error()
	}
	return "malformed JSON"
}

// depthError is FHIR JSON nested deeper than maxJSONDepth.
type depthError struct{}

func (depthError) Error() string {
	return fmt.Sprintf("nested more than %d levels deep", maxJSONDepth)
}

// jsonNode reads one JSON value from dec.
func jsonNode(dec *json.Decoder, path, name string, depth int) (*Node, error) {
	if depth > maxJSONDepth {
		return nil, depthError{}
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	n := &Node{Path: path, Name: name}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			n.Kind = KindObject
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, _ := kt.(string)
				child, err := jsonNode(dec, path+"."+jsonKey(key), key, depth+1)
				if err != nil {
					return nil, err
				}
				n.Children = append(n.Children, child)
			}
		case '[':
			n.Kind = KindArray
			for i := 0; dec.More(); i++ {
				child, err := jsonNode(dec, path+"["+strconv.Itoa(i)+"]", "", depth+1)
				if err != nil {
					return nil, err
				}
				n.Children = append(n.Children, child)
			}
		default:
			return nil, errors.New("malformed JSON")
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
		return n, nil
	case string:
		n.Kind, n.Value = KindString, v
	case json.Number:
		n.Kind, n.Value = KindNumber, v.String()
	case bool:
		n.Kind, n.Value = KindBool, strconv.FormatBool(v)
	case nil:
		n.Kind, n.Null = KindNull, true
	}
	n.Leaf = true
	return n, nil
}

// jsonKey writes a member name in a path, backquoted (as FHIRPath
// quotes) when it is not an identifier.
func jsonKey(k string) string {
	ok := k != ""
	for i := 0; i < len(k) && ok; i++ {
		c := k[i]
		ok = c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
	}
	if ok {
		return k
	}
	return "`" + strings.ReplaceAll(k, "`", "\\`") + "`"
}

package hl7

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// The segment and data type definitions of HL7 v2.3 to v2.7.1, from the
// npm package hl7-dictionary 1.0.1 (MIT); see README.defs.md for the
// source, its licence and how defs.json.gz is regenerated.
//
//go:generate go run ./internal/defsgen -src /tmp/hl7-dictionary-1.0.1.tgz -out defs.json.gz
//go:embed defs.json.gz
var defsGz []byte

// SegmentDef is a segment as one HL7 version defines it.
type SegmentDef struct {
	ID      string // "PID"
	Name    string // "Patient Identification"
	Version string // the version whose definition this is, e.g. "2.5.1"
	// Fields are the segment's fields in order: Fields[0] is field 1.
	Fields []FieldDef
}

// FieldDef is one field of a segment definition.
type FieldDef struct {
	Seq  int    // field number, 1-based: PID-5 is 5
	Name string // "Patient Name"
	Type string // data type: "XPN"
	// Opt is the standard's optionality: R required, O optional,
	// C conditional, B backward compatible or withdrawn (the source does
	// not tell those two apart).
	Opt string
	// MaxReps is the most repetitions the field may have: 1 for a field
	// that does not repeat, 0 for no limit.
	MaxReps int
	Len     int // maximum length as the version gives it, 0 when not given
	Table   int // HL7 or user table number for coded fields, 0 for none
}

// Repeats reports whether the field may repeat.
func (f FieldDef) Repeats() bool { return f.MaxReps != 1 }

// Field returns field n (1-based) of the segment.
func (s SegmentDef) Field(n int) (FieldDef, bool) {
	if n < 1 || n > len(s.Fields) {
		return FieldDef{}, false
	}
	return s.Fields[n-1], true
}

// TypeDef is a composite data type as one HL7 version defines it.
type TypeDef struct {
	ID         string // "XPN"
	Name       string // "Extended Person Name"
	Version    string
	Components []ComponentDef // Components[0] is component 1
}

// ComponentDef is one component of a composite data type.
type ComponentDef struct {
	Name string // "Family Name"
	Type string // "FN"
}

// Component returns component n (1-based) of the type.
func (t TypeDef) Component(n int) (ComponentDef, bool) {
	if n < 1 || n > len(t.Components) {
		return ComponentDef{}, false
	}
	return t.Components[n-1], true
}

// defs is the decoded definitions file.
type defs struct {
	Source   string                  `json:"source"`
	Versions []string                `json:"versions"`
	Segments map[string][]defSegment `json:"segments"`
	Types    map[string][]defType    `json:"types"`

	ids []string // standard segment ids, sorted
}

type defSegment struct {
	Versions []string          `json:"v"`
	Desc     string            `json:"desc"`
	Fields   []json.RawMessage `json:"fields"`
}

type defType struct {
	Versions   []string    `json:"v"`
	Desc       string      `json:"desc"`
	Components [][2]string `json:"comps"`
}

var (
	defsOnce sync.Once
	defsData *defs
	defsErr  error
)

// loadDefs decodes the embedded definitions once.
func loadDefs() (*defs, error) {
	defsOnce.Do(func() {
		zr, err := gzip.NewReader(bytes.NewReader(defsGz))
		if err != nil {
			defsErr = fmt.Errorf("hl7 definitions: %w", err)
			return
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			defsErr = fmt.Errorf("hl7 definitions: %w", err)
			return
		}
		d := &defs{}
		if err := json.Unmarshal(b, d); err != nil {
			defsErr = fmt.Errorf("hl7 definitions: %w", err)
			return
		}
		for id := range d.Segments {
			d.ids = append(d.ids, id)
		}
		sort.Strings(d.ids)
		defsData = d
	})
	return defsData, defsErr
}

// DefinitionsSource names the data the definitions come from.
func DefinitionsSource() string {
	d, err := loadDefs()
	if err != nil {
		return ""
	}
	return d.Source
}

// DefinedVersions lists the HL7 versions the definitions hold, oldest
// first. Other versions are served from the nearest of these (2.8 from
// 2.7.1, 2.2 from 2.3).
func DefinedVersions() []string {
	d, err := loadDefs()
	if err != nil {
		return nil
	}
	return append([]string(nil), d.Versions...)
}

// StandardSegmentIDs lists every segment id some defined version
// defines, sorted.
func StandardSegmentIDs() []string {
	d, err := loadDefs()
	if err != nil {
		return nil
	}
	return append([]string(nil), d.ids...)
}

// IsStandardSegment reports whether some defined version (2.3 to 2.7.1)
// defines segment id. Z segments never are: HL7 v2 chapter 2 reserves
// segment ids that start with Z for local use.
func IsStandardSegment(id string) bool {
	d, err := loadDefs()
	if err != nil {
		return false
	}
	_, ok := d.Segments[strings.ToUpper(id)]
	return ok
}

// LookupSegment returns segment id as version defines it. A version that
// is not one of DefinedVersions (MSH-12, like "2.8"; "" for the newest)
// is taken as the nearest that is, the later one on a tie; when that
// version does not define the segment, the definition of the nearest
// version that does is returned. Its Version says which. It reports false for a segment no version defines (a Z
// segment, a typo).
func LookupSegment(version, id string) (SegmentDef, bool) {
	s, ok := cachedSegment(version, id)
	s.Fields = append([]FieldDef(nil), s.Fields...) // the caller's own copy
	return s, ok
}

// cachedSegment is LookupSegment without the copy, for this package.
func cachedSegment(version, id string) (SegmentDef, bool) {
	id = strings.ToUpper(id)
	version = nearestDefined(version)
	ck := version + "|" + id
	if v, ok := segmentCache.Load(ck); ok {
		return v.(SegmentDef), true
	}
	s, ok := lookupSegment(version, id)
	if ok {
		segmentCache.Store(ck, s)
	}
	return s, ok
}

// segmentCache holds the definitions looked up, by defined version and
// id: hl7 show asks for the same few segments again and again. Only found
// segments are kept, under one of the defined versions, so odd MSH-12
// values cannot grow it.
var segmentCache sync.Map

// nearestDefined is the defined version nearest to v (the later one on a
// tie; the newest for "" or an unreadable v).
func nearestDefined(v string) string {
	d, err := loadDefs()
	if err != nil || len(d.Versions) == 0 {
		return v
	}
	for _, x := range d.Versions {
		if x == v {
			return v
		}
	}
	best := d.Versions[0]
	for _, x := range d.Versions[1:] {
		if closer(v, x, best) {
			best = x
		}
	}
	return best
}

func lookupSegment(version, id string) (SegmentDef, bool) {
	d, err := loadDefs()
	if err != nil {
		return SegmentDef{}, false
	}
	list := d.Segments[id]
	if len(list) == 0 {
		return SegmentDef{}, false
	}
	best, bestV := -1, ""
	for i, s := range list {
		for _, v := range s.Versions {
			if best < 0 || closer(version, v, bestV) {
				best, bestV = i, v
			}
		}
	}
	s := list[best]
	out := SegmentDef{ID: id, Name: s.Desc, Version: bestV, Fields: make([]FieldDef, 0, len(s.Fields))}
	for i, raw := range s.Fields {
		var f [6]any
		if err := json.Unmarshal(raw, &f); err != nil {
			return SegmentDef{}, false
		}
		fd := FieldDef{Seq: i + 1}
		fd.Name, _ = f[0].(string)
		fd.Type, _ = f[1].(string)
		fd.Opt, _ = f[2].(string)
		fd.MaxReps = jsonInt(f[3])
		fd.Len = jsonInt(f[4])
		fd.Table = jsonInt(f[5])
		out.Fields = append(out.Fields, fd)
	}
	return out, true
}

// MaxFieldCount is the most fields any defined version gives segment id
// (0 when none defines it): a field number past it is in no version.
func MaxFieldCount(id string) int {
	d, err := loadDefs()
	if err != nil {
		return 0
	}
	n := 0
	for _, s := range d.Segments[strings.ToUpper(id)] {
		n = max(n, len(s.Fields))
	}
	return n
}

// LookupType returns composite data type id as version defines it, with
// the same fallback as LookupSegment. Primitive types (ST, NM, ...) are
// found with no components.
func LookupType(version, id string) (TypeDef, bool) {
	t, ok := cachedType(version, id)
	t.Components = append([]ComponentDef(nil), t.Components...)
	return t, ok
}

// typeCache is segmentCache for data types.
var typeCache sync.Map

func cachedType(version, id string) (TypeDef, bool) {
	id = strings.ToUpper(id)
	version = nearestDefined(version)
	ck := version + "|" + id
	if v, ok := typeCache.Load(ck); ok {
		return v.(TypeDef), true
	}
	t, ok := lookupType(version, id)
	if ok {
		typeCache.Store(ck, t)
	}
	return t, ok
}

func lookupType(version, id string) (TypeDef, bool) {
	d, err := loadDefs()
	if err != nil {
		return TypeDef{}, false
	}
	list := d.Types[id]
	if len(list) == 0 {
		return TypeDef{}, false
	}
	best, bestV := -1, ""
	for i, t := range list {
		for _, v := range t.Versions {
			if best < 0 || closer(version, v, bestV) {
				best, bestV = i, v
			}
		}
	}
	t := list[best]
	out := TypeDef{ID: id, Name: t.Desc, Version: bestV}
	for _, c := range t.Components {
		out.Components = append(out.Components, ComponentDef{Name: c[0], Type: c[1]})
	}
	return out, true
}

func jsonInt(v any) int {
	f, _ := v.(float64)
	return int(f)
}

// closer reports whether version a is nearer to want than version b; on
// a tie the later version wins. An empty or unreadable want means the
// newest.
func closer(want, a, b string) bool {
	w, ok := versionNumber(want)
	if !ok {
		w = 1 << 30
	}
	na, _ := versionNumber(a)
	nb, _ := versionNumber(b)
	da, db := abs(na-w), abs(nb-w)
	if da != db {
		return da < db
	}
	return na > nb
}

// versionNumber turns "2.5.1" into 2*10000 + 5*100 + 1, for distances.
// It takes two or three dot-separated numbers below 100.
func versionNumber(v string) (int, bool) {
	v = strings.TrimSpace(v)
	n, parts, x, digits := 0, 0, 0, 0
	for i := 0; i <= len(v); i++ {
		if i == len(v) || v[i] == '.' {
			if digits == 0 || parts == 3 {
				return 0, false
			}
			n, parts, x, digits = n*100+x, parts+1, 0, 0
			continue
		}
		c := v[i]
		if c < '0' || c > '9' || digits == 2 {
			return 0, false
		}
		x, digits = x*10+int(c-'0'), digits+1
	}
	if parts < 2 {
		return 0, false
	}
	if parts == 2 {
		n *= 100
	}
	return n, true
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// PathName names what a path addresses, as version (MSH-12) defines it:
// "Patient Name" for PID-5, "Patient Name / Family Name" for PID-5.1,
// "Patient Identifier List / Assigning Authority / Namespace ID" for
// PID-3.4.1. Parts the definitions do not name are left off (a component
// of a field that has none in that version); "" for a segment or field
// no version defines (a Z segment).
func PathName(version string, p Path) string {
	s, ok := cachedSegment(version, p.Segment)
	if !ok {
		return ""
	}
	f, ok := s.Field(p.Field)
	if !ok {
		return ""
	}
	name := f.Name
	if p.Component == 0 {
		return name
	}
	t, ok := cachedType(s.Version, f.Type)
	if !ok {
		return name
	}
	c, ok := t.Component(p.Component)
	if !ok {
		return name
	}
	name += " / " + c.Name
	if p.Subcomponent == 0 {
		return name
	}
	if st, ok := cachedType(s.Version, c.Type); ok {
		if sc, ok := st.Component(p.Subcomponent); ok {
			name += " / " + sc.Name
		}
	}
	return name
}

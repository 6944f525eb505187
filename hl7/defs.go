package hl7

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
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

// LookupSegment returns segment id as version defines it. When version
// (MSH-12, like "2.5.1"; "" for the newest) does not define it, or is not
// one of DefinedVersions, the definition of the nearest version that
// defines the segment is returned, the later one on a tie; its Version
// says which. It reports false for a segment no version defines (a Z
// segment, a typo).
func LookupSegment(version, id string) (SegmentDef, bool) {
	d, err := loadDefs()
	if err != nil {
		return SegmentDef{}, false
	}
	id = strings.ToUpper(id)
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
	d, err := loadDefs()
	if err != nil {
		return TypeDef{}, false
	}
	id = strings.ToUpper(id)
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
func versionNumber(v string) (int, bool) {
	parts := strings.Split(strings.TrimSpace(v), ".")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, false
	}
	n := 0
	for i := 0; i < 3; i++ {
		x := 0
		if i < len(parts) {
			var err error
			x, err = strconv.Atoi(parts[i])
			if err != nil || x < 0 || x > 99 {
				return 0, false
			}
		}
		n = n*100 + x
	}
	return n, true
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

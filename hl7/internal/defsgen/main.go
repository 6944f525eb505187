// Command defsgen writes hl7/defs.json.gz, the HL7 v2 segment and data
// type definitions that package hl7 embeds (see hl7/defs.go), from the
// npm package hl7-dictionary 1.0.1 (MIT, Fernando Serrano,
// https://github.com/fernandojsg/hl7-dictionary). It reads the package
// tarball as published, checks its SHA-1 against the one the npm registry
// lists (dist.shasum), and keeps only facts: for each version, each
// segment's fields (name, data type, optionality, repeatability, length,
// table) and each composite data type's components. Definitions that are
// the same in several versions are written once, with the versions.
//
// Run from the hl7 directory (see hl7/README.defs.md):
//
//	(cd /tmp && npm pack hl7-dictionary@1.0.1)
//	go run ./internal/defsgen -src /tmp/hl7-dictionary-1.0.1.tgz -out defs.json.gz
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"strings"
)

const (
	sourceName    = "hl7-dictionary"
	sourceVersion = "1.0.1"
	// sourceSHA1 is dist.shasum of hl7-dictionary@1.0.1 in the npm
	// registry (npm view hl7-dictionary@1.0.1 dist.shasum).
	sourceSHA1 = "6fd9e9651bb0e4acf1f2f1f8700eb044a0f73167"
)

// versions are the HL7 versions taken from the source: 2.3 to 2.7.1, the
// ones it holds within the 2.3–2.8 range ehrbridge reads. (Its 2.7 and
// 2.7.1 files are identical.)
var versions = []string{"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1"}

// srcField is a field or component as the source writes it.
type srcField struct {
	Datatype string `json:"datatype"`
	Desc     string `json:"desc"`
	Opt      int    `json:"opt"`
	Rep      int    `json:"rep"`
	Len      int    `json:"len"`
	Table    int    `json:"table"`
}

type srcSegment struct {
	Desc   string     `json:"desc"`
	Fields []srcField `json:"fields"`
}

type srcType struct {
	Desc      string     `json:"desc"`
	Subfields []srcField `json:"subfields"`
}

// Output format (read by hl7/defs.go). A field is
// [name, data type, optionality, max repetitions (0: unbounded), max
// length (0: not given), table (0: none)]; a component is [name, data type].
type outField [6]any

type outSegment struct {
	Versions []string   `json:"v"`
	Desc     string     `json:"desc"`
	Fields   []outField `json:"fields"`
}

type outType struct {
	Versions   []string    `json:"v"`
	Desc       string      `json:"desc"`
	Components [][2]string `json:"comps"`
}

type output struct {
	Source   string                  `json:"source"`
	Versions []string                `json:"versions"`
	Segments map[string][]outSegment `json:"segments"`
	Types    map[string][]outType    `json:"types"`
}

func main() {
	src := flag.String("src", "", "the hl7-dictionary-1.0.1.tgz that npm pack writes")
	out := flag.String("out", "defs.json.gz", "file to write")
	flag.Parse()
	if err := run(*src, *out); err != nil {
		fmt.Fprintln(os.Stderr, "defsgen:", err)
		os.Exit(1)
	}
}

func run(src, out string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	sum := sha1.Sum(data)
	if got := hex.EncodeToString(sum[:]); got != sourceSHA1 {
		return fmt.Errorf("%s: SHA-1 %s, want %s (%s@%s as published)", src, got, sourceSHA1, sourceName, sourceVersion)
	}
	files, err := untar(data)
	if err != nil {
		return err
	}
	o := output{
		Source:   fmt.Sprintf("npm %s@%s (MIT), https://github.com/fernandojsg/hl7-dictionary", sourceName, sourceVersion),
		Versions: versions,
		Segments: map[string][]outSegment{},
		Types:    map[string][]outType{},
	}
	for _, v := range versions {
		var segs map[string]srcSegment
		if err := readJS(files, "package/lib/"+v+"/segments.js", "segments", &segs); err != nil {
			return err
		}
		var types map[string]srcType
		if err := readJS(files, "package/lib/"+v+"/fields.js", "fields", &types); err != nil {
			return err
		}
		for id, s := range segs {
			if !segmentID.MatchString(id) {
				// 2.6 lists the data type ED among its segments; a
				// segment id is three characters.
				fmt.Fprintf(os.Stderr, "defsgen: %s: skipping %q, not a segment id\n", v, id)
				continue
			}
			seg := outSegment{Versions: []string{v}, Desc: clean(s.Desc)}
			for _, f := range s.Fields {
				seg.Fields = append(seg.Fields, outField{clean(f.Desc), f.Datatype, optCode(f.Opt), f.Rep, f.Len, f.Table})
			}
			o.Segments[id] = addSegment(o.Segments[id], seg)
		}
		for id, t := range types {
			ty := outType{Versions: []string{v}, Desc: clean(t.Desc)}
			for _, c := range t.Subfields {
				ty.Components = append(ty.Components, [2]string{clean(c.Desc), c.Datatype})
			}
			o.Types[id] = addType(o.Types[id], ty)
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(o); err != nil {
		return err
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(buf.Bytes())
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(out, gz.Bytes(), 0o644)
}

var segmentID = regexp.MustCompile(`^[A-Z][A-Z0-9]{2}$`)

// clean trims the stray spaces some names carry ("Nationality ").
func clean(s string) string { return strings.Join(strings.Fields(s), " ") }

// optCode turns the source's optionality number into the letter of the
// standard's OPT column; the source writes B (backward compatible) and W
// (withdrawn) alike, as 4.
func optCode(n int) string {
	switch n {
	case 1:
		return "O"
	case 2:
		return "R"
	case 3:
		return "C"
	case 4:
		return "B"
	}
	return ""
}

// addSegment adds a version's definition, merging it into an equal
// definition of an earlier version.
func addSegment(list []outSegment, s outSegment) []outSegment {
	for i := range list {
		if list[i].Desc == s.Desc && equalJSON(list[i].Fields, s.Fields) {
			list[i].Versions = append(list[i].Versions, s.Versions...)
			return list
		}
	}
	return append(list, s)
}

func addType(list []outType, t outType) []outType {
	for i := range list {
		if list[i].Desc == t.Desc && equalJSON(list[i].Components, t.Components) {
			list[i].Versions = append(list[i].Versions, t.Versions...)
			return list
		}
	}
	return append(list, t)
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func untar(tgz []byte) (map[string][]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg || !strings.HasSuffix(h.Name, ".js") {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		files[path.Clean(h.Name)] = b
	}
}

// readJS decodes a source file of the form
// "var NAME = {JSON};\n\nmodule.exports = NAME;\n" — data, not code.
func readJS(files map[string][]byte, name, varName string, v any) error {
	b, ok := files[name]
	if !ok {
		return fmt.Errorf("%s: not in the tarball", name)
	}
	s := strings.TrimSpace(string(b))
	prefix, suffix := "var "+varName+" = ", "module.exports = "+varName+";"
	if !strings.HasPrefix(s, prefix) || !strings.HasSuffix(s, suffix) {
		return fmt.Errorf("%s: not the expected var %s = {...}; module.exports = %s; form", name, varName, varName)
	}
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(s, prefix), suffix))
	s = strings.TrimSuffix(s, ";")
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

package mappings

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// A mapping test file, x_test.yaml beside x.yaml, lists inputs and the ops
// mapping x must produce for each:
//
//	tests:
//	  - name: admission creates the patient
//	    input_file: samples/ADT-A01-01.hl7   # relative to this file
//	    expect:
//	      - object: Account
//	        key_field: SourceSystemIdentifier
//	        key: "GHH|PATID1234"
//	        fields:
//	          LastName: EVERYMAN
//	  - name: a lab result is not this mapping's business
//	    input: |
//	      MSH|^~\&|LAB|GHH|...|ORU^R01|...
//	    expect: []
//	  - name: no patient id is an error
//	    input: ...
//	    expect_error: no patient identifier
//	  - name: a year-only birth date is left out, with a warning
//	    input: ...
//	    expect: [...]
//	    warnings:
//	      - "patient.PersonBirthdate: date(): the value has no day"
//
// warnings: lists the fields the case leaves out with a warning (see
// Result.Warnings), each as text that one warning, rendered
// "mapping/op.field: text", must contain; a case without warnings: must
// produce none.
//
// input is an HL7 v2 message (line ends \n, \r\n or \r) or FHIR JSON: one
// resource, or a Bundle whose entries are mapped in turn. patients: maps
// FHIR references to the keys patient_key() gives for them (the daemon
// reads the Patient from the server); a reference missing from it is not
// resolved yet, so that a case can expect the wait.

// TestCase is one test of a test file.
type TestCase struct {
	Name        string
	Line        int
	input       []byte
	inputName   string
	expect      []Op
	expectNone  bool
	expectError string
	// warnings each match one warning the case must produce.
	warnings []string
	// patients resolves patient_key() (nil: the references' ids).
	patients StaticPatients
}

// TestFile is a parsed test file and the mapping it tests.
type TestFile struct {
	Path    string
	Mapping string // the mapping's name (x for x_test.yaml)
	Cases   []TestCase
}

// TestResult is the outcome of one case.
type TestResult struct {
	File *TestFile
	Case *TestCase
	// Diff is empty when the case passed; otherwise it explains, line by
	// line, what differed.
	Diff []string
}

// Passed reports whether the case passed.
func (r TestResult) Passed() bool { return len(r.Diff) == 0 }

// FindTests returns the test files in paths (files or directories).
func FindTests(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: cannot read: %s", p, errText(err))
		}
		if !st.IsDir() {
			if IsTestFile(p) {
				out = append(out, p)
			}
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("%s: cannot read: %s", p, errText(err))
		}
		for _, e := range entries {
			if !e.IsDir() && IsTestFile(e.Name()) {
				out = append(out, filepath.Join(p, e.Name()))
			}
		}
	}
	return out, nil
}

// ParseTestFile reads a test file.
func ParseTestFile(path string) (*TestFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: "cannot read: " + errText(err)}}
	}
	root, probs := parseYAML(path, data)
	if root == nil {
		return nil, probs
	}
	l := &loader{file: path}
	base := filepath.Base(path)
	tf := &TestFile{Path: path, Mapping: strings.TrimSuffix(strings.TrimSuffix(base, "_test.yaml"), "_test.yml")}
	keys := l.entries(root, []string{"tests"}, "test file")
	tests := keys["tests"]
	if tests == nil || tests.Kind != yaml.SequenceNode || len(tests.Content) == 0 {
		l.add(root.Line, root.Column, "a test file needs tests: a list of cases (name, input or input_file, expect)")
		return nil, l.probs
	}
	for i, tn := range tests.Content {
		tc := TestCase{Line: tn.Line, Name: fmt.Sprintf("case %d", i+1)}
		k := l.entries(tn, []string{"name", "input", "input_file", "patients", "expect", "expect_error", "warnings"}, "test")
		if pn := k["patients"]; pn != nil {
			if pn.Kind != yaml.MappingNode {
				l.addAt(pn, "patients must map references to patient keys, like \"Patient/123\": \"HOSP|M123\"")
			} else {
				tc.patients = StaticPatients{}
				for i := 0; i+1 < len(pn.Content); i += 2 {
					key, _ := l.str(pn.Content[i+1], pn.Content[i].Value)
					tc.patients[pn.Content[i].Value] = key
				}
			}
		}
		if n := k["name"]; n != nil {
			tc.Name, _ = l.str(n, "name")
		}
		switch in, inf := k["input"], k["input_file"]; {
		case in != nil && inf != nil:
			l.addAt(tn, "give input or input_file, not both")
		case in != nil:
			if s, ok := l.str(in, "input"); ok {
				tc.input, tc.inputName = []byte(s), "inline input"
			}
		case inf != nil:
			if s, ok := l.str(inf, "input_file"); ok {
				f := filepath.Join(filepath.Dir(path), s)
				b, err := os.ReadFile(f)
				if err != nil {
					hint := ""
					if strings.HasPrefix(filepath.ToSlash(filepath.Clean(s)), "../") {
						hint = "; keep inputs inside the set (samples/ beside the test file) or inline (input: |), so that the set works wherever it is copied"
					}
					l.addAt(inf, "input_file: cannot read %s (relative to this test file, %s): %s%s", s, f, errText(err), hint)
				}
				tc.input, tc.inputName = b, s
			}
		default:
			l.addAt(tn, "test %q has no input or input_file", tc.Name)
		}
		if wn := k["warnings"]; wn != nil {
			if wn.Kind != yaml.SequenceNode {
				l.addAt(wn, "warnings must be a list of texts, each part of one warning (\"patient.PersonBirthdate: date()\")")
			} else {
				tc.warnings = l.strList(wn, "warnings")
			}
		}
		ex, exErr := k["expect"], k["expect_error"]
		switch {
		case ex != nil && exErr != nil:
			l.addAt(tn, "give expect or expect_error, not both")
		case exErr != nil:
			tc.expectError, _ = l.str(exErr, "expect_error")
		case ex != nil:
			tc.expect = l.expectOps(ex, tf.Mapping)
			tc.expectNone = len(tc.expect) == 0
		default:
			l.addAt(tn, "test %q has no expect (write expect: [] when the mapping must produce nothing)", tc.Name)
		}
		tf.Cases = append(tf.Cases, tc)
	}
	if len(l.probs) > 0 {
		return nil, l.probs.Sorted()
	}
	return tf, nil
}

// expectOps reads the expected ops of a case.
func (l *loader) expectOps(n *yaml.Node, mapping string) []Op {
	if n.Kind != yaml.SequenceNode {
		l.addAt(n, "expect must be a list of ops (or [] for none)")
		return nil
	}
	var out []Op
	for _, on := range n.Content {
		k := l.entries(on, []string{"object", "action", "key_field", "key", "fields"}, "expected op")
		op := Op{Mapping: mapping, Action: Upsert}
		// A segment of an hl7 output mapping (object: TXA) has no key.
		segment := false
		if v := k["object"]; v != nil && segmentRe.MatchString(v.Value) {
			segment, op.Action = true, Segment
		}
		for name, dst := range map[string]*string{"object": &op.Object, "action": &op.Action, "key_field": &op.KeyField, "key": &op.Key} {
			if v := k[name]; v != nil {
				*dst, _ = l.str(v, name)
			} else if name == "object" || !segment && name != "action" {
				l.addAt(on, "expected op has no %s", name)
			}
		}
		if f := k["fields"]; f != nil {
			if f.Kind != yaml.MappingNode {
				l.addAt(f, "fields must be a mapping of field: value")
			} else {
				for i := 0; i+1 < len(f.Content); i += 2 {
					fk, fv := f.Content[i], f.Content[i+1]
					v, err := yamlValue(fv)
					if err != nil {
						l.addAt(fv, "%s: %s", fk.Value, err)
						continue
					}
					op.Fields = append(op.Fields, Field{Name: fk.Value, Value: v})
				}
			}
		}
		out = append(out, op)
	}
	return out
}

// yamlValue reads an expected field value: text, number, boolean, null or
// {ref: {object, key_field, key}}.
func yamlValue(n *yaml.Node) (Value, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return NullValue, nil
		case "!!int", "!!float":
			return Num(canonicalNumber(n.Value)), nil
		case "!!bool":
			return Boolean(strings.EqualFold(n.Value, "true")), nil
		}
		return Str(n.Value), nil
	case yaml.MappingNode:
		var r struct {
			Ref *Reference `yaml:"ref"`
		}
		var probe map[string]map[string]string
		if err := n.Decode(&probe); err != nil || len(probe) != 1 || probe["ref"] == nil {
			return Value{}, fmt.Errorf("a mapping value must be {ref: {object: ..., key_field: ..., key: ...}}")
		}
		ref := probe["ref"]
		r.Ref = &Reference{Object: ref["object"], KeyField: ref["key_field"], Key: ref["key"]}
		return Value{Kind: Ref, Ref: r.Ref}, nil
	}
	return Value{}, fmt.Errorf("expected a value")
}

// ParseInput reads a test or command-line input: HL7 v2 messages (several
// in a file are split on MSH, batch envelopes dropped) or FHIR JSON (one
// resource, or a Bundle's entries).
func ParseInput(data []byte) ([]Input, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return parseFHIRInput(trimmed)
	}
	norm := bytes.ReplaceAll(bytes.ReplaceAll(trimmed, []byte("\r\n"), []byte("\r")), []byte("\n"), []byte("\r"))
	msgs, err := hl7.Split(norm)
	if err != nil {
		return nil, err
	}
	var out []Input
	for _, raw := range msgs {
		m, err := hl7.Parse(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, Input{HL7: m})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no HL7 message (MSH) or FHIR resource found")
	}
	return out, nil
}

func parseFHIRInput(data []byte) ([]Input, error) {
	var probe struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("FHIR input is not valid JSON: %v", err)
	}
	if probe.ResourceType == "" {
		return nil, fmt.Errorf("FHIR input has no resourceType")
	}
	if probe.ResourceType != "Bundle" {
		return []Input{{FHIR: data}}, nil
	}
	var out []Input
	for _, e := range probe.Entry {
		if len(e.Resource) > 0 {
			out = append(out, Input{FHIR: e.Resource})
		}
	}
	return out, nil
}

// RunTests runs the test files against the set; each file tests the
// mapping of its name. It returns one result per case.
func RunTests(s *Set, files []*TestFile) []TestResult {
	var out []TestResult
	for _, tf := range files {
		var m *Mapping
		for _, x := range s.Mappings {
			if x.Name == tf.Mapping {
				m = x
			}
		}
		for i := range tf.Cases {
			tc := &tf.Cases[i]
			r := TestResult{File: tf, Case: tc}
			if m == nil {
				r.Diff = []string{fmt.Sprintf("no mapping %q is loaded (the test file must sit beside %s.yaml)", tf.Mapping, tf.Mapping)}
			} else {
				r.Diff = runCase(m, tc)
			}
			out = append(out, r)
		}
	}
	return out
}

func runCase(m *Mapping, tc *TestCase) []string {
	inputs, err := ParseInput(tc.input)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", tc.inputName, err)}
	}
	var got []Op
	var warns []Warning
	var mapErr error
	for _, in := range inputs {
		if !m.Accepts(in) {
			continue
		}
		if tc.patients != nil {
			in.Patients = tc.patients
		}
		ops, ws, err := m.MapWarnings(in)
		if err != nil {
			mapErr = err
			break
		}
		got = append(got, ops...)
		warns = append(warns, ws...)
	}
	switch {
	case tc.expectError != "" && mapErr == nil:
		return []string{fmt.Sprintf("want an error containing %q, got %d ops and no error", tc.expectError, len(got))}
	case tc.expectError != "":
		if !strings.Contains(mapErr.Error(), tc.expectError) {
			return []string{fmt.Sprintf("want an error containing %q, got: %v", tc.expectError, mapErr)}
		}
		return nil
	case mapErr != nil:
		return []string{fmt.Sprintf("mapping failed: %v", mapErr)}
	}
	return append(DiffOps(tc.expect, got), diffWarnings(tc.warnings, warns)...)
}

// diffWarnings matches expected warnings (texts each contained in one
// warning) against those produced, in any order.
func diffWarnings(want []string, got []Warning) []string {
	var d []string
	used := make([]bool, len(got))
	for _, w := range want {
		found := false
		for i, g := range got {
			if !used[i] && strings.Contains(g.String(), w) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			d = append(d, fmt.Sprintf("warning: want one containing %q, got none", w))
		}
	}
	for i, g := range got {
		if !used[i] {
			d = append(d, fmt.Sprintf("warning not expected (list it under warnings:): %s", g))
		}
	}
	return d
}

// DiffOps compares expected ops with produced ones, in order, and
// explains every difference.
func DiffOps(want, got []Op) []string {
	var d []string
	for i := 0; i < max(len(want), len(got)); i++ {
		switch {
		case i >= len(got):
			d = append(d, fmt.Sprintf("op %d: missing: want %s", i+1, opTitle(want[i])))
			continue
		case i >= len(want):
			d = append(d, fmt.Sprintf("op %d: not expected: got %s", i+1, opTitle(got[i])))
			for _, f := range got[i].Fields {
				d = append(d, fmt.Sprintf("    %s: %s", f.Name, f.Value))
			}
			continue
		}
		w, g := want[i], got[i]
		var od []string
		if w.Object != g.Object || w.Action != g.Action || w.KeyField != g.KeyField || w.Key != g.Key {
			od = append(od, fmt.Sprintf("    want %s", opTitle(w)), fmt.Sprintf("    got  %s", opTitle(g)))
		}
		for _, f := range w.Fields {
			gv, ok := g.Field(f.Name)
			switch {
			case !ok:
				od = append(od, fmt.Sprintf("    - %s: want %s, got nothing (field left out)", f.Name, f.Value))
			case !f.Value.Equal(gv):
				od = append(od, fmt.Sprintf("    ~ %s: want %s, got %s", f.Name, f.Value, gv))
			}
		}
		for _, f := range g.Fields {
			if _, ok := w.Field(f.Name); !ok {
				od = append(od, fmt.Sprintf("    + %s: got %s, not expected", f.Name, f.Value))
			}
		}
		if len(od) > 0 {
			d = append(d, fmt.Sprintf("op %d (%s):", i+1, opTitle(g)))
			d = append(d, od...)
		}
	}
	return d
}

func opTitle(o Op) string {
	return fmt.Sprintf("%s %s %s=%q", o.Action, o.Object, o.KeyField, o.Key)
}

// WriteReport prints results as `ehrbridge test` does and returns the
// number of failures.
func WriteReport(w io.Writer, results []TestResult, verbose bool) int {
	failed := 0
	for _, r := range results {
		where := fmt.Sprintf("%s:%d", r.File.Path, r.Case.Line)
		if r.Passed() {
			if verbose {
				fmt.Fprintf(w, "ok   %s: %s\n", where, r.Case.Name)
			}
			continue
		}
		failed++
		fmt.Fprintf(w, "FAIL %s: %s\n", where, r.Case.Name)
		for _, line := range r.Diff {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", len(results)-failed, failed)
	return failed
}

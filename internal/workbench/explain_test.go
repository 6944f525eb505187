package workbench_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/workbench"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// testFile is a shipped mapping test file, read here on its own (not
// through mappings.ParseTestFile) so that Explain is held against what the
// file says, not against what mappings makes of it.
type testFile struct {
	Tests []struct {
		Name        string            `yaml:"name"`
		Input       string            `yaml:"input"`
		InputFile   string            `yaml:"input_file"`
		Patients    map[string]string `yaml:"patients"`
		ExpectError string            `yaml:"expect_error"`
		Warnings    []string          `yaml:"warnings"`
		Expect      []struct {
			Object   string    `yaml:"object"`
			Action   string    `yaml:"action"`
			KeyField string    `yaml:"key_field"`
			Key      string    `yaml:"key"`
			Fields   yaml.Node `yaml:"fields"`
		} `yaml:"expect"`
	} `yaml:"tests"`
}

// Explain of every input of the shipped sets' tests gives, for the mapping
// each test file tests, the ops (object, action, key, every field and its
// value), warnings and errors the test expects.
func TestExplainShippedSetsMatchTheirTests(t *testing.T) {
	root := shared.ModuleRoot(t)
	cases := 0
	for _, name := range []string{"healthcloud", "dynamics"} {
		dir := filepath.Join(root, "configs", "mappings", name)
		set, err := mappings.Load([]string{dir}, mappings.Options{Zone: time.UTC})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*_test.yaml"))
		if len(files) < 5 {
			t.Fatalf("%s: only %d test files", name, len(files))
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var tf testFile
			if err := yaml.Unmarshal(data, &tf); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			mapping := strings.TrimSuffix(filepath.Base(file), "_test.yaml")
			for _, tc := range tf.Tests {
				cases++
				where := filepath.Base(file) + ": " + tc.Name
				raw := []byte(tc.Input)
				if tc.InputFile != "" {
					if raw, err = os.ReadFile(filepath.Join(dir, tc.InputFile)); err != nil {
						t.Fatal(err)
					}
				}
				ops, warns, mapErr := explainMapping(t, set, raw, mapping, tc.Patients)
				if tc.ExpectError != "" {
					if !strings.Contains(mapErr, tc.ExpectError) {
						t.Errorf("%s: error %q, want one containing %q", where, mapErr, tc.ExpectError)
					}
					continue
				}
				if mapErr != "" {
					t.Errorf("%s: %s", where, mapErr)
					continue
				}
				for _, w := range tc.Warnings {
					if !containsOne(warns, w) {
						t.Errorf("%s: no warning containing %q in %q", where, w, warns)
					}
				}
				if len(ops) != len(tc.Expect) {
					t.Errorf("%s: %d ops, want %d", where, len(ops), len(tc.Expect))
					continue
				}
				for i, want := range tc.Expect {
					got := ops[i]
					action := want.Action
					if action == "" {
						action = mappings.Upsert
						if got.Action == mappings.Segment {
							action = mappings.Segment
						}
					}
					if got.Object != want.Object || got.Action != action || got.KeyField != want.KeyField || got.Key != want.Key {
						t.Errorf("%s: op %d is %s %s %s=%q, want %s %s %s=%q", where, i+1,
							got.Action, got.Object, got.KeyField, got.Key, action, want.Object, want.KeyField, want.Key)
					}
					if got.KeyExpr == "" && got.Action != mappings.Segment {
						t.Errorf("%s: op %d has no key expression", where, i+1)
					}
					written := map[string]workbench.FieldExplanation{}
					for _, f := range got.Fields {
						if f.Expr == "" {
							t.Errorf("%s: op %d field %s has no expression", where, i+1, f.Name)
						}
						if f.LeftOut == "" {
							written[f.Name] = f
						}
					}
					fn := want.Fields.Content
					if len(fn)/2 != len(written) {
						t.Errorf("%s: op %d writes %d fields, want %d", where, i+1, len(written), len(fn)/2)
					}
					for j := 0; j+1 < len(fn); j += 2 {
						f, ok := written[fn[j].Value]
						if !ok {
							t.Errorf("%s: op %d: field %s left out", where, i+1, fn[j].Value)
							continue
						}
						if !sameValue(t, f.Value, fn[j+1]) {
							t.Errorf("%s: op %d: %s = %s, want %s", where, i+1, f.Name, f.Value, fn[j+1].Value)
						}
					}
				}
			}
		}
	}
	if cases < 50 {
		t.Errorf("only %d cases", cases)
	}
}

// explainMapping explains raw and returns the given mapping's ops (skipped
// ones dropped) over all of raw's messages, the warnings and the error.
func explainMapping(t *testing.T, set *mappings.Set, raw []byte, mapping string, patients map[string]string) ([]workbench.OpExplanation, []string, string) {
	t.Helper()
	inputs, err := mappings.ParseInput(raw)
	if err != nil {
		return nil, nil, err.Error()
	}
	var ops []workbench.OpExplanation
	var warns []string
	for _, in := range inputs {
		if patients != nil {
			in.Patients = mappings.StaticPatients(patients)
		}
		ie := workbench.ExplainInput(set, in)
		for _, m := range ie.Mappings {
			if m.Name != mapping {
				continue
			}
			if m.Error != "" {
				return ops, warns, m.Error
			}
			for _, op := range m.Ops {
				if !op.Skipped {
					ops = append(ops, op)
				}
			}
		}
		warns = append(warns, ie.Warnings...)
	}
	return ops, warns, ""
}

func containsOne(list []string, s string) bool {
	for _, x := range list {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

// sameValue compares an explained value (JSON text) with a test file's
// expected YAML value.
func sameValue(t *testing.T, got string, want *yaml.Node) bool {
	var v mappings.Value
	if err := json.Unmarshal([]byte(got), &v); err != nil {
		t.Errorf("explained value %s is not JSON: %v", got, err)
		return false
	}
	switch want.Kind {
	case yaml.MappingNode:
		var w map[string]map[string]string
		if err := want.Decode(&w); err != nil || v.Ref == nil {
			return false
		}
		r := w["ref"]
		return *v.Ref == mappings.Reference{Object: r["object"], KeyField: r["key_field"], Key: r["key"]}
	case yaml.ScalarNode:
		switch want.Tag {
		case "!!null":
			return v.Kind == mappings.Null
		case "!!int", "!!float":
			a, err1 := strconv.ParseFloat(v.Text, 64)
			b, err2 := strconv.ParseFloat(want.Value, 64)
			return v.Kind == mappings.Number && err1 == nil && err2 == nil && a == b
		case "!!bool":
			return v.Kind == mappings.Bool && strings.EqualFold(v.Text, want.Value)
		}
		return v.Kind == mappings.String && v.Text == want.Value
	}
	return false
}

// Explain numbers ops over all accepting mappings, shows skipped ops with
// their if:, fields left out with the reason, and refuses unreadable
// input with an error.
func TestExplainDetails(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), `
when: {hl7: ADT^A01}
lane: PID-3.1
ops:
  - id: patient
    object: Contact
    key_field: K
    key: PID-3.1
    fields:
      LastName: PID-5.1
      Email: PID-13.4
  - id: visit
    object: Visit
    key_field: V
    key: PV1-19.1
    if: present(PV1-19.1)
    fields:
      Who: PID-5.1
`)
	write(t, filepath.Join(dir, "b.yaml"), `
when: {hl7: ADT}
ops:
  - id: second
    object: Note
    key_field: N
    key: MSH-10
    fields:
      Kind: MSH-9.2
`)
	set, err := mappings.Load([]string{dir}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	msg := "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|M1|P|2.5.1\rPID|1||123^^^H^MR||DOE^JOHN\r"
	x, err := workbench.Explain(set, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if len(x.Inputs) != 1 {
		t.Fatalf("%d inputs", len(x.Inputs))
	}
	in := x.Inputs[0]
	if in.Index != 1 || in.Type != "ADT^A01" || !in.Accepted || in.Lane != "123" || in.Error != "" || len(in.Mappings) != 2 {
		t.Fatalf("input: %+v", in)
	}
	a, b := in.Mappings[0], in.Mappings[1]
	if a.Name != "a" || len(a.Ops) != 2 || b.Name != "b" || len(b.Ops) != 1 {
		t.Fatalf("mappings: %+v", in.Mappings)
	}
	p := a.Ops[0]
	if p.Number != 1 || p.ID != "patient" || p.Action != "upsert" || p.Object != "Contact" || p.KeyField != "K" || p.Key != "123" || p.KeyExpr != "PID-3.1" {
		t.Errorf("patient op: %+v", p)
	}
	if len(p.Fields) != 2 || p.Fields[0] != (workbench.FieldExplanation{Name: "LastName", Expr: "PID-5.1", Value: `"DOE"`}) ||
		p.Fields[1] != (workbench.FieldExplanation{Name: "Email", Expr: "PID-13.4", LeftOut: "no value"}) {
		t.Errorf("fields: %+v", p.Fields)
	}
	if v := a.Ops[1]; !v.Skipped || v.Number != 0 || v.If != "present(PV1-19.1)" || v.Fields != nil {
		t.Errorf("skipped op: %+v", v)
	}
	if s := b.Ops[0]; s.Number != 2 || s.Key != "M1" {
		t.Errorf("the second mapping's op is numbered %d (key %q), want op 2", s.Number, s.Key)
	}
	// A message no mapping accepts; unreadable input.
	other := "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|M2|P|2.5.1\rPID|1||9\r"
	if x, err := workbench.Explain(set, []byte(other)); err != nil || x.Inputs[0].Accepted || len(x.Inputs[0].Mappings) != 0 {
		t.Errorf("ORU: %+v, %v", x, err)
	}
	for _, bad := range []string{"", "not a message", `{"resourceType":`} {
		if _, err := workbench.Explain(set, []byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := workbench.Explain(nil, []byte(msg)); err == nil {
		t.Error("a nil set: no error")
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.TrimLeft(data, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
}

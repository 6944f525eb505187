package mappings

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// YAML syntax errors are reported where they are, not where yaml.v3 says
// (the start of the enclosing block, without a column).
func TestYAMLErrorPosition(t *testing.T) {
	const ops = "when: {hl7: ADT}\nops:\n  - object: Account\n    key_field: K\n    key: PID-3.1\n    fields:\n"
	indent, err := os.ReadFile(filepath.Join("testdata", "yamlerrors", "indent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, yaml string
		want       string // line:col: message
	}{
		// The case: yaml.v3 says "line 4" (the ops block).
		{"indentation, deep in a file", string(indent), "23:6: YAML syntax: did not find expected key (is this line indented like the keys or list items above it?)"},
		{"indentation, CRLF", strings.ReplaceAll(string(indent), "\n", "\r\n"), "23:6: YAML syntax: did not find expected key"},
		{"list item indented too little", ops + "      LastName: PID-5.1\n   - object: Contact\n", "8:4: YAML syntax: did not find expected '-' indicator"},
		{"second colon", ops + "      LastName: PID-5.1: x\n", "7:24: YAML syntax: mapping values are not allowed in this context (a second ': ' on the line: quote a value that contains ': ')"},
		{"tab", ops + "      A: PID-5.1\n\tLastName: PID-5.1\n", "8:1: YAML syntax: found a tab character that violates indentation"},
		{"tab at the start", ops + "\tLastName: PID-5.1\n", "7:1: YAML syntax: found character that cannot start any token (YAML indents with spaces, not tabs)"},
		{"at sign after non-ASCII", ops + "      Prénom: PID-5.2\n      Nom: @PID-5.1\n", "8:12: YAML syntax: found character that cannot start any token (a value cannot start with '@': quote it)"},
		{"unclosed quote", ops + "      LastName: \"PID-5.1\n      First: PID-5.2\n", "7:17: YAML syntax: found unexpected end of stream (the \" here is not closed)"},
		{"unclosed flow mapping", "when: {hl7: ADT\nops:\n  - object: Account\n", "1:7: YAML syntax: did not find expected ',' or '}' (the { here is not closed)"},
		{"key without colon", ops + "      LastName: PID-5.1\n    fields2\n", "8:5: YAML syntax: could not find expected ':'"},
		// yaml.v3 says line 5 (the op); found by bisection, not a parse per line.
		{"long file", ops + strings.Repeat("      F: PID-5.1\n", 3000) + "     Bad: PID-5.2\n", "3007:6: YAML syntax: did not find expected key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile("m.yaml", []byte(c.yaml), Options{})
			var ps Problems
			if !errors.As(err, &ps) || len(ps) != 1 {
				t.Fatalf("err = %v, want one problem", err)
			}
			if got := strings.TrimPrefix(ps[0].String(), "m.yaml:"); !strings.HasPrefix(got, c.want) {
				t.Errorf("\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

// Test files are read by the same code.
func TestYAMLErrorPositionInTestFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "x_test.yaml")
	os.WriteFile(f, []byte("tests:\n  - name: one\n    input: |\n      MSH|^~\\&|A|B\n    expect: []\n  - name: two\n   input: x\n"), 0o644)
	_, err := ParseTestFile(f)
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Line != 7 || ps[0].Col != 4 {
		t.Fatalf("err = %v, want one problem at 7:4", err)
	}
}

package crmcheck_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/crmcheck"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/mappings"
)

type finding struct {
	Set, Object, Target, Check, Status string
}

// readmeRows returns the rows of the "What a ... admin must confirm"
// section of a set's README: its cells, trimmed.
func readmeRows(t *testing.T, set string) [][]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "configs", "mappings", set, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "admin must confirm (`ehrbridge crm check`)")
	if i < 0 {
		t.Fatalf("%s/README.md has no crm check section", set)
	}
	text = text[i:]
	if j := strings.Index(text[1:], "\n## "); j >= 0 {
		text = text[:j+1]
	}
	var rows [][]string
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "| ") || strings.HasPrefix(l, "|---") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(l, "|"), " | ") {
			cells = append(cells, strings.TrimSpace(c))
		}
		rows = append(rows, cells)
	}
	return rows[1:] // the header
}

var lineRe = regexp.MustCompile("`(ok {7}[^`]+)`")

// knownChecks are the check kinds crm check prints.
var knownChecks = []string{mappings.CheckField, mappings.CheckKey, mappings.CheckWritable, mappings.CheckType, mappings.CheckValue,
	mappings.CheckRequired, mappings.CheckLength, mappings.CheckNavigation, mappings.CheckReference,
	crmcheck.CheckLogin, crmcheck.CheckObject, crmcheck.CheckWBField, crmcheck.CheckWBWritable, crmcheck.CheckKeysCopied,
	crmcheck.CheckAllocation, crmcheck.CheckRateLimit}

// Every unverifiable finding of findings.json for a shipped set is in its
// README's list of what an admin must confirm, with the crm check line
// that confirms it; every line listed is a line crm check prints.
func TestReadmeListsEveryUnverifiableFinding(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "crm-metadata", "findings.json"))
	if err != nil {
		t.Fatal(err)
	}
	var findings []finding
	if err := json.Unmarshal(data, &findings); err != nil {
		t.Fatal(err)
	}
	rows := map[string][][]string{"healthcloud": readmeRows(t, "healthcloud"), "dynamics": readmeRows(t, "dynamics")}
	n := 0
	for _, f := range findings {
		if f.Status != "unverifiable" {
			continue
		}
		n++
		want := map[bool]string{true: ": " + mappings.CheckValue}[strings.HasPrefix(f.Check, "value:")]
		switch f.Check {
		case "relationship":
			want = ": " + mappings.CheckReference
		case "key-idLookup":
			want = ": " + mappings.CheckKey
		}
		if want == "" {
			t.Errorf("finding of an unknown kind %q: extend the README and this test: %+v", f.Check, f)
			continue
		}
		field := "`" + f.Object + "." + f.Target + "`"
		ok := false
		for _, r := range rows[f.Set] {
			if len(r) < 3 || r[0] != field || !strings.Contains(r[2], want+"`") {
				continue
			}
			if v, isValue := strings.CutPrefix(f.Check, "value:"); isValue && !strings.Contains(r[1], "`"+v+"`") {
				continue
			}
			ok = true
		}
		if !ok {
			t.Errorf("configs/mappings/%s/README.md does not list %s %s with its crm check line", f.Set, field, f.Check)
		}
	}
	if n == 0 {
		t.Fatal("findings.json has no unverifiable finding: the test reads the wrong file")
	}
	for set, rs := range rows {
		for _, r := range rs {
			lines := lineRe.FindAllStringSubmatch(r[len(r)-1], -1)
			if len(lines) == 0 {
				t.Errorf("%s README row %v names no crm check line", set, r)
			}
			for _, l := range lines {
				known := false
				for _, k := range knownChecks {
					known = known || strings.HasSuffix(l[1], ": "+k) || strings.HasSuffix(l[1], " "+k)
				}
				if !known {
					t.Errorf("%s README: %q does not end in a check kind crm check prints", set, l[1])
				}
			}
		}
	}
}

// The lines the READMEs quote are printed by crm check against the
// sandbox, for every field the sandbox's schema knows (a key field
// another change adds is checked once the schema has it).
func TestReadmeLinesArePrinted(t *testing.T) {
	for _, set := range []string{"healthcloud", "dynamics"} {
		t.Run(set, func(t *testing.T) {
			rg := newRig(t, sandbox.Options{}, set == "dynamics")
			dir := t.TempDir()
			var r *crmcheck.Report
			if set == "healthcloud" {
				secret := writeFile(t, dir, "secret", []byte("sandbox-secret"))
				r = run(t, loadConfig(t, dir, sfYAML(rg.srv.URL, "client_secret_file: "+secret), copySet(t, set)))
			} else {
				r = run(t, loadConfig(t, dir, dvYAML(t, rg, dir, "sandbox-secret"), copySet(t, set)))
			}
			printed := map[string]bool{}
			mentioned := map[string]bool{}
			for _, it := range r.Checks {
				l := it.Line()
				if i := strings.Index(l, "  ("); i >= 0 {
					l = l[:i]
				}
				printed[l] = true
				mentioned[it.Object+"."+it.Field] = true
				mentioned[it.Object+"."] = true
			}
			for _, row := range readmeRows(t, set) {
				for _, m := range lineRe.FindAllStringSubmatch(row[len(row)-1], -1) {
					line := m[1]
					what := strings.TrimSpace(strings.TrimPrefix(line, "ok"))
					what, _, _ = strings.Cut(what, ": ")
					if !strings.Contains(what, ".") {
						what += "."
					}
					if !printed[line] {
						if !mentioned[what] && what != "." {
							t.Logf("%s: not in the sandbox's schema yet, not checked", line)
							continue
						}
						t.Errorf("crm check against the sandbox prints no line %q", line)
					}
				}
			}
		})
	}
}

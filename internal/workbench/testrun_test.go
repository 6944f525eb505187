package workbench_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/workbench"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// The shipped sets' tests pass through RunTests; a changed expectation
// fails with its diff, and a broken test file is a positioned problem
// while the other files still run.
func TestRunTests(t *testing.T) {
	src := filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud")
	set, err := mappings.Load([]string{src}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	res, err := workbench.RunTests(set, []string{src})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) < 20 {
		t.Fatalf("only %d cases", len(res))
	}
	for _, r := range res {
		if !r.Passed || r.Diff != nil || r.Line < 1 || r.Name == "" || r.Mapping == "" || !strings.HasSuffix(r.File, "_test.yaml") {
			t.Errorf("case %+v", r)
		}
	}

	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(src, "10_adt_patient_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(data), "LastName: EVERYMAN", "LastName: NOBODY", 1)
	if changed == string(data) {
		t.Fatal("the sample test no longer expects LastName: EVERYMAN")
	}
	if err := os.CopyFS(filepath.Join(dir, "samples"), os.DirFS(filepath.Join(src, "samples"))); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "10_adt_patient_test.yaml"), changed)
	write(t, filepath.Join(dir, "broken_test.yaml"), "tests:\n  - name: x\n    input: MSH|\n")
	res, err = workbench.RunTests(set, []string{dir})
	var ps mappings.Problems
	if !errors.As(err, &ps) || len(ps) == 0 || !strings.Contains(ps[0].String(), "broken_test.yaml:2:") {
		t.Errorf("broken test file: %v", err)
	}
	failed := 0
	for _, r := range res {
		if !r.Passed {
			failed++
			if strings.Join(r.Diff, "\n") == "" || !strings.Contains(strings.Join(r.Diff, "\n"), `~ LastName: want "NOBODY", got "EVERYMAN"`) {
				t.Errorf("diff %q", r.Diff)
			}
		}
	}
	if failed != 1 || len(res) < 2 {
		t.Errorf("%d of %d cases failed, want 1", failed, len(res))
	}
	var out bytes.Buffer
	if n := workbench.WriteTestReport(&out, res, true); n != 1 ||
		!strings.Contains(out.String(), "FAIL "+filepath.Join(dir, "10_adt_patient_test.yaml")+":") ||
		!strings.Contains(out.String(), "ok   ") || !strings.HasSuffix(out.String(), " passed, 1 failed\n") {
		t.Errorf("report (%d failed):\n%s", n, out.String())
	}
	if _, err := workbench.RunTests(set, []string{filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing path: no error")
	}
}

// Lint gives load problems as errors and the set's warnings as warnings,
// each with its position, printed as ehrbridge lint prints them.
func TestLint(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "obs.yaml"), `
when: {hl7: ORU^R01}
ops:
  - id: obs
    object: Observation
    key_field: K
    key: OBR-3.1
    fields:
      V: OBX-5
`)
	ps := workbench.LintFiles([]string{dir}, mappings.Options{Zone: time.UTC})
	if len(ps) == 0 {
		t.Fatal("no warning for a key read without its namespace")
	}
	p := ps[0]
	if p.Severity != workbench.SeverityWarning || p.File != filepath.Join(dir, "obs.yaml") || p.Line != 6 || p.Col < 1 ||
		strings.HasPrefix(p.Message, "warning") || !strings.HasPrefix(p.String(), p.File+":6:") || !strings.Contains(p.String(), ": warning: key: OBR-3.1") {
		t.Errorf("warning: %+v %q", p, p.String())
	}
	write(t, filepath.Join(dir, "bad.yaml"), "when: {hl7: ADT^A01}\nops: 3\nnonsense: 1\n")
	ps = workbench.LintFiles([]string{dir}, mappings.Options{Zone: time.UTC})
	errs := 0
	for _, p := range ps {
		if p.Severity == workbench.SeverityError {
			errs++
			if p.File != filepath.Join(dir, "bad.yaml") || p.Line < 1 {
				t.Errorf("error without position: %+v", p)
			}
		}
	}
	if errs == 0 {
		t.Errorf("no error for a broken mapping: %+v", ps)
	}
	if ps := workbench.Lint(nil, errors.New("plain")); len(ps) != 1 || ps[0].String() != "plain" || ps[0].Severity != workbench.SeverityError {
		t.Errorf("plain error: %+v", ps)
	}
}

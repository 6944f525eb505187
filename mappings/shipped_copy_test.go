package mappings_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// A shipped mapping set, copied alone to another place with its tests,
// lints clean and passes its tests there: the tests' inputs travel with
// the set (samples/ beside the test files; input_file is relative to the
// test file), not in ../../samples.
func TestShippedSetsPassWhenCopiedAlone(t *testing.T) {
	root := shared.ModuleRoot(t)
	sets, err := filepath.Glob(filepath.Join(root, "configs", "mappings", "*"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, src := range sets {
		if st, err := os.Stat(src); err != nil || !st.IsDir() {
			continue
		}
		n++
		name := filepath.Base(src)
		t.Run(name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "site", name)
			copyTree(t, src, dst)
			set, err := mappings.Load([]string{dst}, mappings.Options{Zone: time.UTC})
			if err != nil {
				t.Fatalf("the copied set does not lint: %v", err)
			}
			files, err := mappings.FindTests([]string{dst})
			if err != nil || len(files) == 0 {
				t.Fatalf("test files: %v, %v", files, err)
			}
			var tfs []*mappings.TestFile
			for _, f := range files {
				tf, err := mappings.ParseTestFile(f)
				if err != nil {
					t.Fatalf("%v", err)
				}
				tfs = append(tfs, tf)
			}
			results := mappings.RunTests(set, tfs)
			var out bytes.Buffer
			if failed := mappings.WriteReport(&out, results, false); failed > 0 || len(results) == 0 {
				t.Errorf("%d of %d cases failed in the copy:\n%s", failed, len(results), out.String())
			}
		})
	}
	if n < 3 {
		t.Fatalf("found %d shipped sets, want healthcloud, dynamics and writeback", n)
	}
}

// A set's samples/ are copies of configs/samples, so that a fix to a
// sample message reaches the sets' tests too.
func TestShippedSetSamplesMatchConfigsSamples(t *testing.T) {
	root := shared.ModuleRoot(t)
	samples, _ := filepath.Glob(filepath.Join(root, "configs", "mappings", "*", "samples", "*"))
	if len(samples) == 0 {
		t.Fatal("no samples/ in the shipped sets")
	}
	for _, s := range samples {
		sub := "hl7v2"
		if strings.HasSuffix(s, ".json") {
			sub = "fhir"
		}
		orig := filepath.Join(root, "configs", "samples", sub, filepath.Base(s))
		a, err1 := os.ReadFile(s)
		b, err2 := os.ReadFile(orig)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s (%v, %v): copy it again", s, orig, err1, err2)
		}
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// An input_file that cannot be read says where it was looked for and,
// when it leaves the set, how to keep the set self-contained.
func TestInputFileOutsideTheSet(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "x_test.yaml")
	if err := os.WriteFile(f, []byte("tests:\n  - name: one\n    input_file: ../../samples/hl7v2/ADT-A01-01.hl7\n    expect: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := mappings.ParseTestFile(f)
	if err == nil {
		t.Fatal("a missing input_file was accepted")
	}
	for _, want := range []string{":3:17: input_file: cannot read ../../samples/hl7v2/ADT-A01-01.hl7 (relative to this test file, ", "keep inputs inside the set"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
}

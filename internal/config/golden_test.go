package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.want from the current output")

// testEnv is the environment every golden file is parsed with, so results
// do not depend on the machine running the tests.
var testEnv = map[string]string{
	"EHR_PORT":     "2575",
	"EHR_HOST":     "0.0.0.0",
	"EHR_WORD":     "abc-from-env",
	"EHR_EMPTY":    "",
	"EHR_HASH_KEY": "env-hash-key-value",
}

func lookupTestEnv(name string) (string, bool) {
	v, ok := testEnv[name]
	return v, ok
}

// TestBadFiles checks that each testdata/bad/<case>.yaml yields exactly the
// problem lines in <case>.want.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(filepath.ToSlash(file), data, lookupTestEnv)
			if err == nil {
				t.Fatalf("Parse succeeded, want problems; config: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config along with problems")
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error is %T, want Problems", err)
			}
			got := err.Error()
			wantFile := strings.TrimSuffix(file, ".yaml") + ".want"
			if *update {
				if err := os.WriteFile(wantFile, []byte(got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantData, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatal(err)
			}
			want := strings.TrimRight(strings.ReplaceAll(string(wantData), "\r\n", "\n"), "\n")
			if got != want {
				t.Errorf("problems differ\n--- got:\n%s\n--- want:\n%s", got, want)
			}
			// Inline secrets in the golden files all contain this marker,
			// as do secret values in testEnv; none may reach a message.
			for _, secret := range []string{"do-not-print-me", "abc-from-env", "env-hash-key-value", "file-passphrase-value"} {
				if strings.Contains(got, secret) {
					t.Errorf("problems contain secret value %q", secret)
				}
			}
		})
	}
}

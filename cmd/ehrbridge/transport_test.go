package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// lint and run refuse plaintext MLLP on 0.0.0.0 with the position and the
// opt-out to set; with insecure_plaintext: true it lints.
func TestLintTransportSecurity(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "plain.yaml")
	data := "data_dir: ./d\nsources:\n  mllp:\n    - name: ehr\n      listen: 0.0.0.0:2575\n"
	if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "lint", "--config", f)
	if code != exitFailure || !strings.Contains(out+errOut, f+":5:15: sources.mllp[0].listen: plaintext listener") ||
		!strings.Contains(out+errOut, "set sources.mllp[0].insecure_plaintext: true") {
		t.Errorf("lint of plaintext MLLP on 0.0.0.0: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, "run", "--config", f)
	if code == 0 || !strings.Contains(out+errOut, f+":5:15: ") || !strings.Contains(out+errOut, "does not lint; not starting") {
		t.Errorf("run of plaintext MLLP on 0.0.0.0: exit %d\n%s%s", code, out, errOut)
	}
	if err := os.WriteFile(f, []byte(data+"      insecure_plaintext: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runCLI(t, "lint", "--config", f); code != 0 {
		t.Errorf("lint with the opt-out: exit %d\n%s%s", code, out, errOut)
	}
}

// Every packaged config lints (with the repository's mappings in place of
// the installed ones) and needs no plaintext opt-out.
func TestPackagedConfigsLint(t *testing.T) {
	root := shared.ModuleRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "configs", "*.yaml"))
	pkg, _ := filepath.Glob(filepath.Join(root, "installer", "packaging", "*.yaml"))
	files = append(files, pkg...)
	if len(files) < 4 {
		t.Fatalf("found %d packaged configs: %v", len(files), files)
	}
	installed := regexp.MustCompile(`(?m)^(\s*paths: \[)[^\]]*mappings[/\\](healthcloud|dynamics)\]`)
	optOut := regexp.MustCompile(`(?m)^\s*insecure_plaintext:`)
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if optOut.Match(data) {
			t.Errorf("%s sets insecure_plaintext", file)
		}
		cf := file
		if filepath.Base(filepath.Dir(file)) == "packaging" {
			// Installed paths: the repository's mappings, a temp data dir.
			text := installed.ReplaceAllString(string(data), "${1}"+filepath.Join(root, "configs", "mappings", "$2")+"]")
			text = regexp.MustCompile(`(?m)^data_dir: .*$`).ReplaceAllString(text, "data_dir: "+t.TempDir())
			cf = filepath.Join(t.TempDir(), filepath.Base(file))
			if err := os.WriteFile(cf, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		out, errOut, code := runCLI(t, "lint", "--config", cf)
		if code != 0 || !strings.Contains(out, ": ok (") {
			t.Errorf("%s does not lint: exit %d\n%s%s", file, code, out, errOut)
		}
	}
}

// The built binary: TestMain, building it once, running it, and the
// inputs its tests share.

package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/browsertest"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// The binary ehrbridgeBinary builds, once per test binary run.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the binary built for the end-to-end tests and stops
// the browser the console's tests started.
func TestMain(m *testing.M) {
	code := browsertest.Main(m)
	if binPath != "" && buildErr == nil {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// ehrbridgeBinary builds ./cmd/ehrbridge on first use (a run of tests that
// need no binary builds none) and returns its path.
func ehrbridgeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ehrbridge-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ehrbridge")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/ehrbridge/ehrbridge/cmd/ehrbridge").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// corpus is a file of the public HL7 v2 corpus in the shared folder.
func corpus(t *testing.T, elem ...string) string {
	return shared.Path(t, append([]string{"corpus", "hl7v2"}, elem...)...)
}

// writeFiles writes name → content under a new directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func runBin(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	return runCmd(t, exec.Command(bin, args...))
}

// runCmd runs cmd and returns its stdout, stderr and exit code; a command
// that could not run at all fails the test.
func runCmd(t *testing.T, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

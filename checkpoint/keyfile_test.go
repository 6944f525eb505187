//go:build !windows

package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFileReadableByOthersRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.key")
	if err := os.WriteFile(path, []byte("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckKeyFile(path); err != nil {
		t.Errorf("mode 0600: %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		err := CheckKeyFile(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("%#o", mode)) {
			t.Errorf("mode %#o: %v", mode, err)
		}
		if err != nil && strings.Contains(err.Error(), "AQEB") {
			t.Errorf("the error holds the key: %v", err)
		}
	}
	os.Chmod(path, 0o400)
	if err := CheckKeyFile(path); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}

package packaging_test

import (
	"os"
	"strings"
	"testing"
)

// The Windows installer takes inherited permissions off the data root
// (config, checkpoint log, key files): ProgramData grants every user read
// access, which the log's files would otherwise inherit. Checked as text:
// no PowerShell runs here.
func TestWindowsInstallerRemovesInheritedPermissions(t *testing.T) {
	b, err := os.ReadFile("windows/install.ps1")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	upgradeExit := strings.Index(s, "exit 0")
	for _, dir := range []string{"$dataRoot", "$keys"} {
		i := strings.Index(s, "icacls "+dir+" /inheritance:r /grant:r ")
		if i < 0 {
			t.Errorf("install.ps1 does not remove inherited permissions from %s", dir)
			continue
		}
		if i > upgradeExit {
			t.Errorf("install.ps1 restricts %s only on a fresh install, not on an upgrade", dir)
		}
		line := s[i : i+strings.Index(s[i:], "\n")]
		if strings.Contains(line, "Users") || strings.Contains(line, "S-1-5-32-545") || strings.Contains(line, "Everyone") {
			t.Errorf("install.ps1 grants every user access to %s: %s", dir, line)
		}
	}
}

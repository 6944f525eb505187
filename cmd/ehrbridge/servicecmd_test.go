package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `ehrbridge service install --help` documents the flags; `service unit`
// prints the unit for a config that lints and refuses one that does not.
func TestServiceCommandHelpAndUnit(t *testing.T) {
	_, errOut, code := runCLI(t, "service", "install", "--help")
	for _, flag := range []string{"--name", "--config", "--data-dir", "--user", "install", "uninstall", "status", "journalctl"} {
		if !strings.Contains(errOut, flag) {
			t.Errorf("service --help lacks %s:\n%s", flag, errOut)
		}
	}
	if code != exitUsage {
		t.Errorf("--help exit %d", code)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(cfg, []byte("data_dir: "+filepath.Join(dir, "lab-data")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "service", "unit", "--name", "ehrbridge-lab", "--config", cfg)
	if code != exitOK || !strings.Contains(out, "ReadWritePaths="+filepath.Join(dir, "lab-data")) || !strings.Contains(out, "--service-name ehrbridge-lab") {
		t.Errorf("service unit: %d\n%s%s", code, out, errOut)
	}
	if err := os.WriteFile(cfg, []byte("data_dri: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runCLI(t, "service", "install", "--config", cfg); code != exitFailure || !strings.Contains(errOut, "cannot start is not installed") {
		t.Errorf("install of a config that does not lint: %d %s", code, errOut)
	}
}

package installer

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	ks "github.com/kardianos/service"
)

// Resolve makes the config and data directory absolute, takes this
// executable, fills in the defaults, and asks lint (when given) for the
// config's data_dir; a config that does not lint is not installed.
func TestResolve(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix paths")
	}
	t.Chdir(t.TempDir())
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	cwd, _ := os.Getwd()

	var linted []string
	lint := func(dataDir string, ok bool) func(string) (string, bool) {
		return func(config string) (string, bool) { linted = append(linted, config); return dataDir, ok }
	}
	p, err := Resolve("ehrbridge-lab", "lab.yaml", "", "", lint("lab-data", true))
	if err != nil {
		t.Fatal(err)
	}
	want := Params{Name: "ehrbridge-lab", Exe: exe, Config: filepath.Join(cwd, "lab.yaml"), DataDir: filepath.Join(cwd, "lab-data"), User: "ehrbridge"}
	if p != want || strings.Join(linted, ",") != want.Config {
		t.Errorf("got %+v (linted %q), want %+v", p, linted, want)
	}

	// The data dir of the command line wins over the config's.
	if p, err := Resolve("ehrbridge-lab", "lab.yaml", "/srv/lab", "svc", lint("lab-data", true)); err != nil || p.DataDir != "/srv/lab" || p.User != "svc" {
		t.Errorf("--data-dir: %+v %v", p, err)
	}

	// Without lint (unit for packaging, control actions) the defaults of
	// DefaultPaths fill in.
	linted = nil
	p, err = Resolve("ehrbridge", "", "", "", nil)
	if len(linted) > 0 {
		t.Errorf("linted without lint: %q", linted)
	}
	defCfg, defData := DefaultPaths("ehrbridge", runtime.GOOS)
	if err != nil || p.Config != defCfg || p.DataDir != defData {
		t.Errorf("defaults: %+v %v", p, err)
	}

	if _, err := Resolve("ehrbridge", "bad.yaml", "", "", lint("", false)); err == nil || !strings.Contains(err.Error(), "cannot start is not installed") {
		t.Errorf("a config that does not lint: %v", err)
	}
	if _, err := Resolve("Bad Name", "lab.yaml", "/srv/lab", "", nil); err == nil || !strings.Contains(err.Error(), "service name") {
		t.Errorf("a bad service name: %v", err)
	}
}

// An unknown control action is refused before the service manager is
// asked to do anything.
func TestControlRefusesUnknownAction(t *testing.T) {
	p := Params{Name: "ehrbridge-test-unknown", Exe: "/usr/bin/ehrbridge", Config: "/etc/ehrbridge/x.yaml", DataDir: "/var/lib/x"}
	if runtime.GOOS == "windows" {
		p = Params{Name: "ehrbridge-test-unknown", Exe: `C:\e\ehrbridge.exe`, Config: `C:\e\x.yaml`, DataDir: `C:\e\x`}
	}
	msg, err := Control(p, "reinstall")
	if errors.Is(err, ks.ErrNoServiceSystemDetected) {
		t.Skip("no service manager on this machine")
	}
	if err == nil || !strings.Contains(err.Error(), "unknown action") {
		t.Errorf("reinstall: %q %v", msg, err)
	}
}

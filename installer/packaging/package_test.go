// Package packaging_test builds the packages with
// installer/packaging/package.sh and checks what they hold; as root with
// dpkg, it installs the .deb, checks the service user, the data dir and
// the unit (systemd-analyze verify), upgrades it over an edited config,
// and removes it.
package packaging_test

import (
	"archive/zip"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	buildDir  string // the packages, built once for every test
	buildErr  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// build builds the packages once per test run.
func build(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("packages are built on Linux")
	}
	for _, tool := range []string{"dpkg-deb", "fakeroot", "rpmbuild", "wixl", "zip", "systemd-analyze", "msiinfo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make test installs it)", tool)
		}
	}
	buildOnce.Do(func() { buildDir, buildErr = buildPackages(t) })
	if buildErr != "" {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "dist")
}

func buildPackages(t *testing.T) (string, string) {
	dir, err := os.MkdirTemp("", "ehrbridge-packages-")
	if err != nil {
		return "", err.Error()
	}
	bin, exe := filepath.Join(dir, "ehrbridge"), filepath.Join(dir, "ehrbridge.exe")
	for _, b := range []struct{ out, goos string }{{bin, "linux"}, {exe, "windows"}} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", b.out, "../../cmd/ehrbridge")
		cmd.Env = append(os.Environ(), "GOOS="+b.goos, "GOARCH=amd64", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return dir, fmt.Sprintf("go build %s: %v\n%s", b.goos, err, out)
		}
	}
	cmd := exec.Command("sh", "package.sh", "1.2.3", filepath.Join(dir, "dist"))
	cmd.Env = append(os.Environ(), "EHRBRIDGE_BIN="+bin, "EHRBRIDGE_EXE="+exe)
	if b, err := cmd.CombinedOutput(); err != nil {
		return dir, fmt.Sprintf("package.sh: %v\n%s", err, b)
	}
	return dir, ""
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

func TestPackages(t *testing.T) {
	dist := build(t)
	deb := filepath.Join(dist, "ehrbridge_1.2.3_amd64.deb")
	rpm := filepath.Join(dist, "ehrbridge-1.2.3-1.x86_64.rpm")
	zipFile := filepath.Join(dist, "ehrbridge-1.2.3-windows-amd64.zip")
	msi := filepath.Join(dist, "ehrbridge-1.2.3-windows-amd64.msi")

	mustContain(t, "the .deb", run(t, "dpkg-deb", "-c", deb), "./usr/bin/ehrbridge", "./lib/systemd/system/ehrbridge.service",
		"./etc/ehrbridge/ehrbridge.yaml", "./usr/share/ehrbridge/mappings/healthcloud/10_adt_patient.yaml",
		"./usr/share/ehrbridge/mappings/dynamics/adt.yaml", "./usr/share/doc/ehrbridge/README.md", "./usr/share/doc/ehrbridge/docs/setup-dataverse.md")
	mustContain(t, "the .deb's conffiles", run(t, "dpkg-deb", "-f", deb, "Package", "Version"), "ehrbridge", "1.2.3")
	tmp := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, tmp)
	conf, _ := os.ReadFile(filepath.Join(tmp, "conffiles"))
	if strings.TrimSpace(string(conf)) != "/etc/ehrbridge/ehrbridge.yaml" {
		t.Errorf("conffiles %q", conf)
	}
	post, _ := os.ReadFile(filepath.Join(tmp, "postinst"))
	mustContain(t, "postinst", string(post), "useradd --system", "install -d -o ehrbridge -g ehrbridge -m 0750 /var/lib/ehrbridge")

	mustContain(t, "the .rpm", run(t, "rpm", "-qpl", rpm), "/usr/bin/ehrbridge", "/usr/lib/systemd/system/ehrbridge.service",
		"/etc/ehrbridge/ehrbridge.yaml", "/var/lib/ehrbridge", "/usr/share/ehrbridge/mappings/healthcloud")
	if got := strings.TrimSpace(run(t, "rpm", "-qpc", rpm)); got != "/etc/ehrbridge/ehrbridge.yaml" {
		t.Errorf("rpm config files %q", got)
	}
	mustContain(t, "the .rpm's scripts", run(t, "rpm", "-qp", "--scripts", rpm), "useradd -r", "try-restart", "systemctl stop")

	z, err := zip.OpenReader(zipFile)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range z.File {
		names = append(names, f.Name)
	}
	z.Close()
	mustContain(t, "the .zip", strings.Join(names, "\n"), "ehrbridge-1.2.3-windows-amd64/ehrbridge.exe", "/ehrbridge.yaml", "/install.ps1",
		"/uninstall.ps1", "/mappings/dynamics/adt.yaml", "/docs/setup-dataverse.md")
	svc := run(t, "msiinfo", "export", msi, "ServiceInstall")
	mustContain(t, "the .msi's service", svc, "ehrbridge", `NT SERVICE\ehrbridge`, `run --config "[CommonAppDataFolder]ehrbridge\ehrbridge.yaml"`)
	mustContain(t, "the .msi's Event Log sources", run(t, "msiinfo", "export", msi, "Registry"),
		`EventLog\Application\ehrbridge-audit\`+"\tEventMessageFile\t[System64Folder]EventCreate.exe",
		`EventLog\Application\ehrbridge\`+"\tEventMessageFile\t[System64Folder]EventCreate.exe", "TypesSupported\t#7")
	mustContain(t, "the .msi's files", run(t, "msiinfo", "export", msi, "File"), "ehrbridge.exe", "adt.yaml", "install.ps1")

	// The unit in the package passes systemd-analyze verify (its binary
	// must exist: take it from the .deb).
	root := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, root)
	unit, _ := os.ReadFile(filepath.Join(root, "lib/systemd/system/ehrbridge.service"))
	local := strings.ReplaceAll(string(unit), "/usr/bin/ehrbridge", filepath.Join(root, "usr/bin/ehrbridge"))
	uf := filepath.Join(t.TempDir(), "ehrbridge.service")
	if err := os.WriteFile(uf, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", uf).CombinedOutput(); err != nil || strings.Contains(string(out), "ehrbridge.service:") {
		t.Errorf("systemd-analyze verify of the packaged unit: %v\n%s", err, out)
	}
	// The packaged config lints with the packaged mappings.
	cfg, _ := os.ReadFile(filepath.Join(root, "etc/ehrbridge/ehrbridge.yaml"))
	local = strings.ReplaceAll(string(cfg), "/usr/share/ehrbridge", filepath.Join(root, "usr/share/ehrbridge"))
	local = strings.ReplaceAll(local, "/var/lib/ehrbridge", filepath.Join(t.TempDir(), "data"))
	cf := filepath.Join(t.TempDir(), "ehrbridge.yaml")
	if err := os.WriteFile(cf, []byte(local), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(root, "usr/bin/ehrbridge"), "lint", "--config", cf).CombinedOutput(); err != nil {
		t.Errorf("the packaged config does not lint: %v\n%s", err, out)
	}
}

// As root on a machine without ehrbridge installed (CI): install the .deb,
// check the user, data dir and config permissions and that the installed
// unit verifies; upgrade over an edited config (kept); remove (config and
// data kept); purge.
func TestInstallDeb(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing a package needs root")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("not a Debian system")
	}
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "ehrbridge").CombinedOutput(); strings.Contains(string(out), "installed") {
		t.Skip("ehrbridge is installed on this machine: not touching it")
	}
	_, hadUser := user.Lookup("ehrbridge")
	dist := build(t)
	deb := filepath.Join(dist, "ehrbridge_1.2.3_amd64.deb")
	t.Cleanup(func() {
		_ = exec.Command("dpkg", "--purge", "ehrbridge").Run()
		if hadUser != nil { // the test created them
			_ = exec.Command("userdel", "ehrbridge").Run()
			_ = exec.Command("groupdel", "ehrbridge").Run()
			_ = os.RemoveAll("/var/lib/ehrbridge")
		}
	})
	run(t, "dpkg", "-i", deb)
	u, err := user.Lookup("ehrbridge")
	if err != nil {
		t.Fatalf("no ehrbridge user after install: %v", err)
	}
	st, err := os.Stat("/var/lib/ehrbridge")
	if err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("/var/lib/ehrbridge: %v %v", st, err)
	}
	owner := run(t, "stat", "-c", "%U:%G %a", "/var/lib/ehrbridge", "/etc/ehrbridge/ehrbridge.yaml")
	if owner != "ehrbridge:ehrbridge 750\nroot:ehrbridge 640\n" {
		t.Errorf("owners and modes:\n%s (user %s)", owner, u.Uid)
	}
	mustContain(t, "ehrbridge version", run(t, "/usr/bin/ehrbridge", "version"), "ehrbridge")
	if out, err := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/ehrbridge.service").CombinedOutput(); err != nil ||
		strings.Contains(string(out), "ehrbridge.service:") {
		t.Errorf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
	}
	mustContain(t, "lint of the installed config", run(t, "/usr/bin/ehrbridge", "lint", "--config", "/etc/ehrbridge/ehrbridge.yaml"), "ok")

	// An admin's edit survives an upgrade (a reinstall of the package).
	edited, _ := os.ReadFile("/etc/ehrbridge/ehrbridge.yaml")
	edited = append(edited, []byte("# edited by the hospital's admin\n")...)
	if err := os.WriteFile("/etc/ehrbridge/ehrbridge.yaml", edited, 0o640); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dpkg", "--force-confold", "-i", deb)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("upgrade: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile("/etc/ehrbridge/ehrbridge.yaml"); !strings.Contains(string(got), "edited by the hospital's admin") {
		t.Error("the upgrade replaced the edited config")
	}
	// Remove: the binary goes, the config and the data stay.
	if err := os.WriteFile("/var/lib/ehrbridge/checkpoint.db", []byte("pending"), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "dpkg", "-r", "ehrbridge")
	if _, err := os.Stat("/usr/bin/ehrbridge"); err == nil {
		t.Error("the binary is still there after removal")
	}
	for _, keep := range []string{"/etc/ehrbridge/ehrbridge.yaml", "/var/lib/ehrbridge/checkpoint.db"} {
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("%s is gone after removal: %v", keep, err)
		}
	}
	run(t, "dpkg", "--purge", "ehrbridge")
	if _, err := os.Stat("/var/lib/ehrbridge/checkpoint.db"); err != nil {
		t.Error("purge removed the checkpoint log, which may hold unsent messages")
	}
}

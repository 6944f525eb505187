// Package packaging_test builds the packages with
// installer/packaging/package.sh and checks what they hold; as root with
// dpkg, it installs the .deb, checks the service user, the data dir and
// the unit (systemd-analyze verify), upgrades it over an edited config,
// and removes it.
package packaging_test

import (
	"archive/zip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
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
	checkMSIService(t, msi)
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

// msiRows returns the rows of an MSI table (msiinfo export: three header
// lines, then tab-separated rows).
func msiRows(t *testing.T, msi, table string) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(run(t, "msiinfo", "export", msi, table), "\r\n"), "\n")
	var rows [][]string
	for i, l := range lines {
		if i >= 3 && l != "" {
			rows = append(rows, strings.Split(strings.TrimRight(l, "\r"), "\t"))
		}
	}
	return rows
}

// commandArgs splits a command line as the Microsoft C runtime does (sc.exe's
// argv): a quote toggles quoting, \" is a literal quote, other backslashes
// are literal.
func commandArgs(line string) []string {
	var args []string
	var cur strings.Builder
	inArg, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line) && line[i+1] == '"':
			cur.WriteByte('"')
			inArg = true
			i++
		case c == '"':
			quoted = !quoted
			inArg = true
		case (c == ' ' || c == '\t') && !quoted:
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args
}

// checkMSIService checks how the .msi registers the service: its ImagePath
// must quote the executable's path, which lies under Program Files (a path
// with a space: unquoted, Windows would try C:\Program.exe first, CWE-428).
// The ServiceInstall table cannot (Windows Installer joins the key file's
// path and the Arguments unquoted), so no row may use it; sc.exe creates the
// service in a deferred action, with a rollback action that deletes it.
func checkMSIService(t *testing.T, msi string) {
	t.Helper()
	if rows := msiRows(t, msi, "ServiceInstall"); len(rows) > 0 {
		t.Errorf("the .msi's ServiceInstall table has %d rows: Windows Installer registers their ImagePath unquoted", len(rows))
	}
	actions := map[string][]string{} // Action → Type, Source, Target
	for _, r := range msiRows(t, msi, "CustomAction") {
		if len(r) >= 4 {
			actions[r[0]] = r[1:4]
		}
	}
	seq := map[string]int{}
	for _, r := range msiRows(t, msi, "InstallExecuteSequence") {
		if len(r) >= 3 {
			n, err := strconv.Atoi(r[2])
			if err != nil {
				t.Fatalf("InstallExecuteSequence row %q: %v", r, err)
			}
			seq[r[0]] = n
		}
	}
	create, ok := actions["ServiceCreate"]
	if !ok {
		t.Fatalf("the .msi has no ServiceCreate action; its actions: %v", actions)
	}
	// 50 (exe named by a property) + 1024 (deferred) + 2048 (no impersonation).
	if create[0] != "3122" || create[1] != "ScExe" {
		t.Errorf("ServiceCreate: type %s source %s, want a deferred, elevated sc.exe (3122 ScExe)", create[0], create[1])
	}
	args := commandArgs(create[2])
	opts := map[string]string{}
	for i := 0; i+1 < len(args); i++ {
		if strings.HasSuffix(args[i], "=") {
			opts[args[i]] = args[i+1]
			i++
		}
	}
	if len(args) < 2 || args[0] != "create" || args[1] != "ehrbridge" {
		t.Errorf("ServiceCreate runs sc.exe %q, want create ehrbridge", args)
	}
	want := map[string]string{
		"binPath=":     `"[#ehrbridgeExe]" run --config "[CommonAppDataFolder]ehrbridge\ehrbridge.yaml"`,
		"obj=":         `NT SERVICE\ehrbridge`,
		"start=":       "auto",
		"type=":        "own",
		"error=":       "normal",
		"DisplayName=": "ehrbridge (ehrbridge)",
	}
	for k, v := range want {
		if opts[k] != v {
			t.Errorf("ServiceCreate: sc.exe %s %q, want %q", k, opts[k], v)
		}
	}
	if bp := opts["binPath="]; !strings.HasPrefix(bp, `"[#ehrbridgeExe]" `) {
		t.Errorf("the service's ImagePath %q does not begin with the quoted executable", bp)
	}
	if sc := actions["SetScExe"]; len(sc) < 3 || sc[2] != `[System64Folder]sc.exe` {
		t.Errorf("SetScExe %q, want ScExe = [System64Folder]sc.exe", sc)
	}
	// 50 + 64 (ignore the exit code) + 256 (rollback) + 1024 + 2048.
	if rb := actions["ServiceCreateRollback"]; len(rb) < 3 || rb[0] != "3442" || rb[2] != "delete ehrbridge" {
		t.Errorf("ServiceCreateRollback %q, want a rollback action (3442) running sc.exe delete ehrbridge", rb)
	}
	if d := actions["ServiceDescribe"]; len(d) < 3 || !strings.HasPrefix(d[2], "description ehrbridge ") {
		t.Errorf("ServiceDescribe %q", d)
	}
	// The order: ScExe is set before the script is written; the old version
	// (and its service) is gone before the new service is created, after the
	// files; the rollback action precedes the action it undoes (Windows
	// Installer, "Rollback Custom Actions"); the description after the create.
	order := []string{"SetScExe", "InstallValidate", "RemoveExistingProducts", "InstallInitialize", "DeleteServices", "InstallFiles",
		"ServiceCreateRollback", "ServiceCreate", "ServiceDescribe", "InstallFinalize"}
	for i, a := range order {
		if _, ok := seq[a]; !ok {
			t.Errorf("InstallExecuteSequence lacks %s", a)
		} else if i > 0 && seq[order[i-1]] >= seq[a] {
			t.Errorf("InstallExecuteSequence: %s (%d) is not before %s (%d)", order[i-1], seq[order[i-1]], a, seq[a])
		}
	}
	// A service ehrbridge that is not an older .msi's (installed from the
	// .zip) stops the installation before it changes anything.
	mustContain(t, "the .msi's launch conditions", run(t, "msiinfo", "export", msi, "LaunchCondition"),
		"Installed OR NOT EXISTINGSERVICE OR WIX_UPGRADE_DETECTED\t")
	// Type 18: a raw value (2) in the 64-bit view (16).
	mustContain(t, "the .msi's registry searches", run(t, "msiinfo", "export", msi, "RegLocator"),
		"ExistingService\t2\tSYSTEM\\CurrentControlSet\\Services\\ehrbridge\tImagePath\t18")
	mustContain(t, "the .msi's searches", run(t, "msiinfo", "export", msi, "AppSearch"), "EXISTINGSERVICE\tExistingService")
	// The service is stopped before an upgrade or removal and deleted on
	// removal: Event 162 = 2 + 32 (stop on install and uninstall) + 128
	// (delete on uninstall).
	ctl := msiRows(t, msi, "ServiceControl")
	if len(ctl) != 1 || len(ctl[0]) < 6 || ctl[0][1] != "ehrbridge" || ctl[0][2] != "162" || ctl[0][5] != "Exe" {
		t.Errorf("ServiceControl rows %q, want ehrbridge 162 on Exe", ctl)
	}
}

// With Wine: in a new prefix, the .msi installs the service with its path
// quoted, the virtual account, automatic start and the arguments; its
// removal deletes the service; and it refuses to install over a service
// ehrbridge it did not install (the .zip's), leaving that one alone.
func TestMSIServiceUnderWine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Wine runs on Linux")
	}
	for _, tool := range []string{"wine", "wineboot", "wineserver"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	dist := build(t)
	msi := `Z:` + strings.ReplaceAll(filepath.Join(dist, "ehrbridge-1.2.3-windows-amd64.msi"), "/", `\`)
	prefix := t.TempDir()
	env := append(os.Environ(), "WINEPREFIX="+prefix, "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=d")
	// The output goes to a file, not a pipe: Wine's background processes
	// (services.exe, winedevice.exe) inherit it and outlive the command.
	outFile := filepath.Join(t.TempDir(), "out")
	wine := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		f, err := os.Create(outFile)
		if err != nil {
			return "", err
		}
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, f, f
		err = cmd.Run()
		f.Close()
		out, _ := os.ReadFile(outFile)
		return strings.ReplaceAll(string(out), "\r", ""), err
	}
	mustWine := func(args ...string) string {
		t.Helper()
		out, err := wine(args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	// Create the prefix and let that session end (wineserver -w waits): the
	// services.exe that started with the new prefix failed sc.exe create and
	// delete. Then keep this prefix's wineserver (-p) running until the test
	// ends.
	t.Cleanup(func() { _, _ = wine("wineserver", "-k") })
	mustWine("wineboot", "-i")
	mustWine("wineserver", "-w")
	mustWine("wineserver", "-p")
	service := func() map[string]string { // the service's registry values; nil: no key
		out, err := wine("wine", "reg", "query", `HKLM\SYSTEM\CurrentControlSet\Services\ehrbridge`)
		if err != nil {
			return nil
		}
		vals := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			if f := strings.SplitN(strings.TrimSpace(l), "    ", 3); len(f) == 3 && strings.HasPrefix(f[1], "REG_") {
				vals[f[0]] = f[2]
			}
		}
		return vals
	}
	exe := filepath.Join(prefix, "drive_c/Program Files/ehrbridge/ehrbridge.exe")

	mustWine("wine", "msiexec", "/i", msi, "/qn")
	svc := service()
	want := map[string]string{
		"ImagePath":    `"C:\Program Files\ehrbridge\ehrbridge.exe" run --config "C:\ProgramData\ehrbridge\ehrbridge.yaml"`,
		"ObjectName":   `NT SERVICE\ehrbridge`,
		"Start":        "0x2",  // SERVICE_AUTO_START
		"Type":         "0x10", // SERVICE_WIN32_OWN_PROCESS
		"ErrorControl": "0x1",  // SERVICE_ERROR_NORMAL
		"DisplayName":  "ehrbridge (ehrbridge)",
		"Description":  "ehrbridge: EHR events into the CRM, coordinators' notes back into the EHR",
	}
	for k, v := range want {
		if svc[k] != v {
			t.Errorf("installed service: %s = %q, want %q", k, svc[k], v)
		}
	}
	if _, err := os.Stat(exe); err != nil {
		t.Errorf("ehrbridge.exe not installed: %v", err)
	}
	mustContain(t, "sc query", mustWine("wine", "sc.exe", "query", "ehrbridge"), "SERVICE_NAME: ehrbridge", "STOPPED")

	mustWine("wine", "msiexec", "/x", msi, "/qn")
	if svc := service(); svc != nil {
		t.Errorf("the service is still registered after removal: %v", svc)
	}
	if _, err := os.Stat(exe); err == nil {
		t.Error("ehrbridge.exe is still there after removal")
	}

	// A service ehrbridge from the .zip: the .msi refuses and leaves it
	// alone.
	mustWine("wine", "sc.exe", "create", "ehrbridge", "binPath=", `C:\other\ehrbridge.exe`)
	if out, err := wine("wine", "msiexec", "/i", msi, "/qn"); err == nil {
		t.Errorf("the .msi installed over a service ehrbridge it did not install\n%s", out)
	}
	if got := service()["ImagePath"]; got != `C:\other\ehrbridge.exe` {
		t.Errorf("the refused installation changed the existing service's ImagePath to %q", got)
	}
	if _, err := os.Stat(exe); err == nil {
		t.Error("the refused installation left ehrbridge.exe in Program Files")
	}
}

package logadmin

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Audit lines also go to the systemd journal over its native datagram
// protocol, with fields a SIEM forwarder can select on.
func TestAuditToJournal(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the journal is Linux's; on Windows audit lines go to the Event Log (TestAuditToEventLog)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "journal.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := NewAudit(dir)
	a.System = &Journal{Path: sock}
	c := Caller{Name: "nobody", UID: "65534", Via: "socket", Perm: PermView}
	if err := a.Call(c, "reveal", "record 7", "refused"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	_ = l.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := l.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	for _, want := range []string{"SYSLOG_IDENTIFIER=ehrbridge-audit\n", "PRIORITY=5\n", "SYSLOG_FACILITY=10\n", "EHRBRIDGE_AUDIT_USER=nobody\n",
		"EHRBRIDGE_AUDIT_UID=65534\n", "EHRBRIDGE_AUDIT_ACTION=reveal\n", "EHRBRIDGE_AUDIT_OBJECT=record 7\n",
		"EHRBRIDGE_AUDIT_OUTCOME=refused\n", `MESSAGE=ehrbridge audit: {"time":`} {
		if !strings.Contains(got, want) {
			t.Errorf("journal datagram lacks %q:\n%s", want, got)
		}
	}
	// The file has the line too; a journal that went away is counted,
	// not fatal.
	l.Close()
	os.Remove(sock)
	if err := a.Call(c, "stats", "", "allowed"); err != nil {
		t.Fatalf("an audit line failed for want of a journal: %v", err)
	}
	if a.SystemFailures != 1 {
		t.Errorf("system log failures = %d, want 1", a.SystemFailures)
	}
	if evs := auditLines(t, dir); len(evs) != 2 || evs[0].User != "nobody" || evs[0].UID != "65534" || evs[0].Object != "record 7" {
		t.Errorf("audit file: %+v", evs)
	}
}

// The audit file is appended to, never rewritten, and kept mode 0600
// even when it was made readable by others.
func TestAuditFileAppendOnly0600(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, AuditFileName)
	old := `{"time":"2026-01-01T00:00:00Z","action":"reveal","object":"record 1","os_user":"root","via":"cli"}` + "\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	a := NewAudit(dir)
	a.System = nil
	if err := a.Record("backup", "checkpoint log", "cli", ""); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), old) || strings.Count(string(b), "\n") != 2 || !strings.Contains(string(b), `"action":"backup"`) {
		t.Errorf("audit file:\n%s", b)
	}
	// On Windows the data directory's ACL, set by the installer, guards
	// the file (TestWindowsInstallerRemovesInheritedPermissions); Go's mode bits mean nothing there.
	if fi, _ := os.Stat(path); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode %v, want 0600", fi.Mode().Perm())
	}
}

//go:build linux

package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/checkpointtest"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// A reveal by a second local user is audited under that user's name: the
// `ehrbridge log` CLI run as uid 65534 (nobody, given the auditor role)
// reaches the running daemon over its admin socket and the audit line
// names nobody; a user without a role (uid 65533) is refused, audited.
func TestLogRevealBySecondLocalUserIsAudited(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the CLI as another uid")
	}
	dataDir := checkpointtest.Seed(t, nil)
	top := t.TempDir()
	for _, d := range []string{filepath.Dir(top), top} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(ehrbridgeBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(top, "ehrbridge")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	adminAddr := freeAddr(t)
	cfg := filepath.Join(top, "ehrbridge.yaml")
	yaml := "data_dir: " + dataDir + "\nadmin:\n  listen: " + adminAddr + "\n  socket: " + filepath.Join(top, "admin.sock") +
		"\n  socket_group: nogroup\n  roles:\n    - {user: nobody, role: auditor}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, bin, cfg, adminAddr, []string{"PATH=" + os.Getenv("PATH")})
	defer d.stop(10e9)

	cli := func(uid uint32, args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: 65534, Groups: []uint32{}}}
		return runCmd(t, cmd)
	}
	out, errOut, code := cli(65534, "log", "show", "1", "--reveal", "--config", cfg)
	if code != 0 || !strings.Contains(out, "ZZPATIENT1") {
		t.Fatalf("log show --reveal as nobody: exit %d\n%s%s\ndaemon:\n%s", code, out, errOut, d.logs)
	}
	_, errOut, code = cli(65533, "log", "show", "1", "--reveal", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "uid 65533 has no role for reveal") {
		t.Errorf("log show --reveal as uid 65533: exit %d, %s", code, errOut)
	}
	if out, _, code := cli(65533, "log", "stats", "--config", cfg); code != 1 || strings.Contains(out, "records:") {
		t.Errorf("log stats as uid 65533 (no role): exit %d", code)
	}

	lines, err := os.ReadFile(filepath.Join(dataDir, logadmin.AuditFileName))
	if err != nil {
		t.Fatal(err)
	}
	var byNobody, refused int
	for _, line := range strings.Split(strings.TrimSpace(string(lines)), "\n") {
		var ev logadmin.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Action == "reveal" && ev.Outcome == "allowed" {
			byNobody++
			if ev.User != "nobody" || ev.UID != "65534" || ev.Via != "socket" || ev.Object != "record 1" {
				t.Errorf("the reveal is not audited under nobody's name: %s", line)
			}
		}
		if ev.Outcome == "refused" && ev.UID == "65533" {
			refused++
		}
	}
	if byNobody != 1 || refused != 2 {
		t.Errorf("audit: %d reveals by nobody, %d refusals of uid 65533; want 1, 2:\n%s", byNobody, refused, lines)
	}
	if strings.Contains(string(lines), "ZZPATIENT") {
		t.Error("the audit log holds payload text")
	}
}

// Over TCP (no socket) the CLI calls as the account EHRBRIDGE_ADMIN_ACCOUNT
// names, with its role and nothing more; a wrong token is refused with a
// hint. The account, not the OS user behind the connection, is audited.
func TestLogOverTCPAsAccount(t *testing.T) {
	dataDir := checkpointtest.Seed(t, nil)
	bin := ehrbridgeBinary(t)
	adminAddr := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "ehrbridge.yaml")
	yaml := "data_dir: " + dataDir + "\nadmin:\n  listen: " + adminAddr + "\n  socket: \"off\"\n  accounts:\n" +
		"    - {name: jsmith, role: operator, token_env: JSMITH_TOKEN}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "jsmith-token-0123456789"
	d := startDaemon(t, bin, cfg, adminAddr, []string{"PATH=" + os.Getenv("PATH"), "JSMITH_TOKEN=" + token})
	defer d.stop(10e9)
	cli := func(secret string, args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "JSMITH_TOKEN=" + token, "EHRBRIDGE_ADMIN_ACCOUNT=jsmith", "EHRBRIDGE_ADMIN_TOKEN=" + secret}
		return runCmd(t, cmd)
	}
	if out, errOut, code := cli(token, "log", "retry", "1", "--config", cfg); code != 0 || !strings.Contains(out, "requeued record 1") {
		t.Errorf("retry as operator jsmith: exit %d %s%s", code, out, errOut)
	}
	if _, errOut, code := cli(token, "log", "show", "1", "--reveal", "--config", cfg); code != 1 || !strings.Contains(errOut, "jsmith has no role for reveal") {
		t.Errorf("reveal as operator jsmith: exit %d %s", code, errOut)
	}
	if _, errOut, code := cli("wrong-token-0123456789", "log", "stats", "--config", cfg); code != 1 || !strings.Contains(errOut, "EHRBRIDGE_ADMIN_ACCOUNT") {
		t.Errorf("a wrong token: exit %d %s", code, errOut)
	}
	lines, _ := os.ReadFile(filepath.Join(dataDir, logadmin.AuditFileName))
	if !strings.Contains(string(lines), `"action":"retry","object":"record 1","outcome":"allowed","user":"jsmith"`) ||
		!strings.Contains(string(lines), `"action":"reveal","object":"record 1","outcome":"refused","user":"jsmith"`) ||
		strings.Contains(string(lines), token) {
		t.Errorf("audit:\n%s", lines)
	}
}

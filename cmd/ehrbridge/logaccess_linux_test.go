//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

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
	dataDir := seedLog(t, nil)
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
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), code
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

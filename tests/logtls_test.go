package tests

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/checkpointtest"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
	"github.com/ehrbridge/ehrbridge/internal/testcerts"
)

// The CLI over https: with admin.tls in the config it speaks https to the
// daemon, verified with EHRBRIDGE_ADMIN_CA, as the account it names; with
// EHRBRIDGE_ADMIN_URL alone (a remote tool, no config) likewise; without
// the CA the server is not trusted; http:// to the TLS port is refused.
func TestLogOverTLSAsAccount(t *testing.T) {
	dataDir := checkpointtest.Seed(t, nil)
	bin := ehrbridgeBinary(t)
	certs := testcerts.New(t)
	adminAddr := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "ehrbridge.yaml")
	yaml := "data_dir: " + dataDir + "\nadmin:\n  listen: " + adminAddr + "\n  socket: \"off\"\n  tls:\n    cert_file: " + certs.ServerCert +
		"\n    key_file: " + certs.ServerKey + "\n  accounts:\n    - {name: auditor1, role: auditor, token_env: AUDITOR_TOKEN}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "auditor-token-0123456789"
	d := &runningDaemon{cmd: exec.Command(bin, "run", "--config", cfg), logs: &syncbuf.Buffer{}, exited: make(chan struct{})}
	d.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "AUDITOR_TOKEN=" + token}
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	defer d.stop(10 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: certs.ClientConfig(false)}}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if resp, err := hc.Get("https://" + adminAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-d.exited:
			t.Fatalf("daemon exited during start\n%s", d.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready over https within 20s\n%s", d.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}

	cli := func(env []string, args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "AUDITOR_TOKEN=" + token, "EHRBRIDGE_ADMIN_ACCOUNT=auditor1", "EHRBRIDGE_ADMIN_TOKEN=" + token}, env...)
		return runCmd(t, cmd)
	}
	ca := "EHRBRIDGE_ADMIN_CA=" + certs.CAFile
	if out, errOut, code := cli([]string{ca}, "log", "show", "1", "--reveal", "--config", cfg); code != 0 || !strings.Contains(out, "ZZPATIENT1") {
		t.Errorf("reveal over https with --config: exit %d %s%s", code, out, errOut)
	}
	if out, errOut, code := cli([]string{ca, "EHRBRIDGE_ADMIN_URL=https://" + adminAddr}, "log", "stats"); code != 0 || !strings.Contains(out, "records") {
		t.Errorf("stats over https with EHRBRIDGE_ADMIN_URL only: exit %d %s%s", code, out, errOut)
	}
	backup := filepath.Join(t.TempDir(), "copy.db")
	if out, errOut, code := cli([]string{ca, "EHRBRIDGE_ADMIN_URL=https://" + adminAddr}, "log", "backup", backup); code != 0 || !strings.Contains(out, "from the running daemon") {
		t.Errorf("backup over https with EHRBRIDGE_ADMIN_URL only: exit %d %s%s", code, out, errOut)
	}
	if _, errOut, code := cli(nil, "log", "stats", "--config", cfg); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Errorf("without EHRBRIDGE_ADMIN_CA the test CA is not trusted: exit %d %s", code, errOut)
	}
	if out, errOut, code := cli([]string{"EHRBRIDGE_ADMIN_URL=http://" + adminAddr}, "log", "show", "1", "--reveal"); code != 1 || strings.Contains(out, "ZZPATIENT") {
		t.Errorf("plain http to the TLS endpoint: exit %d %s%s", code, out, errOut)
	}
	if _, errOut, code := cli([]string{ca, "EHRBRIDGE_ADMIN_URL=http://" + adminAddr}, "log", "stats"); code != 1 || !strings.Contains(errOut, "EHRBRIDGE_ADMIN_CA") {
		t.Errorf("a CA with an http:// URL is refused, not ignored: exit %d %s", code, errOut)
	}
	lines, _ := os.ReadFile(filepath.Join(dataDir, logadmin.AuditFileName))
	if !strings.Contains(string(lines), `"action":"reveal","object":"record 1","outcome":"allowed","user":"auditor1"`) || strings.Contains(string(lines), token) {
		t.Errorf("audit:\n%s", lines)
	}
}

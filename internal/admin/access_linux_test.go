//go:build linux

package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/daemon"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// helperEnv makes the test binary an admin client (TestHelperAdminClient).
const helperEnv = "EHRBRIDGE_TEST_ADMIN_CLIENT"

// TestHelperAdminClient is not a test: run as another user by
// asOtherUser, it makes requests, each over the socket ("unix:PATH
// URLPATH") or TCP ("tcp:ADDR URLPATH"), one per line of its
// environment variable, and prints a JSON line per answer.
func TestHelperAdminClient(t *testing.T) {
	specs := os.Getenv(helperEnv)
	if specs == "" {
		t.Skip("helper process only")
	}
	enc := json.NewEncoder(os.Stdout)
	for _, spec := range strings.Split(specs, "\n") {
		target, path, _ := strings.Cut(spec, " ")
		network, addr, _ := strings.Cut(target, ":")
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}}
		ans := answer{}
		resp, err := hc.Get("http://ehrbridge" + path)
		if err != nil {
			ans.Body = "ERROR " + err.Error()
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ans.Status, ans.Body = resp.StatusCode, string(b)
		}
		_ = enc.Encode(ans)
	}
	os.Exit(0)
}

type answer struct {
	Status int
	Body   string
}

// asOtherUser runs the test binary as uid:gid (no user is created: 65534
// is nobody) to make the requests specs name; it returns their answers.
func asOtherUser(t *testing.T, bin string, uid, gid uint32, specs ...string) []answer {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^TestHelperAdminClient$")
	cmd.Env = []string{helperEnv + "=" + strings.Join(specs, "\n")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client as uid %d: %v\n%s", uid, err, out)
	}
	var answers []answer
	dec := json.NewDecoder(bytes.NewReader(out))
	for range specs {
		var a answer
		if err := dec.Decode(&a); err != nil {
			t.Fatalf("client as uid %d: %v\n%s", uid, err, out)
		}
		answers = append(answers, a)
	}
	return answers
}

// A reveal by a second local user is audited under that user's name: the
// daemon knows callers on its admin socket (SO_PEERCRED) and on loopback
// TCP from the kernel, gives them the roles admin.roles names, refuses
// (and audits) the rest, and never lets an anonymous caller read /status.
func TestAdminSocketNamesTheLocalUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	// A world-traversable place for the socket and the client binary.
	top := t.TempDir()
	for _, d := range []string{filepath.Dir(top), top} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(top, "client.test")
	if b, err := os.ReadFile(self); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatalf("copying the test binary: %v", err)
	}
	dataDir := filepath.Join(top, "data")
	seedRecord(t, dataDir)
	sock := filepath.Join(top, "admin.sock")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := l.Addr().String()
	l.Close()
	cfg, err := config.Parse(filepath.Join(top, "t.yaml"), []byte("data_dir: "+dataDir+"\nadmin:\n  listen: "+adminAddr+
		"\n  socket: "+sock+"\n  socket_group: nogroup\n  roles:\n    - user: nobody\n      role: auditor\n"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != 65534 {
		t.Fatalf("socket: %v %v", fi, err)
	}

	// nobody (uid 65534, role auditor) reveals record 1 over the socket;
	// its role holds over loopback TCP too.
	ans := asOtherUser(t, bin, 65534, 65534, "unix:"+sock+" /api/v1/log/records/1?reveal=1", "tcp:"+adminAddr+" /status")
	if ans[0].Status != 200 || !strings.Contains(ans[0].Body, "ZZSOCKETPATIENT") {
		t.Fatalf("reveal by nobody over the socket: %+v", ans[0])
	}
	if ans[1].Status != 200 {
		t.Errorf("/status for nobody (auditor) over loopback: %+v", ans[1])
	}
	// uid 65533 (no user, no role; group nogroup lets it connect) is
	// refused, over the socket and over loopback TCP alike; /healthz is
	// open.
	refusedSpecs := []string{"unix:" + sock + " /api/v1/log/records/1?reveal=1", "tcp:" + adminAddr + " /api/v1/log/records/1?reveal=1",
		"tcp:" + adminAddr + " /status", "unix:" + sock + " /"}
	ans = asOtherUser(t, bin, 65533, 65534, append(refusedSpecs, "tcp:"+adminAddr+" /healthz")...)
	for i, spec := range refusedSpecs {
		if ans[i].Status != 403 || strings.Contains(ans[i].Body, "ZZSOCKETPATIENT") {
			t.Errorf("uid 65533 %s: %+v", spec, ans[i])
		}
	}
	if ans[4].Status != 200 {
		t.Errorf("/healthz for uid 65533: %+v", ans[4])
	}

	b, err := os.ReadFile(filepath.Join(dataDir, logadmin.AuditFileName))
	if err != nil {
		t.Fatal(err)
	}
	var reveal, refusals int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev logadmin.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		switch {
		case ev.Action == "reveal" && ev.Outcome == "allowed":
			reveal++
			if ev.User != "nobody" || ev.UID != "65534" || ev.Via != "socket" || ev.Object != "record 1" {
				t.Errorf("the reveal's audit line does not name nobody: %s", line)
			}
		case ev.Outcome == "refused":
			refusals++
			if ev.User != "uid 65533" || ev.UID != "65533" {
				t.Errorf("a refusal's audit line: %s", line)
			}
		}
	}
	if reveal != 1 || refusals != 4 {
		t.Errorf("%d reveals, %d refusals audited, want 1 and 4:\n%s", reveal, refusals, b)
	}
	if strings.Contains(string(b), "ZZSOCKETPATIENT") || strings.Contains(logs.String(), "ZZSOCKETPATIENT") {
		t.Error("a payload reached the audit or daemon log")
	}
}

// With public_counts a caller without a role reads counts on /status and
// / (no record list, no addresses), /metrics, and nothing of the log API;
// a named account (token by reference) over TCP gets its role.
func TestAdminPublicCountsAndAccounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	top := t.TempDir()
	for _, d := range []string{filepath.Dir(top), top} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, _ := os.Executable()
	bin := filepath.Join(top, "client.test")
	if b, err := os.ReadFile(self); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatalf("copying the test binary: %v", err)
	}
	dataDir := filepath.Join(top, "data")
	seedRecord(t, dataDir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := l.Addr().String()
	l.Close()
	t.Setenv("TEST_VIEWER_TOKEN", "viewer-token-0123456789")
	cfg, err := config.Parse(filepath.Join(top, "t.yaml"), []byte("data_dir: "+dataDir+"\nadmin:\n  listen: "+adminAddr+
		"\n  socket: \"off\"\n  public_counts: true\n  accounts:\n    - name: monitor\n      role: viewer\n      token_env: TEST_VIEWER_TOKEN\n"), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	if _, err := os.Stat(filepath.Join(dataDir, config.AdminSocketName)); err == nil {
		t.Error(`socket: "off" still made the socket`)
	}
	ans := asOtherUser(t, bin, 65533, 65534, "tcp:"+adminAddr+" /status", "tcp:"+adminAddr+" /", "tcp:"+adminAddr+" /metrics", "tcp:"+adminAddr+" /api/v1/log/stats")
	if a := ans[0]; a.Status != 200 || !strings.Contains(a.Body, `"counts_only": true`) || !strings.Contains(a.Body, `"received": 1`) || strings.Contains(a.Body, adminAddr) {
		t.Errorf("/status counts only: %+v", a)
	}
	if a := ans[1]; a.Status != 200 || !strings.Contains(a.Body, "received 1") || strings.Contains(a.Body, "Newest records") {
		t.Errorf("/ counts only: %+v", a)
	}
	if a := ans[2]; a.Status != 200 || !strings.Contains(a.Body, `ehrbridge_records{state="received"} 1`) {
		t.Errorf("/metrics for a monitoring agent: %+v", a)
	}
	if a := ans[3]; a.Status != 403 {
		t.Errorf("log API without a role: %+v", a)
	}
	get := func(path, user, pass string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+path, nil)
		req.SetBasicAuth(user, pass)
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := get("/status", "monitor", "viewer-token-0123456789"); status != 200 || !strings.Contains(body, `"sources"`) {
		t.Errorf("/status for the monitor account: %d %s", status, body)
	}
	if status, _ := get("/api/v1/log/records/1?reveal=1", "monitor", "viewer-token-0123456789"); status != 403 {
		t.Errorf("reveal by a viewer account: %d", status)
	}
	// Credentials are checked even from root's loopback: a wrong token is
	// not saved by the OS identity behind it.
	if status, _ := get("/status", "monitor", "wrong"); status != 401 {
		t.Errorf("wrong token from root's loopback: %d", status)
	}
}

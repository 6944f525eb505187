package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Microsoft/go-winio"

	"github.com/ehrbridge/ehrbridge/internal/admin"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/daemon"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// On Windows the admin API is served on a named pipe whose caller is named
// by its token: the CLI's client (identification level, the server's
// account checked) reveals a record as this test's own user, and the audit
// line names that user (DOMAIN\name) and SID, via "pipe"; a client at the
// anonymous impersonation level names no one and is refused, audited; a
// second daemon cannot take a pipe name that is served. make test runs this
// under Wine (make test-windows); on a Windows host, go test runs it as is.
func TestAdminPipeNamesTheCaller(t *testing.T) {
	if admin.UnderWine {
		// go-winio keeps the name with a first pipe instance opened for
		// SYNCHRONIZE only, which Windows' pipe file system holds
		// disconnected; Wine 8 connects clients to it, never accepted.
		// TestPipeClientNamesTheCaller runs the token read under Wine.
		t.Skip("Wine 8 connects clients to go-winio's reserved pipe instance")
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	seedRecord(t, dataDir)
	pipe := fmt.Sprintf(`\\.\pipe\ehrbridge-test-%d-%d`, os.Getpid(), time.Now().UnixNano())
	cfgText := "data_dir: " + strings.ReplaceAll(dataDir, `\`, `/`) + "\nadmin:\n  listen: 127.0.0.1:0\n  socket: '" + pipe + "'\n"
	cfg, err := config.Parse(filepath.Join(dataDir, "t.yaml"), []byte(cfgText), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())

	// The CLI's client over the pipe: a reveal, allowed (the test runs as
	// the daemon's own account, which holds every role).
	cli := &logadmin.Client{BaseURL: "http://ehrbridge", Socket: pipe}
	rv, err := cli.Show(1, true)
	if err != nil {
		t.Fatalf("reveal over the pipe: %v\n%s", err, logs)
	}
	if !strings.Contains(rv.Payload, "ZZSOCKETPATIENT") {
		t.Errorf("revealed payload lacks its marker: %q", rv.Payload)
	}

	// A client at the anonymous level (go-winio's default) names no one.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return winio.DialPipeContext(ctx, pipe)
	}}}
	resp, err := hc.Get("http://ehrbridge/api/v1/log/records/1?reveal=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "ZZSOCKETPATIENT") {
		t.Errorf("anonymous-level reveal: %d %s", resp.StatusCode, body)
	}

	// A second daemon on the same pipe name does not start.
	dir2 := filepath.Join(t.TempDir(), "data2")
	cfg2, err := config.Parse(filepath.Join(dir2, "t.yaml"), []byte(strings.Replace(cfgText, strings.ReplaceAll(dataDir, `\`, `/`), strings.ReplaceAll(dir2, `\`, `/`), 1)), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if d2, err := daemon.Start(cfg2, slog.New(slog.DiscardHandler)); err == nil {
		d2.Shutdown(context.Background())
		t.Error("a second daemon served the admin pipe already served")
	}

	me, mySID := admin.CurrentAccount(t)
	b, err := os.ReadFile(filepath.Join(dataDir, logadmin.AuditFileName))
	if err != nil {
		t.Fatal(err)
	}
	var reveals, anonymous int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev logadmin.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if ev.Action != "reveal" {
			continue
		}
		switch ev.Outcome {
		case "allowed":
			reveals++
			if !strings.EqualFold(ev.User, me) || ev.UID != mySID || ev.Via != "pipe" || ev.Object != "record 1" {
				t.Errorf("the reveal's audit line does not name %s (%s) via the pipe: %s", me, mySID, line)
			}
		case "refused":
			anonymous++
			if ev.UID == mySID {
				t.Errorf("the anonymous-level call was audited as %s: %s", me, line)
			}
		}
	}
	if reveals != 1 || anonymous != 1 {
		t.Errorf("%d allowed and %d refused reveals audited, want 1 and 1:\n%s", reveals, anonymous, b)
	}
	if strings.Contains(string(b), "ZZSOCKETPATIENT") || strings.Contains(logs.String(), "ZZSOCKETPATIENT") {
		t.Error("a payload reached the audit or daemon log")
	}
}

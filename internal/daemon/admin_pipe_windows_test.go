package daemon

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
	"golang.org/x/sys/windows"

	"github.com/ehrbridge/ehrbridge/internal/config"
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
	if underWine {
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
	d, err := Start(cfg, slog.New(slog.NewTextHandler(logs, nil)))
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
	if d2, err := Start(cfg2, slog.New(slog.DiscardHandler)); err == nil {
		d2.Shutdown(context.Background())
		t.Error("a second daemon served the admin pipe already served")
	}

	me, mySID := currentAccount(t)
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

// underWine reports whether the test runs under Wine (make test-windows),
// which lacks parts of Windows' named pipe file system and event log: its
// ntdll exports wine_get_version.
var underWine = windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil

// The daemon names a pipe caller from the client's token
// (ImpersonateNamedPipeClient on a thread of its own, OpenThreadToken,
// RevertToSelf): a client at the identification level, as the CLI dials,
// is this test's own account with its groups; the server thread is itself
// again afterwards. A client at the anonymous level names no one.
func TestPipeClientNamesTheCaller(t *testing.T) {
	me, mySID := currentAccount(t)
	for _, level := range []winio.PipeImpLevel{winio.PipeImpLevelIdentification, winio.PipeImpLevelAnonymous} {
		name := fmt.Sprintf(`\\.\pipe\ehrbridge-peer-%d-%d`, os.Getpid(), time.Now().UnixNano())
		n, err := windows.UTF16PtrFromString(name)
		if err != nil {
			t.Fatal(err)
		}
		h, err := windows.CreateNamedPipe(n, windows.PIPE_ACCESS_DUPLEX,
			windows.PIPE_TYPE_BYTE|windows.PIPE_READMODE_BYTE|windows.PIPE_WAIT|windows.PIPE_REJECT_REMOTE_CLIENTS, 1, 4096, 4096, 0, nil)
		if err != nil {
			t.Fatalf("CreateNamedPipe: %v", err)
		}
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := winio.DialPipeAccessImpLevel(ctx, name, windows.GENERIC_READ|windows.GENERIC_WRITE, level)
			if err == nil {
				_, err = c.Write([]byte("GET"))
				defer c.Close()
				time.Sleep(200 * time.Millisecond)
			}
			done <- err
		}()
		if err := windows.ConnectNamedPipe(h, nil); err != nil && err != windows.ERROR_PIPE_CONNECTED {
			t.Fatalf("ConnectNamedPipe: %v", err)
		}
		buf := make([]byte, 3) // a caller is named once it has written
		var got uint32
		if err := windows.ReadFile(h, buf, &got, nil); err != nil {
			t.Fatalf("ReadFile: %v", err)
		}
		acc, err := pipeClient(h)
		if err := <-done; err != nil {
			t.Fatalf("client at level %d: %v", level, err)
		}
		windows.CloseHandle(h)
		if level == winio.PipeImpLevelAnonymous {
			if err == nil && acc.SID == mySID && !underWine {
				t.Errorf("an anonymous-level client was named %s", acc.Name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("identification-level client: %v", err)
		}
		if !strings.EqualFold(acc.Name, me) || acc.SID != mySID || len(acc.Groups) == 0 {
			t.Errorf("caller %+v, want %s (%s) with its groups", acc, me, mySID)
		}
		if self, _ := currentAccount(t); self != me {
			t.Errorf("after naming the caller the test runs as %s", self)
		}
	}
}

// currentAccount is this process's DOMAIN\name and SID.
func currentAccount(t *testing.T) (string, string) {
	t.Helper()
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	name, domain, _, err := tu.User.Sid.LookupAccount("")
	if err != nil {
		t.Fatal(err)
	}
	return domain + `\` + name, tu.User.Sid.String()
}

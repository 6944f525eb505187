package admin

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

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

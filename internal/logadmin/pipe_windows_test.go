package logadmin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows"
)

// underWine reports whether the test runs under Wine (make test-windows),
// which lacks parts of Windows' named pipe file system and event log: its
// ntdll exports wine_get_version.
var underWine = windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil

// rawPipeServer creates one listening instance of pipe name with the
// plain Win32 API and accepts one client in the background, reading
// nothing; it is closed by the test.
func rawPipeServer(t *testing.T, name string) {
	t.Helper()
	n, err := windows.UTF16PtrFromString(name)
	if err != nil {
		t.Fatal(err)
	}
	h, err := windows.CreateNamedPipe(n, windows.PIPE_ACCESS_DUPLEX,
		windows.PIPE_TYPE_BYTE|windows.PIPE_READMODE_BYTE|windows.PIPE_WAIT|windows.PIPE_REJECT_REMOTE_CLIENTS, 1, 4096, 4096, 0, nil)
	if err != nil {
		t.Fatalf("CreateNamedPipe: %v", err)
	}
	t.Cleanup(func() { windows.CloseHandle(h) })
	go func() { _ = windows.ConnectNamedPipe(h, nil) }()
}

// The CLI's pipe dial finds the serving process and its account
// (GetNamedPipeServerProcessId, OpenProcessToken) and talks to a server
// running as the caller itself; which accounts it trusts is
// TestPipeServerTrusted.
func TestDialLocalChecksTheServer(t *testing.T) {
	name := fmt.Sprintf(`\\.\pipe\ehrbridge-dial-%d-%d`, os.Getpid(), time.Now().UnixNano())
	rawPipeServer(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialLocal(ctx, name)
	if err != nil {
		t.Fatalf("dialLocal to a pipe this process serves: %v", err)
	}
	c.Close()
	acc, err := processAccount(uint32(os.Getpid()))
	if err != nil || acc.SID == "" || len(acc.Groups) == 0 {
		t.Fatalf("this process's account: %+v %v", acc, err)
	}
	if acc.Name == "" {
		t.Errorf("no name found for %s", acc.SID)
	}
}

// Audit lines go to the Windows Event Log (Application, source
// ehrbridge-audit): a refusal as a warning, event id 2. On a Windows host
// the event is read back with wevtutil; Wine accepts events and keeps
// none, so there the test checks only that the Event Log took the line.
func TestAuditToEventLog(t *testing.T) {
	marker := fmt.Sprintf("record %d", time.Now().UnixNano())
	a := NewAudit(t.TempDir())
	a.System = &EventLog{}
	if err := a.Call(Caller{Name: `HOSPITAL\alice`, UID: "S-1-5-21-1-2-3-1001", Via: "pipe"}, "reveal", marker, "refused"); err != nil {
		t.Fatal(err)
	}
	if a.SystemFailures != 0 {
		t.Fatalf("the Event Log refused %d audit lines", a.SystemFailures)
	}
	if underWine {
		return
	}
	out, err := exec.Command("wevtutil", "qe", "Application", "/q:*[System[Provider[@Name='"+EventLogSource+"'] and (EventID=2)]]", "/c:5", "/rd:true", "/f:text").CombinedOutput()
	if err != nil {
		t.Fatalf("wevtutil: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), marker) || !strings.Contains(string(out), `HOSPITAL\\alice`) {
		t.Errorf("the Event Log lacks the audit line for %s:\n%s", marker, out)
	}
}

//go:build windows

package admin

import (
	"fmt"
	"net"
	"runtime"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"

	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// listenAdminSocket listens on the admin named pipe at path
// (\\.\pipe\ehrbridge-admin by default), admitting SYSTEM, Administrators,
// the service's account and group (admin.socket_group: DOMAIN\name,
// BUILTIN\name or a SID) only (pipeSDDL). go-winio creates the first
// instance with FILE_CREATE: a pipe of that name already served by
// another process is an error, not shared. Remote clients are rejected.
func listenAdminSocket(path, group string) (net.Listener, error) {
	self, err := serviceSID()
	if err != nil {
		return nil, fmt.Errorf("admin pipe: the service's account: %w", err)
	}
	groupSID := ""
	if group != "" {
		sid, _, _, err := windows.LookupSID("", group)
		if err != nil {
			return nil, fmt.Errorf("admin pipe: socket_group %s: %w", group, err)
		}
		groupSID = sid.String()
	}
	l, err := winio.ListenPipe(path, &winio.PipeConfig{SecurityDescriptor: pipeSDDL(self, groupSID)})
	if err != nil {
		return nil, fmt.Errorf("admin pipe %s: %w", path, err)
	}
	return l, nil
}

// serviceSID is the SID of the account the daemon runs as (NT
// SERVICE\ehrbridge under the installed service).
func serviceSID() (string, error) {
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return "", err
	}
	return tu.User.Sid.String(), nil
}

// trustedSIDs hold every role: SYSTEM, elevated Administrators, the
// service's account.
func trustedSIDs() map[string]bool {
	self, err := serviceSID()
	if err != nil {
		self = sidSystem
	}
	return windowsTrusted(self)
}

// connPeer marks a pipe connection: its caller is read from the client's
// token per request (logadmin.Peer.Token), once the request has been
// read. TCP connections carry no OS identity on Windows.
func connPeer(c net.Conn) (logadmin.Peer, bool) {
	f, ok := c.(interface{ Fd() uintptr }) // go-winio's pipe connections
	if !ok {
		return logadmin.Peer{}, false
	}
	h := windows.Handle(f.Fd())
	return logadmin.Peer{Via: "pipe", Token: func() (*logadmin.OSAccount, error) { return pipeClient(h) }}, true
}

var procImpersonateNamedPipeClient = windows.NewLazySystemDLL("advapi32.dll").NewProc("ImpersonateNamedPipeClient")

// pipeClient reads the identity of the client that wrote the last message
// read from pipe h: ImpersonateNamedPipeClient on a thread of its own,
// OpenThreadToken (as the service, for the access check), RevertToSelf.
// The client's process id is not used: a process that exits leaves its
// id to the next one. A client that connected at the anonymous
// impersonation level names no one and gets an error here. Should
// RevertToSelf fail, the goroutine ends with its thread locked, so that
// the runtime ends the thread instead of running other code as the
// client.
func pipeClient(h windows.Handle) (*logadmin.OSAccount, error) {
	type result struct {
		acc *logadmin.OSAccount
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if r1, _, e := procImpersonateNamedPipeClient.Call(uintptr(h)); r1 == 0 {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("ImpersonateNamedPipeClient: %w", e)}
			return
		}
		var tok windows.Token
		err := windows.OpenThreadToken(windows.CurrentThread(), windows.TOKEN_QUERY, true, &tok)
		if rerr := windows.RevertToSelf(); rerr != nil {
			if err == nil {
				tok.Close()
			}
			ch <- result{nil, fmt.Errorf("RevertToSelf: %w", rerr)}
			return // still locked: the thread ends with the goroutine
		}
		runtime.UnlockOSThread()
		if err != nil {
			ch <- result{nil, fmt.Errorf("OpenThreadToken: %w", err)}
			return
		}
		defer tok.Close()
		acc, err := logadmin.TokenAccount(tok)
		ch <- result{acc, err}
	}()
	r := <-ch
	return r.acc, r.err
}

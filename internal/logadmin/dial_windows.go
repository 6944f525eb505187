//go:build windows

package logadmin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// dialLocal connects to the admin named pipe at path (\\.\pipe\...) at
// the identification impersonation level: the daemon reads the caller's
// token from the pipe (ImpersonateNamedPipeClient), which at go-winio's
// default, anonymous, names no one; identification lets the server query
// who the caller is and act as them in nothing. The pipe's server must
// run as an account pipeServerTrusted accepts (checkPipeServer): the CLI
// sends nothing to a process that took the name while the service was
// stopped.
func dialLocal(ctx context.Context, path string) (net.Conn, error) {
	const genericReadWrite = 0x80000000 | 0x40000000 // GENERIC_READ | GENERIC_WRITE
	c, err := winio.DialPipeAccessImpLevel(ctx, path, genericReadWrite, winio.PipeImpLevelIdentification)
	if err != nil {
		return nil, err
	}
	if err := checkPipeServer(c, path); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// checkPipeServer finds the process serving the pipe c is connected to
// (GetNamedPipeServerProcessId: the server end stays open while c is, so
// the id names the serving process) and refuses it unless its account is
// trusted (pipeServerTrusted).
func checkPipeServer(c net.Conn, path string) error {
	f, ok := c.(interface{ Fd() uintptr })
	if !ok {
		return errors.New("admin pipe: not a pipe connection")
	}
	var pid uint32
	if err := windows.GetNamedPipeServerProcessId(windows.Handle(f.Fd()), &pid); err != nil {
		return fmt.Errorf("admin pipe %s: its server's process: %w", path, err)
	}
	server, err := processAccount(pid)
	if err != nil {
		return fmt.Errorf("admin pipe %s: the account of its server (pid %d): %w", path, pid, err)
	}
	self, err := processAccount(uint32(os.Getpid()))
	if err != nil {
		return fmt.Errorf("admin pipe: this process's account: %w", err)
	}
	extra := ""
	if name := os.Getenv(PipeServerEnv); name != "" {
		sid, _, _, err := windows.LookupSID("", name)
		if err != nil {
			return fmt.Errorf("%s=%s: %w", PipeServerEnv, name, err)
		}
		extra = sid.String()
	}
	groups := make([]string, len(server.Groups))
	for i, g := range server.Groups {
		groups[i] = g.SID
	}
	if !pipeServerTrusted(server.SID, groups, self.SID, extra) {
		return fmt.Errorf("admin pipe %s is served by %s (pid %d), which is not a service account, an administrator or you: not talking to it (if the ehrbridge service runs as that account, set %s to it)",
			path, cmp.Or(server.Name, server.SID), pid, PipeServerEnv)
	}
	return nil
}

// processAccount is the account process pid runs as (TokenAccount).
func processAccount(pid uint32) (*OSAccount, error) {
	p, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return nil, fmt.Errorf("OpenProcess: %w", err)
	}
	defer windows.CloseHandle(p)
	var tok windows.Token
	if err := windows.OpenProcessToken(p, windows.TOKEN_QUERY, &tok); err != nil {
		return nil, fmt.Errorf("OpenProcessToken: %w", err)
	}
	defer tok.Close()
	return TokenAccount(tok)
}

// LocalAnswers reports whether a daemon answers on the admin pipe at path.
func LocalAnswers(path string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := dialLocal(ctx, path)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

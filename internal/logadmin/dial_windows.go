//go:build windows

package logadmin

import (
	"context"
	"net"
	"time"

	"github.com/Microsoft/go-winio"
)

// dialLocal connects to the admin named pipe at path (\\.\pipe\...) at
// the identification impersonation level: the daemon reads the caller's
// token from the pipe (ImpersonateNamedPipeClient), which at go-winio's
// default, anonymous, names no one; identification lets the server query
// who the caller is and act as them in nothing.
func dialLocal(ctx context.Context, path string) (net.Conn, error) {
	const genericReadWrite = 0x80000000 | 0x40000000 // GENERIC_READ | GENERIC_WRITE
	return winio.DialPipeAccessImpLevel(ctx, path, genericReadWrite, winio.PipeImpLevelIdentification)
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

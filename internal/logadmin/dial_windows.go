//go:build windows

package logadmin

import (
	"context"
	"net"

	"github.com/Microsoft/go-winio"
)

// dialLocal connects to the admin named pipe at path (\\.\pipe\...). The
// daemon names the caller from the pipe client's process token, whatever
// impersonation level is asked for here; identification is the least
// that lets a server see who the caller is, and grants no more.
func dialLocal(ctx context.Context, path string) (net.Conn, error) {
	return winio.DialPipeAccessImpLevel(ctx, path, uint32(0x80000000|0x40000000), winio.PipeImpLevelIdentification) // GENERIC_READ|GENERIC_WRITE
}

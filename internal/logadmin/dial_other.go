//go:build !windows

package logadmin

import (
	"context"
	"net"
)

// dialLocal connects to the admin socket at path.
func dialLocal(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

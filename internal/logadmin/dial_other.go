//go:build !windows

package logadmin

import (
	"context"
	"net"
	"os"
	"time"
)

// dialLocal connects to the admin socket at path.
func dialLocal(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

// LocalAnswers reports whether a daemon answers on the admin socket at
// path (a stale socket file does not).
func LocalAnswers(path string) bool {
	if fi, err := os.Stat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := dialLocal(ctx, path)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

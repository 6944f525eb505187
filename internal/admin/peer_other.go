//go:build !linux && !windows

package admin

import (
	"net"

	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// listenAdminSocket: the admin socket is served on Linux (a Unix socket)
// and Windows (a named pipe) only; elsewhere TCP callers use
// admin.accounts.
func listenAdminSocket(path, group string) (net.Listener, error) { return nil, errNoSocket }

// connPeer: the OS identity of callers is known on Linux and Windows only.
func connPeer(c net.Conn) (logadmin.Peer, bool) { return logadmin.Peer{}, false }

// trustedSIDs: Windows only.
func trustedSIDs() map[string]bool { return nil }

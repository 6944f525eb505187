//go:build !linux

package daemon

import (
	"net"

	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// listenAdminSocket: the admin socket is served on Linux only; elsewhere
// TCP callers use admin.accounts.
func listenAdminSocket(path, group string) (net.Listener, error) { return nil, errNoSocket }

// connPeer: the OS identity of callers is known on Linux only.
func connPeer(c net.Conn) (logadmin.Peer, bool) { return logadmin.Peer{}, false }

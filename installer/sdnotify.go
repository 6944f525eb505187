package installer

import (
	"net"
	"os"
	"strings"
)

// Notify sends a state to the service manager over $NOTIFY_SOCKET, as
// sd_notify(3) does ("READY=1", "STOPPING=1", "RELOADING=1",
// "STATUS=..."). Without the variable (not under systemd, or a unit that
// is not Type=notify) it does nothing and reports false.
func Notify(state string) (bool, error) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return false, nil
	}
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:] // an abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, err
	}
	return true, nil
}

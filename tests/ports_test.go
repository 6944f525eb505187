// Free ports for the daemons under test.

package tests

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// freeAddr returns a free port on 127.0.0.1 for a daemon under test. It
// is taken below the kernel's ephemeral range, and never twice in one test
// run: a daemon restarted on it (the crash tests kill and restart it
// dozens of times) must find it free again, and a port from the ephemeral
// range can meanwhile become the local end of some other test's outgoing
// connection ("address already in use" at the restart).
func freeAddr(t *testing.T) string {
	t.Helper()
	lo := ephemeralLow()
	freeMu.Lock()
	defer freeMu.Unlock()
	for range 200 {
		port := 10000 + rand.IntN(lo-10000)
		if freeUsed[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		freeUsed[port] = true
		return addr
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

var (
	freeMu   sync.Mutex
	freeUsed = map[int]bool{}
)

// ephemeralLow is the first port of the kernel's ephemeral range (Linux:
// /proc/sys/net/ipv4/ip_local_port_range; elsewhere the common 32768).
func ephemeralLow() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > 11000 {
				return lo
			}
		}
	}
	return 32768
}

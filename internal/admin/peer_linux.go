//go:build linux

package admin

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// listenAdminSocket listens on the admin socket at path: a stale socket
// file is replaced (the checkpoint log's lock already keeps a second
// daemon on this data directory from starting), the socket is made mode
// 0660 and given group when one is named. Access is decided per caller
// from SO_PEERCRED; the mode only keeps others from connecting at all.
func listenAdminSocket(path, group string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("admin socket %s: a file that is not a socket is in the way", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin socket: removing the stale one: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	fail := func(err error) (net.Listener, error) {
		l.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		return fail(err)
	}
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return fail(err)
		}
		gid, err := strconv.Atoi(g.Gid)
		if err != nil {
			return fail(err)
		}
		if err := os.Chown(path, -1, gid); err != nil {
			return fail(err)
		}
	}
	return l, nil
}

// connPeer is the OS identity of a connection's caller: SO_PEERCRED on
// the admin socket; for TCP from a loopback address, the owner of the
// client end as the kernel lists it in /proc/net/tcp (as identd does).
func connPeer(c net.Conn) (logadmin.Peer, bool) {
	switch c := c.(type) {
	case *net.UnixConn:
		raw, err := c.SyscallConn()
		if err != nil {
			return logadmin.Peer{}, false
		}
		var cred *syscall.Ucred
		cerr := raw.Control(func(fd uintptr) {
			cred, err = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
		})
		if cerr != nil || err != nil {
			return logadmin.Peer{}, false
		}
		return logadmin.Peer{UID: cred.Uid, Via: "socket"}, true
	case *net.TCPConn:
		remote, ok1 := c.RemoteAddr().(*net.TCPAddr)
		local, ok2 := c.LocalAddr().(*net.TCPAddr)
		if !ok1 || !ok2 || !remote.IP.IsLoopback() {
			return logadmin.Peer{}, false
		}
		uid, ok := loopbackOwner(remote.AddrPort(), local.AddrPort())
		return logadmin.Peer{UID: uid, Via: "loopback"}, ok
	}
	return logadmin.Peer{}, false
}

// loopbackOwner finds the uid owning the TCP socket whose local end is
// client and remote end server.
func loopbackOwner(client, server netip.AddrPort) (uint32, bool) {
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if uid, ok := procTCPOwner(file, client, server); ok {
			return uid, true
		}
	}
	return 0, false
}

func procTCPOwner(file string, client, server netip.AddrPort) (uint32, bool) {
	f, err := os.Open(file)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 {
			continue
		}
		l, ok1 := parseProcAddr(fields[1])
		r, ok2 := parseProcAddr(fields[2])
		if !ok1 || !ok2 || !sameAddrPort(l, client) || !sameAddrPort(r, server) {
			continue
		}
		uid, err := strconv.ParseUint(fields[7], 10, 32)
		if err != nil {
			return 0, false
		}
		return uint32(uid), true
	}
	return 0, false
}

func sameAddrPort(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap() == b.Addr().Unmap()
}

// parseProcAddr reads an address of /proc/net/tcp{,6}: hex 32-bit words
// in the host's byte order, a colon, the port in hex.
func parseProcAddr(s string) (netip.AddrPort, bool) {
	h, p, ok := strings.Cut(s, ":")
	if !ok || (len(h) != 8 && len(h) != 32) {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return netip.AddrPort{}, false
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr, uint16(port)), true
}

// trustedSIDs: Windows only (root and the daemon's uid are Trusted).
func trustedSIDs() map[string]bool { return nil }

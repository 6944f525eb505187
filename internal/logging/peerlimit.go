package logging

import (
	"log/slog"
	"net"
	"sync"
	"time"
)

// otherPeers is the address failures are counted under once PeerLimiter
// tracks MaxPeers addresses: a scan from many addresses costs one entry.
const otherPeers = "other"

// PeerLimiter logs a failure that a peer can repeat at will (a failed TLS
// handshake: a port scanner, a load balancer's health check, an EHR with
// the wrong certificate) at most once per interval per peer host, with the
// number of failures the line stands for. The first failure from a host is
// logged at once (failures=1); the ones after it within the interval are
// counted and logged in one line when the interval ends (failures=N), and
// so on while they go on. Safe for concurrent use; the zero value is not:
// set Log and Msg.
type PeerLimiter struct {
	// Log receives the lines at Warn level.
	Log *slog.Logger
	// Msg is the log message: a constant.
	Msg string
	// Every is the interval; 0 means a minute.
	Every time.Duration
	// MaxPeers bounds the hosts tracked at once; 0 means 4096.
	MaxPeers int

	mu    sync.Mutex
	peers map[string]*peerFailures
	timer *time.Timer
	now   func() time.Time // tests
}

type peerFailures struct {
	until   time.Time // end of the interval that began with the last line
	pending int       // failures since the last line
	lastErr error
}

// Fail records a failure from remote (host:port or host).
func (l *PeerLimiter) Fail(remote string, err error) {
	host := remote
	if h, _, e := net.SplitHostPort(remote); e == nil {
		host = h
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	if l.peers == nil {
		l.peers = map[string]*peerFailures{}
	}
	p := l.peers[host]
	if p == nil && len(l.peers) >= l.maxPeers() {
		host = otherPeers
		p = l.peers[host]
	}
	if p == nil || !now.Before(p.until) {
		n := 1
		if p != nil {
			n += p.pending
		}
		l.Log.Warn(l.Msg, "remote", host, "failures", n, "err", err)
		l.peers[host] = &peerFailures{until: now.Add(l.every())}
		l.arm(now)
		return
	}
	p.pending++
	p.lastErr = err
}

// Close logs the failures counted and not yet logged, and stops the timer.
func (l *PeerLimiter) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	for host, p := range l.peers {
		if p.pending > 0 {
			l.Log.Warn(l.Msg, "remote", host, "failures", p.pending, "err", p.lastErr, "interval", l.every())
		}
	}
	l.peers = nil
}

// flush ends the intervals that are over: a host with failures counted
// gets its line and a new interval; a quiet one is forgotten.
func (l *PeerLimiter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	now := l.clock()
	for host, p := range l.peers {
		if now.Before(p.until) {
			continue
		}
		if p.pending == 0 {
			delete(l.peers, host)
			continue
		}
		l.Log.Warn(l.Msg, "remote", host, "failures", p.pending, "err", p.lastErr, "interval", l.every())
		l.peers[host] = &peerFailures{until: now.Add(l.every())}
	}
	l.arm(now)
}

// arm sets the timer for the earliest interval end. Called with mu held.
func (l *PeerLimiter) arm(now time.Time) {
	if len(l.peers) == 0 {
		return
	}
	var next time.Time
	for _, p := range l.peers {
		if next.IsZero() || p.until.Before(next) {
			next = p.until
		}
	}
	d := max(next.Sub(now), 10*time.Millisecond)
	if l.timer != nil {
		l.timer.Reset(d)
		return
	}
	l.timer = time.AfterFunc(d, l.flush)
}

func (l *PeerLimiter) every() time.Duration {
	if l.Every > 0 {
		return l.Every
	}
	return time.Minute
}

func (l *PeerLimiter) maxPeers() int {
	if l.MaxPeers > 0 {
		return l.MaxPeers
	}
	return 4096
}

func (l *PeerLimiter) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

package mllp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
	"github.com/ehrbridge/ehrbridge/internal/logging"
)

// Request is one received frame.
type Request struct {
	// Payload is the frame's content, owned by the handler. For a frame
	// that was too large it holds only the frame's first line.
	Payload []byte
	// Err is nil for a complete frame and a *FrameTooLargeError for a frame
	// that was discarded.
	Err        error
	RemoteAddr net.Addr
	// TLS is the connection's TLS state, nil on plain TCP. With mutual TLS,
	// TLS.PeerCertificates identifies the sender.
	TLS      *tls.ConnectionState
	Received time.Time
}

// Handler answers frames. ServeMLLP returns the payload of the reply frame
// (an HL7 acknowledgment), or nil to send nothing and close the connection,
// which tells the sender to retransmit. Calls for one connection are
// sequential, in arrival order; different connections run concurrently.
type Handler interface {
	ServeMLLP(ctx context.Context, req *Request) []byte
}

// Reply is a handler's whole answer to one frame.
type Reply struct {
	// Frames are the payloads to send, in order, each in its own frame:
	// one in original-mode HL7, a commit acknowledgment and then an
	// application acknowledgment in enhanced mode, or none when the
	// sender asked for none.
	Frames [][]byte
	// Close closes the connection after Frames are written, which tells
	// a sender still waiting for an acknowledgment to retransmit.
	Close bool
}

// ReplyHandler is a Handler that answers a frame with any number of
// frames, or none while keeping the connection. Server calls
// ServeMLLPReply, not ServeMLLP, on a Handler that implements it.
type ReplyHandler interface {
	Handler
	ServeMLLPReply(ctx context.Context, req *Request) Reply
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) []byte

// ServeMLLP calls f.
func (f HandlerFunc) ServeMLLP(ctx context.Context, req *Request) []byte { return f(ctx, req) }

// Server accepts MLLP connections. Set the fields before calling Serve;
// zero values select the defaults noted.
type Server struct {
	Handler      Handler
	MaxFrameSize int           // default DefaultMaxFrameSize
	ReadTimeout  time.Duration // a started frame must complete within it; default 30s
	IdleTimeout  time.Duration // a connection without a frame for this long is closed; default 10m
	// FirstFrameTimeout closes a new connection that has not started a
	// frame within it (a socket opened and left silent); default 30s.
	FirstFrameTimeout time.Duration
	WriteTimeout      time.Duration // default 10s
	// MaxConnections bounds open connections, default 256. At the limit
	// the connection idle the longest (waiting for its next frame, not
	// inside a frame or a handler) is closed to admit the new one; only
	// when none is idle is the new one closed at once.
	MaxConnections int
	// MaxConnectionsPerAddress, when > 0, bounds the open connections from
	// one remote IP address the same way (its own longest idle goes first).
	MaxConnectionsPerAddress int
	TLSConfig                *tls.Config  // nil for plain TCP
	Logger                   *slog.Logger // default slog.Default()
	// HandshakeLogInterval is how often failed TLS handshakes from one
	// host are logged: the first at once, then at most one line per
	// interval with the number of failures (a scanner or a misconfigured
	// sender cannot flood the log). Default a minute.
	HandshakeLogInterval time.Duration

	handshakesOnce sync.Once
	handshakes     *logging.PeerLimiter

	mu       sync.Mutex
	listener net.Listener
	conns    map[*conn]struct{}
	closing  atomic.Bool
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
	stats    Stats
}

// Stats are counters since the server started.
type Stats struct {
	ConnectionsOpen     atomic.Int64
	ConnectionsTotal    atomic.Int64
	ConnectionsRefused  atomic.Int64
	Frames              atomic.Int64
	FramesTooLarge      atomic.Int64
	JunkBytes           atomic.Int64
	HandlerPanics       atomic.Int64
	ConnectionsTimedOut atomic.Int64
	// ConnectionsEvicted counts idle connections closed at the connection
	// limit to admit a new one.
	ConnectionsEvicted atomic.Int64
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("mllp: server closed")

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Listen binds addr (and wraps it in TLS when TLSConfig is set) without
// serving yet, so that a caller learns of a busy port before it reports
// readiness.
func (s *Server) Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mllp: listen on %s: %w", addr, err)
	}
	if s.TLSConfig != nil {
		l = tls.NewListener(l, s.TLSConfig)
	}
	return l, nil
}

// Serve accepts connections on l until Shutdown. It always returns a
// non-nil error: ErrServerClosed after Shutdown.
func (s *Server) Serve(l net.Listener) error {
	if s.Handler == nil {
		return errors.New("mllp: server has no handler")
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listener = l
	s.conns = map[*conn]struct{}{}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.Unlock()
	log := s.logger()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off, as
				// net/http does, instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				log.Warn("mllp accept failed; retrying", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("mllp: accept: %w", err)
		}
		delay = 0
		s.stats.ConnectionsTotal.Add(1)
		c := &conn{srv: s, nc: nc, ip: remoteIP(nc.RemoteAddr()), idle: true, idleSince: time.Now()}
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		if limit, why := s.admit(c); limit > 0 {
			s.mu.Unlock()
			s.stats.ConnectionsRefused.Add(1)
			log.Warn("mllp connection refused: "+why+" reached and no connection is idle", "remote", nc.RemoteAddr().String(), "limit", limit)
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.stats.ConnectionsOpen.Add(1)
		go c.serve()
	}
}

// admit makes room for c under the connection limits, closing the
// longest-idle connection (of c's address, for the per-address limit)
// when a limit is reached. It returns the limit and its name when no
// connection could be closed, 0 when c is admitted. s.mu is held.
func (s *Server) admit(c *conn) (int, string) {
	if max := s.MaxConnectionsPerAddress; max > 0 {
		n := 0
		for o := range s.conns {
			if o.ip == c.ip && !o.evicted {
				n++
			}
		}
		if n >= max && !s.evictIdlest(func(o *conn) bool { return o.ip == c.ip }) {
			return max, "max_connections_per_address"
		}
	}
	max := s.maxConns()
	n := 0
	for o := range s.conns {
		if !o.evicted {
			n++
		}
	}
	if n >= max && !s.evictIdlest(func(*conn) bool { return true }) {
		return max, "max_connections"
	}
	return 0, ""
}

// evictIdlest closes the connection among those match accepts that has
// waited longest for its next frame. A connection inside a frame or a
// handler is never closed. s.mu is held.
func (s *Server) evictIdlest(match func(*conn) bool) bool {
	var victim *conn
	var since time.Time
	for o := range s.conns {
		if o.evicted || !match(o) {
			continue
		}
		o.mu.Lock()
		idle, at := o.idle, o.idleSince
		o.mu.Unlock()
		if idle && (victim == nil || at.Before(since)) {
			victim, since = o, at
		}
	}
	if victim == nil {
		return false
	}
	victim.mu.Lock()
	if !victim.idle { // started a frame since: leave it alone
		victim.mu.Unlock()
		return false
	}
	victim.evicted = true
	_ = victim.nc.SetReadDeadline(time.Now())
	victim.mu.Unlock()
	s.stats.ConnectionsEvicted.Add(1)
	return true
}

// remoteIP is the host part of a remote address.
func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Addr returns the listening address, or nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return nil
	}
	return s.listener.Addr()
}

// Shutdown stops accepting connections, closes idle ones, and waits for
// connections inside a frame or a handler to send their reply and close.
// When ctx ends first, the remaining connections are closed and their
// handlers' contexts cancelled; Shutdown then returns ctx.Err(). A sender
// whose frame was cut off gets no acknowledgment and will retransmit.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	if s.listener != nil {
		s.listener.Close()
	}
	for c := range s.conns {
		c.interruptIfIdle()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	// Failures counted and not yet logged are logged now.
	defer s.handshakeLog().Close()
	select {
	case <-done:
		s.cancelAll()
		return nil
	case <-ctx.Done():
		s.cancelAll()
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

func (s *Server) cancelAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
}

// handshakeLog is the server's limiter of handshake failure lines.
func (s *Server) handshakeLog() *logging.PeerLimiter {
	s.handshakesOnce.Do(func() {
		s.handshakes = &logging.PeerLimiter{Log: s.logger(), Msg: "mllp TLS handshake failed", Every: s.HandshakeLogInterval}
	})
	return s.handshakes
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) maxConns() int {
	if s.MaxConnections > 0 {
		return s.MaxConnections
	}
	return 256
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

type conn struct {
	srv *Server
	nc  net.Conn
	ip  string // remote IP, for the per-address limit

	mu        sync.Mutex
	idle      bool      // waiting for the next frame
	idleSince time.Time // since when
	evicted   bool      // closed to admit a new connection (s.mu and mu held to set)
}

// interruptIfIdle unblocks a connection waiting for its next frame so that
// it notices the shutdown.
func (c *conn) interruptIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle {
		_ = c.nc.SetReadDeadline(time.Now())
	}
}

// setIdle records whether the connection waits for its next frame. It
// reports whether the connection should end instead: the server is
// closing, or the connection was closed to admit another.
func (c *conn) setIdle(idle bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if idle && !c.idle {
		c.idleSince = time.Now()
	}
	c.idle = idle
	return c.srv.closing.Load() || c.evicted
}

// frameStarted switches an idle connection to its read timeout when a
// frame starts. A start block inside a frame (the sender restarting it)
// does not: the frame's deadline stands, so a peer sending a start byte
// now and then cannot hold the connection past its read timeout.
func (c *conn) frameStarted(readTimeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle && !c.evicted {
		c.idle = false
		_ = c.nc.SetReadDeadline(time.Now().Add(readTimeout))
	}
}

func (c *conn) serve() {
	s := c.srv
	log := s.logger().With("remote", c.nc.RemoteAddr().String())
	defer func() {
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.stats.ConnectionsOpen.Add(-1)
		s.wg.Done()
	}()
	defer func() {
		if r := recover(); r != nil {
			// The panic value may hold message data: log its type only.
			s.stats.HandlerPanics.Add(1)
			log.Error("mllp handler panicked; connection closed", logging.PanicAttrs(r)...)
		}
	}()
	readTimeout := orDefault(s.ReadTimeout, 30*time.Second)
	idleTimeout := orDefault(s.IdleTimeout, 10*time.Minute)
	writeTimeout := orDefault(s.WriteTimeout, 10*time.Second)
	// Until its first frame starts, a connection has the first-frame
	// timeout (when shorter than the idle timeout).
	waitTimeout := min(orDefault(s.FirstFrameTimeout, 30*time.Second), idleTimeout)

	var tlsState *tls.ConnectionState
	if tc, ok := c.nc.(*tls.Conn); ok {
		_ = tc.SetDeadline(time.Now().Add(readTimeout))
		if err := tc.Handshake(); err != nil {
			s.handshakeLog().Fail(c.nc.RemoteAddr().String(), err)
			return
		}
		st := tc.ConnectionState()
		tlsState = &st
		if id := configvalue.PeerIdentity(tlsState); id != "" {
			// Who connected, for the audit trail: a certificate names
			// a system, never a patient.
			log.Info("mllp TLS client connected", "client", id)
		}
	}
	log.Debug("mllp connection opened")
	rd := NewReader(c.nc, s.MaxFrameSize)
	rd.OnFrameStart = func() { c.frameStarted(readTimeout) }
	junk := int64(0)
	var wbuf []byte
	for {
		if c.setIdle(true) {
			return
		}
		c.mu.Lock()
		if !c.evicted {
			_ = c.nc.SetReadDeadline(time.Now().Add(waitTimeout))
		}
		c.mu.Unlock()
		payload, err := rd.ReadFrame()
		waitTimeout = idleTimeout
		if n := rd.Skipped() - junk; n > 0 {
			junk += n
			s.stats.JunkBytes.Add(n)
			log.Warn("mllp bytes outside frames skipped", "bytes", n)
		}
		var tooBig *FrameTooLargeError
		switch {
		case err == nil:
		case errors.As(err, &tooBig):
			s.stats.FramesTooLarge.Add(1)
			log.Warn("mllp frame too large; rejected", "bytes", tooBig.Size, "max_bytes", tooBig.Max)
			payload = tooBig.Head
		default:
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF):
				log.Debug("mllp connection closed by peer")
			case errors.As(err, &ne) && ne.Timeout() && c.wasEvicted():
				log.Info("mllp idle connection closed to admit a new one (connection limit)")
			case errors.As(err, &ne) && ne.Timeout():
				if !s.closing.Load() {
					s.stats.ConnectionsTimedOut.Add(1)
					log.Info("mllp connection timed out", "idle", c.isIdle())
				}
			case errors.Is(err, ErrIncompleteFrame):
				log.Warn("mllp connection closed inside a frame; the sender will have to retransmit")
			default:
				if !s.closing.Load() {
					log.Warn("mllp read failed", "err", err)
				}
			}
			return
		}
		s.stats.Frames.Add(1)
		req := &Request{Payload: payload, Err: err, RemoteAddr: c.nc.RemoteAddr(), TLS: tlsState, Received: time.Now()}
		reply := s.serveFrame(req)
		if len(reply.Frames) == 0 {
			if reply.Close {
				log.Info("mllp handler sent no reply; connection closed")
				return
			}
			log.Debug("mllp frame needs no reply")
			continue
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		// One buffer per connection frames every reply, all frames of
		// one reply in one write; a buffer that grew for a large reply
		// is not kept.
		wbuf = wbuf[:0]
		for _, f := range reply.Frames {
			wbuf = AppendFrame(wbuf, f)
		}
		_, err = c.nc.Write(wbuf)
		if cap(wbuf) > 64<<10 {
			wbuf = nil
		}
		if err != nil {
			log.Warn("mllp reply could not be written", "err", err)
			return
		}
		if reply.Close {
			log.Info("mllp handler closed the connection after its reply")
			return
		}
	}
}

// serveFrame asks the handler for its reply: ServeMLLPReply when it has
// one, else ServeMLLP, whose nil means "close".
func (s *Server) serveFrame(req *Request) Reply {
	if rh, ok := s.Handler.(ReplyHandler); ok {
		return rh.ServeMLLPReply(s.ctx, req)
	}
	b := s.Handler.ServeMLLP(s.ctx, req)
	if b == nil {
		return Reply{Close: true}
	}
	return Reply{Frames: [][]byte{b}}
}

func (c *conn) wasEvicted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evicted
}

func (c *conn) isIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.idle
}

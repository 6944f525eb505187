package mllp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
	"github.com/ehrbridge/ehrbridge/internal/testcerts"
)

// ackHandler answers every frame with an AA built from it, or AR with the
// size for a frame that was too large.
var ackHandler = HandlerFunc(func(ctx context.Context, req *Request) []byte {
	m, err := hl7.ParseHeader(req.Payload)
	if err != nil {
		return nil
	}
	if req.Err != nil {
		return hl7.BuildAck(m, hl7.AR, "too large", nil, hl7.AckOptions{}).Bytes()
	}
	return hl7.BuildAck(m, hl7.AA, "", nil, hl7.AckOptions{}).Bytes()
})

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startServer serves s on a free loopback port and stops it with the test.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	if s.Logger == nil {
		s.Logger = quietLogger()
	}
	l, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return l.Addr().String()
}

func msg(id string) []byte {
	return []byte("MSH|^~\\&|SND|FAC|RCV|RFAC|20240101||ADT^A01|" + id + "|P|2.5.1\rPID|1||MRN" + id + "\r")
}

func readAck(t *testing.T, rd *Reader) (hl7.AckCode, string) {
	t.Helper()
	p, err := rd.ReadFrame()
	if err != nil {
		t.Fatalf("reading ack: %v", err)
	}
	m, err := hl7.Parse(p)
	if err != nil {
		t.Fatalf("parsing ack: %v", err)
	}
	code, id, _, _ := m.Ack()
	return code, id
}

func TestServerPipelinedInOrder(t *testing.T) {
	addr := startServer(t, &Server{Handler: ackHandler})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var all []byte
	for i := 1; i <= 20; i++ {
		all = AppendFrame(all, msg(fmt.Sprintf("P%02d", i)))
	}
	// One write with all twenty frames, then the stream split oddly.
	go func() {
		for len(all) > 0 {
			n := min(len(all), 37)
			_, _ = c.Write(all[:n])
			all = all[n:]
		}
	}()
	rd := NewReader(c, 0)
	for i := 1; i <= 20; i++ {
		if code, id := readAck(t, rd); code != hl7.AA || id != fmt.Sprintf("P%02d", i) {
			t.Fatalf("ack %d = %s %s", i, code, id)
		}
	}
}

func TestServerConcurrentConnections(t *testing.T) {
	srv := &Server{Handler: ackHandler}
	addr := startServer(t, srv)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &Client{Addr: addr, Logger: quietLogger()}
			defer c.Close()
			for j := 0; j < 10; j++ {
				r, err := c.Send(context.Background(), msg(fmt.Sprintf("C%d-%d", i, j)))
				if err != nil || r.Code != hl7.AA {
					errs <- fmt.Errorf("conn %d msg %d: %v", i, j, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := srv.Stats().Frames.Load(); got != 160 {
		t.Errorf("frames = %d, want 160", got)
	}
}

func TestServerFrameTooLarge(t *testing.T) {
	addr := startServer(t, &Server{Handler: ackHandler, MaxFrameSize: 2048})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := append(msg("BIG"), bytes.Repeat([]byte("OBX|1|TX|||yyyyyyyy\r"), 500)...)
	_ = WriteFrame(c, big)
	_ = WriteFrame(c, msg("SMALL"))
	rd := NewReader(c, 0)
	if code, id := readAck(t, rd); code != hl7.AR || id != "BIG" {
		t.Errorf("oversized frame: ack %s %s, want AR BIG", code, id)
	}
	if code, id := readAck(t, rd); code != hl7.AA || id != "SMALL" {
		t.Errorf("next frame: ack %s %s, want AA SMALL", code, id)
	}
}

func TestServerTimeouts(t *testing.T) {
	addr := startServer(t, &Server{Handler: ackHandler, IdleTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})
	t.Run("idle", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read = %v, want EOF when the server closes", err)
		}
		if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
			t.Errorf("closed after %v, want about 200ms", d)
		}
	})
	t.Run("stalled frame", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("\x0bMSH|^~\\&|partial"))
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read = %v, want EOF", err)
		}
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Errorf("closed after %v, before the read timeout", d)
		}
	})
}

// dialAck opens a connection and has one message acknowledged on it.
func dialAck(t *testing.T, addr, id string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_ = WriteFrame(c, msg(id))
	if code, got := readAck(t, NewReader(c, 0)); code != hl7.AA || got != id {
		t.Fatalf("%s: ack %s %s, want AA", id, code, got)
	}
	return c
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached within 5s")
}

// closedByServer reports whether the server has closed c (within 3 s).
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF
}

// At the connection limit, the connection idle the longest is closed to
// admit the new one: an EHR reconnecting while idle sockets hold every
// slot gets its AA (issue 27: 102 refusals in 118 reconnects before).
func TestServerMaxConnectionsEvictsIdlest(t *testing.T) {
	srv := &Server{Handler: ackHandler, MaxConnections: 3}
	addr := startServer(t, srv)
	oldest := dialAck(t, addr, "M0")
	time.Sleep(20 * time.Millisecond)
	middle := dialAck(t, addr, "M1")
	time.Sleep(20 * time.Millisecond)
	newest := dialAck(t, addr, "M2")
	// The oldest becomes the most recently active: middle is now idlest.
	_ = WriteFrame(oldest, msg("M3"))
	if code, _ := readAck(t, NewReader(oldest, 0)); code != hl7.AA {
		t.Fatal("M3 not acknowledged")
	}
	ehr := dialAck(t, addr, "EHR")
	if !closedByServer(middle) {
		t.Error("the longest-idle connection was not closed")
	}
	for name, c := range map[string]net.Conn{"oldest": oldest, "newest": newest, "ehr": ehr} {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_ = WriteFrame(c, msg("again-"+name))
		if code, _ := readAck(t, NewReader(c, 0)); code != hl7.AA {
			t.Errorf("%s: connection no longer served", name)
		}
	}
	if n := srv.Stats().ConnectionsEvicted.Load(); n != 1 {
		t.Errorf("evicted = %d, want 1", n)
	}
	if n := srv.Stats().ConnectionsRefused.Load(); n != 0 {
		t.Errorf("refused = %d, want 0", n)
	}
}

// The issue-27 scene at full size: 256 idle sockets hold the default
// limit; every one of the EHR's 100 reconnects gets its AA.
func TestServerIdleSocketsDoNotLockOut(t *testing.T) {
	srv := &Server{Handler: ackHandler}
	addr := startServer(t, srv)
	for i := 0; i < 256; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, func() bool { return srv.Stats().ConnectionsOpen.Load() == 256 })
	for i := 0; i < 100; i++ {
		c := dialAck(t, addr, fmt.Sprintf("R%d", i))
		c.Close()
	}
	if n := srv.Stats().ConnectionsRefused.Load(); n != 0 {
		t.Errorf("%d reconnects refused", n)
	}
}

// A connection inside a frame is never closed for another: when none is
// idle, the new connection is refused.
func TestServerMaxConnectionsRefusesWhenNoneIdle(t *testing.T) {
	srv := &Server{Handler: ackHandler, MaxConnections: 2, ReadTimeout: 5 * time.Second}
	addr := startServer(t, srv)
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("\x0bMSH|^~\\&|partial"))
	}
	waitFor(t, func() bool { return srv.Stats().ConnectionsOpen.Load() == 2 })
	time.Sleep(50 * time.Millisecond) // both have started their frames
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !closedByServer(c) {
		t.Error("a third connection was admitted while both held frames")
	}
	if srv.Stats().ConnectionsRefused.Load() != 1 || srv.Stats().ConnectionsEvicted.Load() != 0 {
		t.Errorf("refused = %d, evicted = %d; want 1, 0", srv.Stats().ConnectionsRefused.Load(), srv.Stats().ConnectionsEvicted.Load())
	}
}

// The per-address limit closes that address's own idle connection first.
func TestServerMaxConnectionsPerAddress(t *testing.T) {
	srv := &Server{Handler: ackHandler, MaxConnections: 10, MaxConnectionsPerAddress: 2}
	addr := startServer(t, srv)
	first := dialAck(t, addr, "A0")
	time.Sleep(20 * time.Millisecond)
	second := dialAck(t, addr, "A1")
	third := dialAck(t, addr, "A2")
	if !closedByServer(first) {
		t.Error("the address's longest-idle connection was not closed")
	}
	for _, c := range []net.Conn{second, third} {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_ = WriteFrame(c, msg("again"))
		if code, _ := readAck(t, NewReader(c, 0)); code != hl7.AA {
			t.Error("connection no longer served")
		}
	}
}

// A silent new connection is closed after the first-frame timeout, not
// after the (longer) idle timeout; a start byte repeated inside a frame
// does not extend the frame's read deadline.
func TestServerFirstFrameAndRestartedFrame(t *testing.T) {
	addr := startServer(t, &Server{Handler: ackHandler, FirstFrameTimeout: 200 * time.Millisecond, IdleTimeout: time.Minute, ReadTimeout: 400 * time.Millisecond})
	t.Run("silent", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		if !closedByServer(c) {
			t.Fatal("a silent connection was kept")
		}
		if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
			t.Errorf("closed after %v, want about 200ms", d)
		}
	})
	t.Run("start bytes", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		stop := make(chan struct{})
		defer close(stop)
		go func() { // a start byte every 100ms, each restarting the frame
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
					if _, err := c.Write([]byte{0x0b}); err != nil {
						return
					}
				}
			}
		}()
		if !closedByServer(c) {
			t.Fatal("start bytes held the connection open")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("closed after %v, want about 500ms", d)
		}
	})
}

func TestServerHandlerPanic(t *testing.T) {
	srv := &Server{Handler: HandlerFunc(func(ctx context.Context, req *Request) []byte {
		if bytes.Contains(req.Payload, []byte("BOOM")) {
			panic("PATIENT DOE")
		}
		return ackHandler(ctx, req)
	})}
	logs := &syncbuf.Buffer{}
	srv.Logger = slog.New(slog.NewTextHandler(logs, nil))
	addr := startServer(t, srv)
	c := &Client{Addr: addr, Logger: quietLogger(), AckTimeout: 2 * time.Second}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Send(ctx, msg("BOOM")); err == nil {
		t.Fatal("a panicking handler must not acknowledge")
	}
	if r, err := c.Send(context.Background(), msg("OK1")); err != nil || r.Code != hl7.AA {
		t.Fatalf("server must survive a handler panic: %v", err)
	}
	if strings.Contains(logs.String(), "PATIENT DOE") || !strings.Contains(logs.String(), "panic_type=string") {
		t.Errorf("panic log must name the type, not the value:\n%s", logs.String())
	}
}

func TestServerShutdown(t *testing.T) {
	release := make(chan struct{})
	inHandler := make(chan struct{}, 1)
	srv := &Server{Handler: HandlerFunc(func(ctx context.Context, req *Request) []byte {
		if bytes.Contains(req.Payload, []byte("SLOW")) {
			inHandler <- struct{}{}
			<-release
		}
		return ackHandler(ctx, req)
	}), Logger: quietLogger()}
	l, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	idle, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	busy, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_ = WriteFrame(busy, msg("SLOW"))
	<-inHandler
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	// The idle connection is closed promptly; new connections are refused.
	_ = idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle connection: %v, want EOF", err)
	}
	time.Sleep(50 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("listener still accepts after Shutdown")
	}
	// The in-flight message still gets its acknowledgment.
	close(release)
	if code, id := readAck(t, NewReader(busy, 0)); code != hl7.AA || id != "SLOW" {
		t.Errorf("in-flight ack = %s %s", code, id)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve = %v", err)
	}
}

func TestTLS(t *testing.T) {
	certs := testcerts.New(t)
	t.Run("server TLS", func(t *testing.T) {
		addr := startServer(t, &Server{Handler: ackHandler, TLSConfig: certs.ServerConfig(false)})
		c := &Client{Addr: addr, TLSConfig: certs.ClientConfig(false), Logger: quietLogger()}
		defer c.Close()
		if r, err := c.Send(context.Background(), msg("T1")); err != nil || r.Code != hl7.AA {
			t.Fatalf("send over TLS: %v", err)
		}
	})
	t.Run("mutual TLS", func(t *testing.T) {
		var peer string
		var mu sync.Mutex
		srv := &Server{TLSConfig: certs.ServerConfig(true), Handler: HandlerFunc(func(ctx context.Context, req *Request) []byte {
			mu.Lock()
			if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
				peer = req.TLS.PeerCertificates[0].Subject.CommonName
			}
			mu.Unlock()
			return ackHandler(ctx, req)
		})}
		addr := startServer(t, srv)
		c := &Client{Addr: addr, TLSConfig: certs.ClientConfig(true), Logger: quietLogger()}
		defer c.Close()
		if r, err := c.Send(context.Background(), msg("M1")); err != nil || r.Code != hl7.AA {
			t.Fatalf("send with client certificate: %v", err)
		}
		mu.Lock()
		if peer != "ehrbridge test client" {
			t.Errorf("peer = %q", peer)
		}
		mu.Unlock()
		// Without a client certificate the handshake fails and nothing is
		// acknowledged.
		raw, err := tls.Dial("tcp", addr, certs.ClientConfig(false))
		if err == nil {
			_ = WriteFrame(raw, msg("M2"))
			_ = raw.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err = NewReader(raw, 0).ReadFrame()
			raw.Close()
		}
		if err == nil {
			t.Error("a client without certificate must be refused")
		}
	})
}

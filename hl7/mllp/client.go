package mllp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// Client sends messages over one persistent connection. Its methods are
// safe for concurrent use; sends are serialised on the connection.
type Client struct {
	Addr         string
	TLSConfig    *tls.Config   // nil for plain TCP
	DialTimeout  time.Duration // default 10s
	AckTimeout   time.Duration // how long to wait for the acknowledgment; default 30s
	WriteTimeout time.Duration // default 10s
	MaxFrameSize int           // largest acknowledgment accepted; default DefaultMaxFrameSize
	MinBackoff   time.Duration // first reconnect delay; default 200ms
	MaxBackoff   time.Duration // reconnect delays double up to this; default 30s
	Logger       *slog.Logger  // default slog.Default()

	mu      sync.Mutex
	nc      net.Conn
	rd      *Reader
	backoff time.Duration
}

// Response is the receiver's answer to one message.
type Response struct {
	Code   hl7.AckCode  // MSA-1 of the final acknowledgment
	Text   string       // MSA-3 (or the ERR text)
	Ack    *hl7.Message // the final acknowledgment
	Raw    []byte       // its bytes
	Commit *hl7.Message // the commit acknowledgment (CA) that preceded it, if any
}

// ErrAckTimeout is returned when no matching acknowledgment arrived within
// AckTimeout. The message may or may not have been received; resending it
// with the same control id lets the receiver recognise a duplicate.
var ErrAckTimeout = errors.New("mllp: timed out waiting for the acknowledgment")

// Send sends one message and waits for its acknowledgment: a frame whose
// MSA-2 equals the message's MSH-10 (both may be empty). Frames that do not match (late
// acknowledgments of earlier messages) are skipped. A commit acknowledgment
// (CA) is recorded and the wait goes on for the application acknowledgment,
// unless the message's MSH-16 says the receiver never sends one ("NE"). CE
// and CR are final.
//
// When the connection fails before an acknowledgment arrives, Send
// reconnects with exponential backoff and sends the message again, until
// ctx ends: an MLLP receiver is expected to recognise the repeated control
// id. An acknowledgment timeout is returned as ErrAckTimeout without
// resending; the caller decides.
func (c *Client) Send(ctx context.Context, msg []byte) (*Response, error) {
	hdr, err := hl7.ParseHeader(msg)
	if err != nil {
		return nil, fmt.Errorf("mllp: message to send: %w", err)
	}
	// A message without MSH-10 is still sent (testing a receiver's
	// rejection path needs that); its acknowledgment has an empty MSA-2.
	h := hdr.Header()
	commitOnly := h.AppAckType == "NE"
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if err := c.connect(ctx); err != nil {
			return nil, err
		}
		resp, err := c.exchange(ctx, msg, h.ControlID, commitOnly)
		if err == nil {
			c.backoff = 0
			return resp, nil
		}
		c.closeConn()
		if errors.Is(err, ErrAckTimeout) || ctx.Err() != nil {
			return nil, err
		}
		c.logger().Warn("mllp connection lost while sending; reconnecting", "addr", c.Addr, "err", err)
	}
}

// Close closes the connection. The Client may be used again afterwards; it
// reconnects.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeConn()
	return nil
}

func (c *Client) closeConn() {
	if c.nc != nil {
		c.nc.Close()
		c.nc, c.rd = nil, nil
	}
}

// connect dials if there is no connection, backing off between failures.
func (c *Client) connect(ctx context.Context) error {
	for c.nc == nil {
		if c.backoff > 0 {
			wait := c.backoff/2 + rand.N(c.backoff/2+1)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("mllp: connecting to %s: %w", c.Addr, ctx.Err())
			case <-t.C:
			}
		}
		d := net.Dialer{Timeout: orDefault(c.DialTimeout, 10*time.Second)}
		var (
			nc  net.Conn
			err error
		)
		if c.TLSConfig != nil {
			td := tls.Dialer{NetDialer: &d, Config: c.TLSConfig}
			nc, err = td.DialContext(ctx, "tcp", c.Addr)
		} else {
			nc, err = d.DialContext(ctx, "tcp", c.Addr)
		}
		if err != nil {
			c.backoff = min(max(2*c.backoff, orDefault(c.MinBackoff, 200*time.Millisecond)), orDefault(c.MaxBackoff, 30*time.Second))
			if ctx.Err() != nil {
				return fmt.Errorf("mllp: connecting to %s: %w", c.Addr, err)
			}
			c.logger().Warn("mllp connect failed; retrying", "addr", c.Addr, "err", err, "retry_in", c.backoff)
			continue
		}
		c.nc, c.rd = nc, NewReader(nc, c.MaxFrameSize)
	}
	return nil
}

func (c *Client) exchange(ctx context.Context, msg []byte, controlID string, commitOnly bool) (*Response, error) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(orDefault(c.WriteTimeout, 10*time.Second)))
	if err := WriteFrame(c.nc, msg); err != nil {
		return nil, fmt.Errorf("mllp: writing to %s: %w", c.Addr, err)
	}
	deadline := time.Now().Add(orDefault(c.AckTimeout, 30*time.Second))
	fromCtx := false
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, fromCtx = d, true
	}
	nc := c.nc
	_ = nc.SetReadDeadline(deadline)
	// Unblock the read when ctx is cancelled. If the callback has already
	// started, wait for it so that it cannot touch the deadline of a later
	// exchange on the same connection.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = nc.SetReadDeadline(time.Now())
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
	}()
	var commit *hl7.Message
	for {
		frame, err := c.rd.ReadFrame()
		if err != nil {
			var ne net.Error
			var tooBig *FrameTooLargeError
			switch {
			case errors.As(err, &tooBig):
				c.logger().Warn("mllp acknowledgment too large; skipped", "bytes", tooBig.Size)
				continue
			case errors.As(err, &ne) && ne.Timeout():
				if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return nil, ctx.Err()
				}
				if fromCtx || ctx.Err() != nil {
					// The socket deadline may fire a moment before ctx
					// reports it: the error answers to both.
					return nil, fmt.Errorf("%w: %w", ErrAckTimeout, context.DeadlineExceeded)
				}
				return nil, ErrAckTimeout
			}
			return nil, fmt.Errorf("mllp: reading from %s: %w", c.Addr, err)
		}
		ack, err := hl7.Parse(frame)
		if err != nil {
			c.logger().Warn("mllp reply is not a valid HL7 message; skipped", "err", err)
			continue
		}
		code, acked, text, ok := ack.Ack()
		if !ok || acked != controlID {
			c.logger().Debug("mllp reply does not acknowledge this message; skipped")
			continue
		}
		if code == hl7.CA && !commitOnly {
			commit = ack
			continue
		}
		return &Response{Code: code, Text: text, Ack: ack, Raw: frame, Commit: commit}, nil
	}
}

func (c *Client) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

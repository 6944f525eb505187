package mllp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
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
	AckTimeout   time.Duration // how long one try waits for its acknowledgment; default 30s
	WriteTimeout time.Duration // default 10s
	// SendTimeout bounds one Send in all (backoff waits, reconnects and
	// resends included) when ctx has no earlier deadline; default 1m.
	SendTimeout time.Duration
	// Attempts is the most tries (connect, send, wait) one Send makes;
	// 0 tries as often as SendTimeout allows.
	Attempts int
	// MaxWait is the longest backoff one Send waits out before a try: when
	// the client's next try is further off, Send gives up at once with a
	// *SendError whose RetryIn says when. 0 waits whatever ends before
	// the deadline.
	MaxWait time.Duration
	// QuietPeriod is how long Send listens for an error after which
	// silence means success, for a message whose MSH-15/MSH-16 ask for no
	// answer on success (see Send); cut short by the deadline. Default 2s.
	QuietPeriod  time.Duration
	MaxFrameSize int           // largest acknowledgment accepted; default DefaultMaxFrameSize
	MinBackoff   time.Duration // first delay after a failed try; default 100ms
	MaxBackoff   time.Duration // delays double up to this; default 30s
	Logger       *slog.Logger  // default slog.Default()

	mu sync.Mutex
	nc net.Conn
	rd *Reader
	// Backoff: fails counts the tries in a row that ended without an
	// acknowledgment (connect refused, connection lost, no answer); no
	// try starts before retryAt. Only an acknowledgment resets them.
	fails   int
	retryAt time.Time
	lastErr error
}

// Response is the receiver's answer to one message.
type Response struct {
	// Code is MSA-1 of the final acknowledgment: AA, AE or AR (application
	// level), CE or CR (commit level), or CA where the message asks for
	// no application acknowledgment on success. "" with Silent: none was
	// due and none came.
	Code   hl7.AckCode
	Text   string       // MSA-3 (or the ERR text)
	Ack    *hl7.Message // the final acknowledgment (nil when Silent without a CA)
	Raw    []byte       // its bytes
	Commit *hl7.Message // the commit acknowledgment (CA) that came first, if any
	// Silent means success was concluded from silence: the message asks
	// for answers only on error (MSH-15/MSH-16 ER or NE) and no error
	// came within QuietPeriod.
	Silent bool
}

// Accepted reports whether the receiver took the message as the message
// asked to be told: AA; CA where no application acknowledgment is due on
// success; or silence where only errors are answered.
func (r *Response) Accepted() bool {
	return r.Code == hl7.AA || r.Code == hl7.CA || (r.Silent && r.Code == "")
}

// ErrAckTimeout is returned when no matching acknowledgment arrived within
// AckTimeout. The message may or may not have been received; resending it
// with the same control id lets the receiver recognise a duplicate.
var ErrAckTimeout = errors.New("mllp: timed out waiting for the acknowledgment")

// ErrConnectionLost is the cause of a try whose connection ended (closed
// or reset by the receiver, or a failed write) before the acknowledgment.
var ErrConnectionLost = errors.New("mllp: the connection ended before the acknowledgment")

// SendError is returned when Send gives up: its tries are used up, the
// deadline would pass before the next try, or that try is further off than
// MaxWait. Err is the last failure (a dial error, ErrConnectionLost, ...).
type SendError struct {
	Addr     string
	Attempts int           // tries this Send made (0: the client was backing off)
	RetryIn  time.Duration // when the client will try again
	Err      error
	ctxErr   error // the context's error when the deadline or a cancel was why
}

func (e *SendError) Error() string {
	if e.Attempts == 0 {
		return fmt.Sprintf("mllp: sending to %s: not tried, backing off for %v after: %v", e.Addr, e.RetryIn.Round(time.Millisecond), e.Err)
	}
	return fmt.Sprintf("mllp: sending to %s: gave up after %d attempt(s): %v", e.Addr, e.Attempts, e.Err)
}

// Unwrap returns the last failure and, when the context ended the send,
// the context's error.
func (e *SendError) Unwrap() []error {
	if e.ctxErr != nil {
		return []error{e.Err, e.ctxErr}
	}
	return []error{e.Err}
}

// Send sends one message and waits for the answers it asks for: frames
// whose MSA-2 equals the message's MSH-10 (both may be empty); frames that
// do not match (late acknowledgments of earlier messages) are skipped.
//
// What is awaited follows MSH-15 (accept acknowledgment type) and MSH-16
// (application acknowledgment type), HL7 v2.5 chapter 2 sections 2.9.2
// (original mode) and 2.9.3 (enhanced mode), table 0155 (AL always, NE
// never, ER error/reject only, SU success only) and table 0008 (codes):
//   - both empty (original mode): the application acknowledgment; a
//     commit acknowledgment (CA) before it is recorded in Commit.
//   - enhanced mode (either valued; an empty one counts as NE, an unknown
//     one as AL):
//     CE and CR end the exchange. MSH-16 AL or SU: the application
//     acknowledgment, past any CA. MSH-16 NE with MSH-15 AL or SU: the CA
//     is the final answer. MSH-16 ER: the CA if MSH-15 asks for one, then
//     QuietPeriod for an error; silence is success (Response.Silent).
//     MSH-15 and MSH-16 both NE or ER: QuietPeriod for an error, then
//     success by silence.
//
// When a try fails before the answer (connection refused, closed or reset
// by the receiver), Send waits a backoff and tries again, reconnecting and
// resending the same bytes (the receiver recognises the repeated control
// id), until it gives up with a *SendError: Attempts used, or the next try
// would start after the deadline (ctx's, or SendTimeout) or more than
// MaxWait from now. The backoff starts at MinBackoff and doubles per failed
// try up to MaxBackoff, each delay drawn from its upper half (jitter); it
// carries over from one Send to the next and resets only when an
// acknowledgment arrives. No answer within AckTimeout is returned as
// ErrAckTimeout without a resend; the caller decides.
func (c *Client) Send(ctx context.Context, msg []byte) (*Response, error) {
	hdr, err := hl7.ParseHeader(msg)
	if err != nil {
		return nil, fmt.Errorf("mllp: message to send: %w", err)
	}
	// A message without MSH-10 is still sent (testing a receiver's
	// rejection path needs that); its acknowledgment has an empty MSA-2.
	h := hdr.Header()
	want := expectFor(h)
	c.mu.Lock()
	defer c.mu.Unlock()
	deadline := time.Now().Add(orDefault(c.SendTimeout, time.Minute))
	fromCtx := false
	if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
		deadline, fromCtx = d, true
	}
	tries := 0
	var last error
	for {
		if c.Attempts > 0 && tries >= c.Attempts {
			return nil, c.giveUp(tries, last, nil)
		}
		if wait := time.Until(c.retryAt); wait > 0 {
			if (c.MaxWait > 0 && wait > c.MaxWait) || time.Now().Add(wait).After(deadline) {
				var ctxErr error
				if fromCtx && time.Now().Add(wait).After(deadline) {
					ctxErr = context.DeadlineExceeded
				}
				return nil, c.giveUp(tries, last, ctxErr)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, c.giveUp(tries, last, ctx.Err())
			case <-t.C:
			}
		}
		tries++
		resp, err := c.try(ctx, msg, h.ControlID, want, deadline, fromCtx)
		if err == nil {
			c.fails, c.retryAt, c.lastErr = 0, time.Time{}, nil
			return resp, nil
		}
		c.closeConn()
		last = err
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, c.giveUp(tries, last, ctx.Err()) // the caller's doing, not the receiver's
		}
		c.failed(err)
		if errors.Is(err, ErrAckTimeout) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, c.giveUp(tries, last, ctx.Err())
		}
		c.logger().Warn("mllp send failed; backing off", "addr", c.Addr, "err", err, "attempt", tries,
			"retry_in", time.Until(c.retryAt).Round(time.Millisecond))
	}
}

// failed records a try that ended without an acknowledgment and sets the
// earliest next try: MinBackoff doubled per failure in a row, capped at
// MaxBackoff, drawn from [d/2, d].
func (c *Client) failed(err error) {
	c.fails++
	lo, hi := orDefault(c.MinBackoff, 100*time.Millisecond), orDefault(c.MaxBackoff, 30*time.Second)
	d := hi
	if c.fails-1 < 40 {
		if x := lo << (c.fails - 1); x > 0 && x < hi {
			d = x
		}
	}
	d = d/2 + rand.N(d/2+1)
	c.retryAt, c.lastErr = time.Now().Add(d), err
}

func (c *Client) giveUp(tries int, last, ctxErr error) error {
	if last == nil {
		last = c.lastErr
	}
	if last == nil {
		last = errors.New("no try was made")
	}
	return &SendError{Addr: c.Addr, Attempts: tries, RetryIn: max(time.Until(c.retryAt), 0), Err: last, ctxErr: ctxErr}
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

// try makes one attempt: connect if needed, write, wait for the answers.
func (c *Client) try(ctx context.Context, msg []byte, controlID string, want expectation, deadline time.Time, fromCtx bool) (*Response, error) {
	if c.nc == nil {
		dctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		d := net.Dialer{Timeout: orDefault(c.DialTimeout, 10*time.Second)}
		var (
			nc  net.Conn
			err error
		)
		if c.TLSConfig != nil {
			td := tls.Dialer{NetDialer: &d, Config: c.TLSConfig}
			nc, err = td.DialContext(dctx, "tcp", c.Addr)
		} else {
			nc, err = d.DialContext(dctx, "tcp", c.Addr)
		}
		if err != nil {
			return nil, fmt.Errorf("mllp: connecting to %s: %w", c.Addr, err)
		}
		c.nc, c.rd = nc, NewReader(nc, c.MaxFrameSize)
	}
	return c.exchange(ctx, msg, controlID, want, deadline, fromCtx)
}

// expectation is what a message asks its receiver to answer: MSH-15 and
// MSH-16, HL7 table 0155. Original mode (both empty) waits as AL/AL does:
// for the application acknowledgment, past any CA.
type expectation struct {
	accept, app hl7.AckCondition
}

func expectFor(h hl7.Header) expectation {
	if !h.Enhanced() {
		return expectation{accept: hl7.AckAlways, app: hl7.AckAlways}
	}
	cond := func(s string) hl7.AckCondition {
		c := hl7.AckCondition(strings.ToUpper(s))
		if !c.Valid() {
			return hl7.AckAlways // unknown: wait for the answer rather than assume it
		}
		// In enhanced mode an empty one asks for nothing, as NE: what
		// ehrbridge's own listener answers. A receiver that sends it
		// anyway is not waited for; its late frame is skipped by the next
		// exchange.
		return c
	}
	return expectation{accept: cond(h.AcceptAckType), app: cond(h.AppAckType)}
}

// commitFinal: a CA is the final answer (one is due at commit level, and
// no application acknowledgment at all).
func (e expectation) commitFinal() bool {
	return e.accept.Wants(true) && !e.app.Wants(true) && !e.app.Wants(false)
}

// quietAfterCommit: after the CA only an application error may come.
func (e expectation) quietAfterCommit() bool {
	return e.accept.Wants(true) && !e.app.Wants(true) && e.app.Wants(false)
}

// quietFromStart: no answer at all is due on success.
func (e expectation) quietFromStart() bool {
	return !e.accept.Wants(true) && !e.app.Wants(true)
}

func (c *Client) exchange(ctx context.Context, msg []byte, controlID string, want expectation, deadline time.Time, fromCtx bool) (*Response, error) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(orDefault(c.WriteTimeout, 10*time.Second)))
	if err := WriteFrame(c.nc, msg); err != nil {
		return nil, fmt.Errorf("%w: writing to %s: %w", ErrConnectionLost, c.Addr, err)
	}
	ackDeadline := time.Now().Add(orDefault(c.AckTimeout, 30*time.Second))
	ackFromCtx := false
	if deadline.Before(ackDeadline) {
		ackDeadline, ackFromCtx = deadline, fromCtx
	}
	nc := c.nc
	var quietUntil time.Time // set while listening for an error only
	quiet := func() {
		quietUntil = time.Now().Add(orDefault(c.QuietPeriod, 2*time.Second))
		if quietUntil.After(ackDeadline) {
			quietUntil = ackDeadline
		}
		_ = nc.SetReadDeadline(quietUntil)
	}
	_ = nc.SetReadDeadline(ackDeadline)
	if want.quietFromStart() {
		quiet()
	}
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
	var ca *Response // the commit acknowledgment, once it came
	for {
		frame, err := c.rd.ReadFrame()
		var tooBig *FrameTooLargeError
		if errors.As(err, &tooBig) {
			c.logger().Warn("mllp acknowledgment too large; skipped", "bytes", tooBig.Size)
			continue
		}
		if err != nil {
			return c.readFailed(ctx, err, quietUntil, ca, ackFromCtx)
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
		r := &Response{Code: code, Text: text, Ack: ack, Raw: frame}
		if code != hl7.CA {
			if ca != nil {
				r.Commit = ca.Ack
			}
			return r, nil
		}
		r.Commit, ca = ack, r
		switch {
		case want.commitFinal():
			return r, nil
		case want.quietAfterCommit() && quietUntil.IsZero():
			quiet()
		}
	}
}

// readFailed ends an exchange whose read failed with err: in success
// when only an error was due and quietUntil has passed without one (the
// response is the commit acknowledgment ca, if one came), else with
// ErrAckTimeout or ErrConnectionLost.
func (c *Client) readFailed(ctx context.Context, err error, quietUntil time.Time, ca *Response, ackFromCtx bool) (*Response, error) {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return nil, fmt.Errorf("%w: reading from %s: %w", ErrConnectionLost, c.Addr, err)
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, ctx.Err()
	}
	if !quietUntil.IsZero() && !time.Now().Before(quietUntil) {
		if ca == nil {
			return &Response{Silent: true}, nil
		}
		ca.Silent = true
		return ca, nil
	}
	if ackFromCtx || ctx.Err() != nil {
		// The socket deadline may fire a moment before ctx reports it:
		// the error answers to both.
		return nil, fmt.Errorf("%w: %w", ErrAckTimeout, context.DeadlineExceeded)
	}
	return nil, ErrAckTimeout
}

func (c *Client) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

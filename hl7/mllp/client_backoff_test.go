package mllp

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// hangUp is a receiver that accepts connections and closes them without
// an answer: at once, or after reading the message. It records when each
// connection was accepted.
type hangUp struct {
	addr string
	mu   sync.Mutex
	at   []time.Time
}

func startHangUp(t *testing.T, readFirst bool) *hangUp {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	h := &hangUp{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.at = append(h.at, time.Now())
			h.mu.Unlock()
			if readFirst {
				_, _ = NewReader(c, 0).ReadFrame()
			}
			c.Close()
		}
	}()
	return h
}

func (h *hangUp) accepted() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.at...)
}

// The acceptance test of issue 25: against a receiver that hangs up without
// an acknowledgment, one Send with the default backoff makes a few
// connection attempts in 6 s, not tens of thousands, and gives up with an
// error that says why.
func TestClientBacksOffFromHangUpPeer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		readFirst bool
		refused   bool
	}{{"closes after reading", true, false}, {"closes at once", false, false}, {"nobody listening", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var peer *hangUp
			addr := ""
			if tc.refused {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr = l.Addr().String()
				l.Close()
			} else {
				peer = startHangUp(t, tc.readFirst)
				addr = peer.addr
			}
			c := &Client{Addr: addr, Logger: quietLogger()}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
			defer cancel()
			start := time.Now()
			_, err := c.Send(ctx, msg("HANG1"))
			took := time.Since(start)
			var se *SendError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *SendError", err)
			}
			if took > 6500*time.Millisecond {
				t.Errorf("Send took %v with a 6s deadline", took)
			}
			tries := se.Attempts
			if peer != nil {
				tries = len(peer.accepted())
				if !errors.Is(err, ErrConnectionLost) {
					t.Errorf("err = %v, want ErrConnectionLost as the cause", err)
				}
			} else if !strings.Contains(err.Error(), "connection refused") {
				t.Errorf("err = %q, want it to say connection refused", err)
			}
			t.Logf("%s: %d connection attempts in %v; %v", tc.name, tries, took.Round(time.Millisecond), err)
			// 100 ms doubling with jitter from the upper half: 7 to 9 tries
			// fit in 6 s. The old client made tens of thousands.
			if tries < 3 || tries > 30 {
				t.Errorf("%d attempts in 6s, want a few (3..30)", tries)
			}
		})
	}
}

// A connection that ends without an acknowledgment counts as a failure
// for the backoff even though the connect succeeded, and only an
// acknowledgment resets it.
func TestClientBackoffCountsLostConnections(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	answer := false
	addr := scripted(t, func(conn int, f []byte) [][]byte {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
		if !answer {
			return nil // hang up without answering
		}
		return [][]byte{ackFor(t, f, hl7.AA, "")}
	})
	c := &Client{Addr: addr, Logger: quietLogger(), MinBackoff: 40 * time.Millisecond, Attempts: 3}
	defer c.Close()
	_, err := c.Send(context.Background(), msg("L1"))
	var se *SendError
	if !errors.As(err, &se) || se.Attempts != 3 || !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("err = %v, want a *SendError after 3 attempts caused by ErrConnectionLost", err)
	}
	mu.Lock()
	if len(at) != 3 {
		t.Fatalf("receiver saw %d tries, want 3", len(at))
	}
	// Delays are drawn from [d/2, d]: at least 20 ms, then 40 ms.
	if g1, g2 := at[1].Sub(at[0]), at[2].Sub(at[1]); g1 < 20*time.Millisecond || g2 < 40*time.Millisecond {
		t.Errorf("gaps between resends %v, %v: want >= 20ms, >= 40ms (backoff after a lost connection)", g1, g2)
	}
	answer = true
	mu.Unlock()
	if c.fails != 3 {
		t.Errorf("fails = %d after 3 lost connections", c.fails)
	}
	// The next Send waits out the backoff, then an acknowledgment resets it.
	r, err := c.Send(context.Background(), msg("L2"))
	if err != nil || r.Code != hl7.AA {
		t.Fatalf("got %v %v", r, err)
	}
	if c.fails != 0 || !c.retryAt.IsZero() {
		t.Errorf("after an AA: fails %d retryAt %v, want the backoff reset", c.fails, c.retryAt)
	}
}

// Without a deadline on ctx, SendTimeout ends the Send.
func TestClientGivesUpAfterSendTimeout(t *testing.T) {
	peer := startHangUp(t, true)
	c := &Client{Addr: peer.addr, Logger: quietLogger(), SendTimeout: 700 * time.Millisecond}
	defer c.Close()
	start := time.Now()
	_, err := c.Send(context.Background(), msg("ST1"))
	var se *SendError
	if !errors.As(err, &se) || !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("err = %v, want a *SendError", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("gave up after %v with SendTimeout 700ms", d)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v claims a context deadline; there was none", err)
	}
}

// Attempts 1 reports a refused connection at once; MaxWait makes a Send
// that would have to wait out a long backoff give up at once, saying when
// the client will try again.
func TestClientAttemptsAndMaxWait(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := &Client{Addr: addr, Logger: quietLogger(), Attempts: 1, MinBackoff: time.Second, MaxWait: 100 * time.Millisecond}
	start := time.Now()
	_, err = c.Send(context.Background(), msg("A1"))
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("refused connection reported after %v", d)
	}
	var se *SendError
	if !errors.As(err, &se) || se.Attempts != 1 || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want connection refused after 1 attempt", err)
	}
	start = time.Now()
	_, err = c.Send(context.Background(), msg("A2"))
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("a Send inside a 0.5-1s backoff with MaxWait 100ms took %v", d)
	}
	if !errors.As(err, &se) || se.Attempts != 0 || se.RetryIn <= 100*time.Millisecond || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v (%+v), want not tried, backing off, with the last cause", err, se)
	}
}

// Send waits for exactly the answers MSH-15/MSH-16 ask for (HL7 v2.5
// chapter 2 section 2.9, table 0155).
func TestClientAcknowledgmentModes(t *testing.T) {
	type answer = []hl7.AckCode
	for _, tc := range []struct {
		msh15, msh16 string
		peer         answer        // what the receiver sends, in order
		code         hl7.AckCode   // want; "" with silent
		silent       bool          // success concluded from silence
		accepted     bool          // Response.Accepted
		timeout      bool          // want ErrAckTimeout
		minTook      time.Duration // the quiet period was waited out
	}{
		{"", "", answer{hl7.CA, hl7.AA}, hl7.AA, false, true, false, 0},
		{"", "", answer{hl7.AR}, hl7.AR, false, false, false, 0},
		{"AL", "AL", answer{hl7.CA, hl7.AA}, hl7.AA, false, true, false, 0},
		{"AL", "AL", answer{hl7.CA, hl7.AE}, hl7.AE, false, false, false, 0},
		{"AL", "AL", answer{hl7.CE}, hl7.CE, false, false, false, 0},
		{"AL", "AL", answer{hl7.CA}, "", false, false, true, 0},
		{"AL", "NE", answer{hl7.CA}, hl7.CA, false, true, false, 0},
		{"AL", "NE", answer{hl7.CR}, hl7.CR, false, false, false, 0},
		{"SU", "NE", answer{hl7.CA}, hl7.CA, false, true, false, 0},
		{"AL", "ER", answer{hl7.CA}, hl7.CA, true, true, false, 300 * time.Millisecond},
		{"AL", "ER", answer{hl7.CA, hl7.AE}, hl7.AE, false, false, false, 0},
		{"NE", "NE", answer{}, "", true, true, false, 300 * time.Millisecond},
		{"ER", "NE", answer{}, "", true, true, false, 300 * time.Millisecond},
		{"ER", "ER", answer{hl7.CR}, hl7.CR, false, false, false, 0},
		{"ER", "ER", answer{hl7.AR}, hl7.AR, false, false, false, 0},
		{"NE", "AL", answer{hl7.AA}, hl7.AA, false, true, false, 0},
		{"NE", "SU", answer{}, "", false, false, true, 0},
		// An empty MSH-16 beside a valued MSH-15 asks for no application
		// acknowledgment (as ehrbridge's listener reads it): the CA is final.
		{"AL", "", answer{hl7.CA}, hl7.CA, false, true, false, 0},
		{"AL", "", answer{hl7.CA, hl7.AA}, hl7.CA, false, true, false, 0},
		{"", "AL", answer{hl7.AA}, hl7.AA, false, true, false, 0},
	} {
		name := "[" + tc.msh15 + "/" + tc.msh16 + "]"
		for _, a := range tc.peer {
			name += string(a)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr := scripted(t, func(_ int, f []byte) [][]byte {
				out := [][]byte{}
				for _, a := range tc.peer {
					out = append(out, ackFor(t, f, a, ""))
				}
				return out
			})
			c := &Client{Addr: addr, Logger: quietLogger(), AckTimeout: 600 * time.Millisecond, QuietPeriod: 300 * time.Millisecond}
			defer c.Close()
			m := []byte("MSH|^~\\&|A|B|C|D|2024||MDM^T02|M1|P|2.5.1|||" + tc.msh15 + "|" + tc.msh16 + "\r")
			start := time.Now()
			r, err := c.Send(context.Background(), m)
			took := time.Since(start)
			if tc.timeout {
				if !errors.Is(err, ErrAckTimeout) {
					t.Fatalf("got %+v %v, want ErrAckTimeout", r, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != tc.code || r.Silent != tc.silent || r.Accepted() != tc.accepted {
				t.Errorf("code %q silent %v accepted %v; want %q %v %v", r.Code, r.Silent, r.Accepted(), tc.code, tc.silent, tc.accepted)
			}
			if took < tc.minTook {
				t.Errorf("concluded after %v, before the quiet period of %v", took, tc.minTook)
			}
			if tc.minTook == 0 && took > 500*time.Millisecond {
				t.Errorf("took %v: waited for an answer the message does not ask for", took)
			}
		})
	}
}

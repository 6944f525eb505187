package mllp

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// ackFor builds an acknowledgment of m with the given code.
func ackFor(t *testing.T, payload []byte, code hl7.AckCode, controlID string) []byte {
	t.Helper()
	m, err := hl7.ParseHeader(payload)
	if err != nil {
		t.Fatal(err)
	}
	a := hl7.BuildAck(m, code, "text "+string(code), nil, hl7.AckOptions{})
	if controlID != "" {
		// Acknowledge another message: a late reply to an earlier send.
		_ = a.Segment("MSA", 1).SetField(2, controlID)
	}
	return a.Bytes()
}

// scripted is a receiver that answers each frame by calling reply with the
// connection number (from 1) and the frame, writing what it returns.
func scripted(t *testing.T, reply func(conn int, frame []byte) [][]byte) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			id := int(n.Add(1))
			go func() {
				defer c.Close()
				rd := NewReader(c, 0)
				for {
					f, err := rd.ReadFrame()
					if err != nil {
						return
					}
					out := reply(id, f)
					if out == nil {
						return // close without answering
					}
					for _, o := range out {
						if err := WriteFrame(c, o); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func TestClientWaitsPastCommitAck(t *testing.T) {
	addr := scripted(t, func(_ int, f []byte) [][]byte {
		return [][]byte{ackFor(t, f, hl7.CA, ""), ackFor(t, f, hl7.AA, "")}
	})
	c := &Client{Addr: addr, Logger: quietLogger()}
	defer c.Close()
	for _, id := range []string{"E1", "E2"} {
		r, err := c.Send(context.Background(), msg(id))
		if err != nil {
			t.Fatal(err)
		}
		if r.Code != hl7.AA || r.Commit == nil || r.Text != "text AA" {
			t.Errorf("%s: code %s commit %v text %q; want AA after a CA", id, r.Code, r.Commit != nil, r.Text)
		}
	}
}

func TestClientCommitOnlyWhenNoApplicationAck(t *testing.T) {
	addr := scripted(t, func(_ int, f []byte) [][]byte { return [][]byte{ackFor(t, f, hl7.CA, "")} })
	c := &Client{Addr: addr, Logger: quietLogger(), AckTimeout: 2 * time.Second}
	defer c.Close()
	m := []byte("MSH|^~\\&|A|B|C|D|2024||MDM^T02|NE1|P|2.5.1|||AL|NE\r")
	r, err := c.Send(context.Background(), m)
	if err != nil || r.Code != hl7.CA {
		t.Fatalf("MSH-16 NE: %v %v, want CA as the final answer", r, err)
	}
}

func TestClientFinalCodes(t *testing.T) {
	for _, code := range []hl7.AckCode{hl7.AE, hl7.AR, hl7.CE, hl7.CR} {
		addr := scripted(t, func(_ int, f []byte) [][]byte { return [][]byte{ackFor(t, f, code, "")} })
		c := &Client{Addr: addr, Logger: quietLogger()}
		r, err := c.Send(context.Background(), msg("F1"))
		c.Close()
		if err != nil || r.Code != code {
			t.Errorf("%s: got %v %v", code, r, err)
		}
	}
}

func TestClientSkipsStaleAndForeignReplies(t *testing.T) {
	addr := scripted(t, func(_ int, f []byte) [][]byte {
		return [][]byte{
			ackFor(t, f, hl7.AE, "OLD-ID"), // late ACK of an earlier message
			[]byte("not hl7 at all"),
			ackFor(t, f, hl7.AA, ""),
		}
	})
	c := &Client{Addr: addr, Logger: quietLogger()}
	defer c.Close()
	r, err := c.Send(context.Background(), msg("S1"))
	if err != nil || r.Code != hl7.AA {
		t.Fatalf("got %v %v, want AA", r, err)
	}
}

func TestClientAckTimeout(t *testing.T) {
	addr := scripted(t, func(_ int, f []byte) [][]byte { return [][]byte{} })
	c := &Client{Addr: addr, Logger: quietLogger(), AckTimeout: 200 * time.Millisecond}
	defer c.Close()
	start := time.Now()
	_, err := c.Send(context.Background(), msg("TO1"))
	if !errors.Is(err, ErrAckTimeout) {
		t.Fatalf("err = %v, want ErrAckTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timed out after %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Send(ctx, msg("TO2")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ctx deadline: err = %v", err)
	}
}

func TestClientReconnectsAndResends(t *testing.T) {
	var frames atomic.Int32
	addr := scripted(t, func(conn int, f []byte) [][]byte {
		frames.Add(1)
		if conn == 1 {
			return nil // drop the first connection without answering
		}
		return [][]byte{ackFor(t, f, hl7.AA, "")}
	})
	c := &Client{Addr: addr, Logger: quietLogger(), MinBackoff: 10 * time.Millisecond}
	defer c.Close()
	r, err := c.Send(context.Background(), msg("R1"))
	if err != nil || r.Code != hl7.AA {
		t.Fatalf("got %v %v", r, err)
	}
	if frames.Load() != 2 {
		t.Errorf("receiver saw %d frames, want the message twice (resent after reconnect)", frames.Load())
	}
}

func TestClientConnectBackoff(t *testing.T) {
	// Reserve a port, free it, and start the receiver there a little later.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srv := &Server{Handler: ackHandler, Logger: quietLogger()}
	go func() {
		time.Sleep(300 * time.Millisecond)
		l2, err := srv.Listen(addr)
		if err != nil {
			return
		}
		_ = srv.Serve(l2)
	}()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	c := &Client{Addr: addr, Logger: quietLogger(), MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Send(ctx, msg("B1"))
	if err != nil || r.Code != hl7.AA {
		t.Fatalf("got %v %v", r, err)
	}
	// Nobody listening and a short deadline: a clean error naming the address.
	dead := &Client{Addr: "127.0.0.1:1", Logger: quietLogger(), MinBackoff: 10 * time.Millisecond}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := dead.Send(ctx2, msg("B2")); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("err = %v", err)
	}
}

func TestClientRefusesNonHL7(t *testing.T) {
	c := &Client{Addr: "127.0.0.1:1"}
	if _, err := c.Send(context.Background(), []byte("garbage")); err == nil {
		t.Error("want an error for a non-HL7 payload")
	}
}

// A message without MSH-10 is sent and matched to an ACK with empty MSA-2.
func TestClientMessageWithoutControlID(t *testing.T) {
	addr := scripted(t, func(_ int, f []byte) [][]byte { return [][]byte{ackFor(t, f, hl7.AR, "")} })
	c := &Client{Addr: addr, Logger: quietLogger()}
	defer c.Close()
	r, err := c.Send(context.Background(), []byte("MSH|^~\\&|A|B|C|D|2024||ADT^A01||P|2.5\r"))
	if err != nil || r.Code != hl7.AR {
		t.Fatalf("got %v %v, want AR", r, err)
	}
}

// Package mllptest provides an MLLP receiver for tests: a stand-in for an
// EHR's interface engine that answers each message as the test says,
// including not at all.
package mllptest

import (
	"net"
	"sync/atomic"
	"testing"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
)

// Peer is an MLLP receiver on 127.0.0.1, stopped when the test ends.
type Peer struct {
	// Addr is its host:port.
	Addr string
	// Conns counts the connections accepted, Frames the frames read.
	Conns, Frames atomic.Int64
}

// NewPeer starts a receiver that answers each frame with one
// acknowledgment per code answer returns, in order; no codes (or a frame
// that does not parse) closes the connection without an answer, as an
// interface engine that hangs up does.
func NewPeer(t testing.TB, answer func(m *hl7.Message) []hl7.AckCode) *Peer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &Peer{Addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.Conns.Add(1)
			go p.serve(c, answer)
		}
	}()
	return p
}

func (p *Peer) serve(c net.Conn, answer func(m *hl7.Message) []hl7.AckCode) {
	defer c.Close()
	rd := mllp.NewReader(c, 0)
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return
		}
		p.Frames.Add(1)
		m, err := hl7.Parse(f)
		if err != nil {
			return
		}
		codes := answer(m)
		if len(codes) == 0 {
			return
		}
		for _, code := range codes {
			if err := mllp.WriteFrame(c, hl7.BuildAck(m, code, "", nil, hl7.AckOptions{}).Bytes()); err != nil {
				return
			}
		}
	}
}

// ClosedAddr returns an address on 127.0.0.1 where nothing listens: a
// connection there is refused.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

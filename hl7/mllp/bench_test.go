package mllp

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// BenchmarkRoundTrip is one message sent and its AA received over a
// persistent loopback connection: client framing, server parsing the
// header, building and encoding the ACK, client parsing and matching it.
func BenchmarkRoundTrip(b *testing.B) {
	srv := &Server{Handler: ackHandler, Logger: quietLogger()}
	l, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer func() { _ = srv.Shutdown(context.Background()) }()
	c := &Client{Addr: l.Addr().String(), Logger: quietLogger()}
	defer c.Close()
	m := msg("BENCH1")
	b.SetBytes(int64(len(m)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := c.Send(context.Background(), m)
		if err != nil || r.Code != hl7.AA {
			b.Fatal(err)
		}
	}
}

// BenchmarkTCPEchoBaseline is the same exchange without MLLP or HL7: the
// message's bytes written on a loopback connection and an ACK-sized reply
// read back. BenchmarkRoundTrip is reported against it.
func BenchmarkTCPEchoBaseline(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	m := msg("BENCH1")
	reply := make([]byte, 120)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, len(m))
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(reply); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	got := make([]byte, len(reply))
	b.SetBytes(int64(len(m)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(m); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadFrame reads 1,000 frames of 2 KB from memory: the Reader's
// own cost per frame, without the network.
func BenchmarkReadFrame(b *testing.B) {
	payload := bytes.Repeat([]byte("PID|1||MRN12345^^^HOSP^MR||DOE^JANE||19800101|F\r"), 40)
	stream := bytes.Repeat(AppendFrame(nil, payload), 1000)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		rd := NewReader(bytes.NewReader(stream), 0)
		for range 1000 {
			if _, err := rd.ReadFrame(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

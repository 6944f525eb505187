package mllp

import (
	"context"
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

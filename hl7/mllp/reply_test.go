package mllp

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// enhancedHandler answers like an enhanced-mode receiver: control ids
// starting with "TWO" get CA then AA, "NONE" nothing (the connection stays
// open), "BYE" an AR and a closed connection.
type enhancedHandler struct{}

func (enhancedHandler) ServeMLLP(ctx context.Context, req *Request) []byte {
	panic("Server must call ServeMLLPReply on a ReplyHandler")
}

func (enhancedHandler) ServeMLLPReply(ctx context.Context, req *Request) Reply {
	m, err := hl7.ParseHeader(req.Payload)
	if err != nil {
		return Reply{Close: true}
	}
	id := m.Header().ControlID
	ack := func(c hl7.AckCode) []byte { return hl7.BuildAck(m, c, "", nil, hl7.AckOptions{}).Bytes() }
	switch {
	case strings.HasPrefix(id, "TWO"):
		return Reply{Frames: [][]byte{ack(hl7.CA), ack(hl7.AA)}}
	case strings.HasPrefix(id, "NONE"):
		return Reply{}
	case strings.HasPrefix(id, "BYE"):
		return Reply{Frames: [][]byte{ack(hl7.AR)}, Close: true}
	}
	return Reply{Frames: [][]byte{ack(hl7.AA)}}
}

// Issue 25.6: one message may need two answers (commit, then application
// acknowledgment) or none; the server sends exactly what the handler gives.
func TestServerReplyHandlerFrames(t *testing.T) {
	addr := startServer(t, &Server{Handler: enhancedHandler{}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	rd := NewReader(c, 0)
	for _, id := range []string{"TWO1", "NONE1", "ONE1"} {
		if err := WriteFrame(c, msg(id)); err != nil {
			t.Fatal(err)
		}
	}
	// NONE1 gets nothing, so ONE1's AA directly follows TWO1's pair.
	for _, want := range []struct {
		code hl7.AckCode
		id   string
	}{{hl7.CA, "TWO1"}, {hl7.AA, "TWO1"}, {hl7.AA, "ONE1"}} {
		if code, id := readAck(t, rd); code != want.code || id != want.id {
			t.Fatalf("got %s %s, want %s %s", code, id, want.code, want.id)
		}
	}
	if err := WriteFrame(c, msg("BYE1")); err != nil {
		t.Fatal(err)
	}
	if code, id := readAck(t, rd); code != hl7.AR || id != "BYE1" {
		t.Fatalf("got %s %s, want AR BYE1", code, id)
	}
	if _, err := rd.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Errorf("after a closing reply: %v, want EOF", err)
	}
}

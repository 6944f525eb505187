package hl7

import (
	"bytes"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Split, Parse and ParseHeader. Nothing
// may panic, and whatever parses must re-encode to bytes that parse to the
// same encoding again (encode is a fixed point after one round).
func FuzzParse(f *testing.F) {
	f.Add([]byte(adtA01))
	f.Add([]byte("MSH|^~\\&#|A|B|C|D|2024||ADT^A01|X|P|2.7\rPID|1||a\\P\\b\\X41\\\\.br\\\r"))
	f.Add([]byte("\xEF\xBB\xBFMSH|^~\\&|A\nPID|1\r\nOBX|1\n"))
	f.Add([]byte("FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|A|B\rBTS|1\rFTS|1\r"))
	f.Add([]byte("MSH|^~\\&|A|B|C|D|2024||ADT^A08|X|P|2.5||||||8859/1\rPID|1||\xe9\r"))
	f.Add([]byte("MSH#*!$%#A\rPID#1##a*b%c!d\r"))
	f.Add([]byte("MSH|"))
	f.Add([]byte("MSH|^~\\\\&|A|B|C|D|2024||ADT^A01|X|P|2.5.1\rPID|1\r"))
	f.Add([]byte("MSH||A^1.2^ISO|B|C|D|2024||ADT^A01|X|P|2.5.1||||||UNICODE UTF-16\r"))
	f.Add([]byte("MSH.^~\\&.A.B.C.D.2024..ADT^A01.X.P.2\\F\\5\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		_, _ = ParseHeader(data)
		// Whatever ReadHeader can address gets an acknowledgment that
		// parses (issue 25: every message with an MSH is answered).
		if hdr, problems, ok := ReadHeader(data); ok {
			details := make([]ErrDetail, 0, len(problems))
			for _, p := range problems {
				details = append(details, p.Detail())
			}
			ack := BuildAck(hdr, AR, "x", details, AckOptions{})
			if _, err := Parse(ack.Bytes()); err != nil {
				t.Fatalf("ACK to a readable header does not parse: %v\n%q", err, ack.Bytes())
			}
		}
		if parts, err := Split(data); err == nil {
			for _, p := range parts {
				_, _ = Parse(p)
			}
		}
		m, err := Parse(data)
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %T is not a *ParseError", err)
			}
			return
		}
		out := m.Bytes()
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of encoded message failed: %v", err)
		}
		if out2 := m2.Bytes(); !bytes.Equal(out, out2) {
			t.Fatalf("encoding is not stable:\n%q\n%q", out, out2)
		}
		m.Walk(func(p string, v Value) bool {
			_ = v.Text()
			if got, err := m.GetString(p); err != nil || got != v.String() {
				t.Fatalf("Get(%s) = %q, %v; Walk gave %q", p, got, err, v.String())
			}
			return true
		})
		_ = m.CheckHeader()
		_ = BuildAck(m, AE, "x", []ErrDetail{{Segment: "PID", Field: 3, Code: 207}}, AckOptions{}).Bytes()
	})
}

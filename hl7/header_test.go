package hl7

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue 25.4: a sender named only by an OID must keep its universal id.
func TestHeaderWholeHD(t *testing.T) {
	m := mustParse(t, "MSH|^~\\&|^2.16.840.1.114222.4.1.111^ISO|LAB^1.2.3^iso|APP| ^urn:x^DNS |2024||ADT^A01|C1|P|2.5.1\r")
	h := m.Header()
	if h.SendingApp.Namespace != "" || h.SendingApp.UniversalID != "2.16.840.1.114222.4.1.111" || h.SendingApp.UniversalIDType != "ISO" {
		t.Errorf("MSH-3 = %+v", h.SendingApp)
	}
	for _, tt := range []struct {
		hd   HD
		want string
	}{
		{h.SendingApp, "^2.16.840.1.114222.4.1.111^ISO"},
		{h.SendingFacility, "LAB^1.2.3^ISO"}, // HD.3 is a table 0301 code: case folded
		{h.ReceivingApp, "APP"},              // namespace only: exactly MSH-5.1
		{h.ReceivingFacility, "^urn:x^DNS"},  // components trimmed
		{HD{Namespace: "A|B^C\\D"}, `A\F\B\S\C\E\D`},
		{HD{Namespace: "x", UniversalID: "  "}, "x"},
		{HD{}, ""},
	} {
		if got := tt.hd.Normalized(); got != tt.want {
			t.Errorf("%+v.Normalized() = %q, want %q", tt.hd, got, tt.want)
		}
	}
	// \F\ decodes to "|": it must not reach the rendering raw.
	esc := mustParse(t, "MSH|^~\\&|A\\F\\B|F|||2024||ADT^A01|C1|P|2.5.1\r").Header()
	if got := esc.SendingApp.Normalized(); got != `A\F\B` || strings.Contains(got, "|") {
		t.Errorf("escaped namespace rendered %q", got)
	}
	if !(HD{Namespace: " "}).IsZero() || (HD{UniversalID: "1.2"}).IsZero() {
		t.Error("IsZero")
	}
}

// Issue 25.5: every message with a recognisable MSH and field separator
// can be answered, with an ERR naming what is wrong.
func TestReadHeaderAnswersBrokenHeaders(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name, in   string
		field      int
		code       int
		controlID  string
		sendingApp string // MSH-3 of the ACK (the inbound MSH-5)
	}{
		{"bare MSH", "MSH|", 2, ErrCodeRequiredMissing, "", ""},
		{"empty MSH-2", "MSH||EPIC|HOSP|CRM|FAC|2024||ADT^A01|C7|P|2.5.1\rPID|1\r", 2, ErrCodeRequiredMissing, "C7", "CRM"},
		{"doubled escape char", "MSH|^~\\\\&|EPIC|HOSP|CRM|FAC|2024||ADT^A01|C8|P|2.5.1\rPID|1\r", 2, ErrCodeDataType, "C8", "CRM"},
		{"alnum in MSH-2", "MSH|^~A&|EPIC|HOSP|CRM^1.2^ISO|FAC|2024||ADT^A01|C9|P|2.5.1\r", 2, ErrCodeDataType, "C9", "CRM^1.2^ISO"},
		{"UTF-16 declared", "MSH|^~\\&|EPIC|HOSP|CRM|FAC|2024||ADT^A01|C10|P|2.5.1||||||UNICODE UTF-16\r", 18, ErrCodeTableValue, "C10", "CRM"},
		{"multi-byte GB 18030", "MSH|^~\\&|EPIC|HOSP|CRM|FAC|2024||ADT^A01|C11|P|2.5.1||||||GB 18030-2000\rPID|1||\x81\x30\x81\x30\r", 18, ErrCodeTableValue, "C11", "CRM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseHeader([]byte(tt.in)); err == nil {
				t.Fatal("ParseHeader accepts it: the test is void")
			}
			m, problems, ok := ReadHeader([]byte(tt.in))
			if !ok {
				t.Fatal("not answerable")
			}
			if len(problems) == 0 || problems[0].Field != tt.field || problems[0].Code != tt.code {
				t.Fatalf("problems = %v", problems)
			}
			details := []ErrDetail{problems[0].Detail()}
			ack := BuildAck(m, AR, "rejected", details, AckOptions{ControlID: "A1", Time: at})
			back, err := Parse(ack.Bytes())
			if err != nil {
				t.Fatalf("ACK %q does not parse: %v", ack.Bytes(), err)
			}
			code, id, _, _ := back.Ack()
			if code != AR || id != tt.controlID {
				t.Errorf("ACK = %s %q, want AR %q", code, id, tt.controlID)
			}
			if got := back.Get(Path{Segment: "MSH", Field: 3}).Raw(); tt.sendingApp != "" && got != tt.sendingApp {
				t.Errorf("ACK MSH-3 = %q, want %q", got, tt.sendingApp)
			}
			if loc, _ := back.GetString("ERR-2"); loc != "MSH^1^"+strconv.Itoa(tt.field) {
				t.Errorf("ERR-2 = %q", loc)
			}
		})
	}
	for _, in := range []string{"", "hello", "MSH", "MSH\r", "MSHA|B", "PID|1\r", "MSH \x01"} {
		if _, _, ok := ReadHeader([]byte(in)); ok {
			t.Errorf("ReadHeader(%q) ok: nothing there to answer", in)
		}
	}
	// A good header reads as ParseHeader reads it, without problems.
	if m, problems, ok := ReadHeader([]byte(adtA01)); !ok || len(problems) != 0 || m.Header().ControlID != "CTRL123" {
		t.Errorf("good header: %v %v", problems, ok)
	}
}

// Issue 25.5: table 0211 values whose text is ASCII-compatible are read.
func TestCharsetUnicodeAndAsciiCompatible(t *testing.T) {
	for _, cs := range []string{"UNICODE", "UNICODE UTF-8", "ASCII", "8859/1", "ISO IR87", "GB 18030-2000", "KS X 1001", "BIG-5", "unicode"} {
		in := "MSH|^~\\&|A|B|C|D|2024||ADT^A08|X|P|2.5||||||" + cs + "\rPID|1||1||M\u00fcller\r"
		m, err := Parse([]byte(in))
		if err != nil {
			t.Errorf("MSH-18 %q: %v", cs, err)
			continue
		}
		if got, _ := m.GetString("PID-5"); got != "M\u00fcller" {
			t.Errorf("MSH-18 %q: PID-5 = %q", cs, got)
		}
		if string(m.Bytes()) != in {
			t.Errorf("MSH-18 %q: re-encoding changed the bytes", cs)
		}
	}
	for _, cs := range []string{"UNICODE UTF-16", "UNICODE UTF-32", "UNICODE SOMETHING"} {
		if _, err := Parse([]byte("MSH|^~\\&|A|B|C|D|2024||ADT^A08|X|P|2.5||||||" + cs + "\r")); err == nil {
			t.Errorf("MSH-18 %q must be refused", cs)
		}
	}
}

// Issue 25.5: an ACK's own MSH-7 never holds one of the message's
// delimiters ('.' as field separator made the ACK's fraction a field).
func TestAckTimeAvoidsDelimiters(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 123e6, time.FixedZone("", -4*3600))
	for _, tt := range []struct{ in, want string }{
		{"MSH.^~\\&.A.B.C.D.2024..ADT^A01.C1.P\r", "20240506070809-0400"},
		{"MSH|^~\\-|A|B|C|D|2024||ADT^A01|C1|P|2.5.1\r", "20240506070809.123"},
		{"MSH|^~\\&|A|B|C|D|2024||ADT^A01|C1|P|2.5.1\r", "20240506070809.123-0400"},
	} {
		in := mustParse(t, tt.in)
		ack := BuildAck(in, AA, "", nil, AckOptions{ControlID: "A1", Time: at})
		back, err := Parse(ack.Bytes())
		if err != nil {
			t.Fatalf("%q: %v", ack.Bytes(), err)
		}
		if got := back.Get(Path{Segment: "MSH", Field: 7}).Raw(); got != tt.want {
			t.Errorf("ACK of %q: MSH-7 = %q, want %q", tt.in[:8], got, tt.want)
		}
		if code, id, _, _ := back.Ack(); code != AA || id != "C1" {
			t.Errorf("ACK of %q: MSA = %s %s (%q)", tt.in[:8], code, id, ack.Bytes())
		}
	}
}

// Issue 25.6: MSH-15/MSH-16 and table 0155. A blank MSH-15 (a corpus
// sample pads it with a space) is not valued: original mode.
func TestAckConditions(t *testing.T) {
	blank := mustParse(t, "MSH|^~\\&|A|B|C|D|2024||ADT^A01|C1|P|2.3||| \r").Header()
	if blank.Enhanced() || len(blank.Check()) != 0 {
		t.Errorf("blank MSH-15: enhanced=%v problems=%v", blank.Enhanced(), blank.Check())
	}
	h := mustParse(t, "MSH|^~\\&|A|B|C|D|2024||ADT^A01|C1|P|2.5|||AL|XX\r").Header()
	if !h.Enhanced() {
		t.Error("MSH-15 AL is enhanced mode")
	}
	if p := h.Check(); len(p) != 1 || p[0].Field != 16 || p[0].Code != ErrCodeTableValue {
		t.Errorf("MSH-16 XX: problems = %v", p)
	}
	for _, tt := range []struct {
		c           AckCondition
		onOK, onErr bool
	}{{AckAlways, true, true}, {AckNever, false, false}, {AckOnError, false, true}, {AckOnSuccess, true, false}, {"", false, false}} {
		if tt.c.Wants(true) != tt.onOK || tt.c.Wants(false) != tt.onErr {
			t.Errorf("%q: Wants(true)=%v Wants(false)=%v", tt.c, tt.c.Wants(true), tt.c.Wants(false))
		}
	}
}

// KeyUnescape gives back what KeyEscape was given, whatever it holds
// (write-back reads the MRN and authority back out of a stored key).
func TestKeyUnescapeRoundTrip(t *testing.T) {
	for _, s := range []string{"", "M123", `A|B`, `A^B`, `C:\dir`, `\E\`, `\F\|^\S\`, `x\`, `\\`, "naïve|ü"} {
		esc := KeyEscape(s)
		if strings.ContainsAny(esc, "|^") {
			t.Errorf("KeyEscape(%q) = %q holds a separator", s, esc)
		}
		if got := KeyUnescape(esc); got != s {
			t.Errorf("KeyUnescape(KeyEscape(%q)) = %q", s, got)
		}
	}
}

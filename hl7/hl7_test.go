package hl7

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const adtA01 = "MSH|^~\\&|EPIC|HOSP|EHRBRIDGE|CRM|20240101120000||ADT^A01^ADT_A01|CTRL123|P|2.5.1\r" +
	"EVN|A01|20240101120000\r" +
	"PID|1||MRN001^^^HOSP^MR~ALT9^^^OTHER^PI||DOE^JOHN^Q||19800101|M|||1 MAIN ST^^TOWN^ST^12345||555-0100\r" +
	"PV1|1|I|2000^2012^01||||004777^ATTEND^AARON^A\r"

func mustParse(t *testing.T, s string) *Message {
	t.Helper()
	m, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

func TestGetPaths(t *testing.T) {
	m := mustParse(t, adtA01+
		"OBX|1|ST|CODE1||first\rOBX|2|TX|CODE2||second \\F\\ value\\E\\x\r"+
		"ZPD|1|custom^z&sub\r")
	tests := []struct{ path, want string }{
		{"MSH-1", "|"},
		{"MSH-2", "^~\\&"},
		{"MSH-3", "EPIC"},
		{"MSH-9", "ADT^A01^ADT_A01"}, // composite: encoded form
		{"MSH-9.1", "ADT"},
		{"MSH-9.2", "A01"},
		{"MSH-10", "CTRL123"},
		{"MSH-12", "2.5.1"},
		{"PID-3", "MRN001^^^HOSP^MR"}, // first repetition
		{"PID-3.1", "MRN001"},
		{"PID-3[1].4", "HOSP"},
		{"PID-3[2].1", "ALT9"},
		{"PID-3[2].5", "PI"},
		{"PID-3[3].1", ""},
		{"PID-5.1", "DOE"},
		{"PID-5.2", "JOHN"},
		{"PID-5.7", ""},
		{"PID-8", "M"},
		{"PID-11.3", "TOWN"},
		{"PID-99", ""},
		{"pid-5.1", "DOE"}, // segment ids are case-insensitive
		{"OBX-5", "first"},
		{"OBX[1]-5", "first"},
		{"OBX[2]-5", "second | value\\x"},
		{"OBX[3]-5", ""},
		{"ZPD-2.1", "custom"},
		{"ZPD-2.2", "z&sub"},
		{"ZPD-2.2.1", "z"},
		{"ZPD-2.2.2", "sub"},
		{"NK1-1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := m.GetString(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("%s = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

func TestParsePath(t *testing.T) {
	good := map[string]Path{
		"PID-5":      {Segment: "PID", Field: 5},
		"PID-5.1":    {Segment: "PID", Field: 5, Component: 1},
		"PID-3[2].1": {Segment: "PID", Field: 3, Rep: 2, Component: 1},
		"PID-3.4.2":  {Segment: "PID", Field: 3, Component: 4, Subcomponent: 2},
		"OBX[2]-5":   {Segment: "OBX", SegmentRep: 2, Field: 5},
		"ZX1-1":      {Segment: "ZX1", Field: 1},
		"MSH-9.2":    {Segment: "MSH", Field: 9, Component: 2},
	}
	for s, want := range good {
		p, err := ParsePath(s)
		if err != nil || p != want {
			t.Errorf("ParsePath(%q) = %+v, %v; want %+v", s, p, err, want)
		}
		if p.String() != strings.ToUpper(s[:3])+s[3:] {
			t.Errorf("Path.String() = %q, want %q", p.String(), s)
		}
	}
	bad := []string{"", "PI-5", "PID", "PID-", "PID-0", "PID-a", "PID-5.", "PID-5..1", "PID[0]-1", "PID[2-1",
		"PID-5.1.2.3", "1ID-5", "PID-5 ", "MSH-2.1", "MSH-1[2]", "PID-999999"}
	for _, s := range bad {
		if _, err := ParsePath(s); err == nil {
			t.Errorf("ParsePath(%q) succeeded, want error", s)
		}
	}
}

func TestSegmentTerminatorsAndBOM(t *testing.T) {
	base := strings.TrimSuffix(adtA01, "\r")
	variants := map[string]string{
		"CR":         base,
		"LF":         strings.ReplaceAll(base, "\r", "\n"),
		"CRLF":       strings.ReplaceAll(base, "\r", "\r\n"),
		"mixed":      strings.Replace(strings.Replace(base, "\r", "\n", 1), "\r", "\r\n", 1),
		"BOM":        "\xEF\xBB\xBF" + base,
		"trailingCR": base + "\r\r\n\n",
		"blankLines": strings.ReplaceAll(base, "\r", "\r\n\r\n"),
		"leadingNL":  "\r\n" + base,
	}
	for name, in := range variants {
		t.Run(name, func(t *testing.T) {
			m := mustParse(t, in)
			if len(m.Segments()) != 4 {
				t.Fatalf("segments = %d, want 4", len(m.Segments()))
			}
			if got := string(m.Bytes()); got != adtA01 {
				t.Errorf("Bytes() = %q, want %q", got, adtA01)
			}
		})
	}
}

func TestRoundTripKeepsTrailingEmptyFields(t *testing.T) {
	in := "MSH|^~\\&|A|B|C|D|20240101||ADT^A08|X1|P|2.3||||||\rPID|1||123||||||||\rZZZ\rNTE|\r"
	m := mustParse(t, in)
	if got := string(m.Bytes()); got != in {
		t.Errorf("Bytes() = %q, want %q", got, in)
	}
	if n := m.Segment("PID", 1).NumFields(); n != 11 {
		t.Errorf("PID NumFields = %d, want 11", n)
	}
}

func TestDelimiters(t *testing.T) {
	t.Run("custom", func(t *testing.T) {
		m := mustParse(t, "MSH#*!$%#A#B#C#D#2024##ADT*A01#X#P#2.5\rPID#1##ID1*X*Y%SUB!ID2##NAME$F$x\r")
		d := m.Delimiters()
		if d.Field != '#' || d.Component != '*' || d.Repetition != '!' || d.Escape != '$' || d.Subcomponent != '%' {
			t.Fatalf("delimiters = %+v", d)
		}
		for path, want := range map[string]string{"MSH-1": "#", "MSH-2": "*!$%", "MSH-9.2": "A01", "PID-3.3.2": "SUB", "PID-3[2]": "ID2", "PID-5": "NAME#x"} {
			if got, _ := m.GetString(path); got != want {
				t.Errorf("%s = %q, want %q", path, got, want)
			}
		}
	})
	t.Run("truncation character", func(t *testing.T) {
		m := mustParse(t, "MSH|^~\\&#|A|B|C|D|2024||ADT^A01|X|P|2.7\rPID|1||a\\P\\b#c\r")
		if m.Delimiters().Truncation != '#' {
			t.Fatalf("truncation = %q", m.Delimiters().Truncation)
		}
		if got, _ := m.GetString("MSH-2"); got != "^~\\&#" {
			t.Errorf("MSH-2 = %q", got)
		}
		if got, _ := m.GetString("PID-3"); got != "a#b#c" {
			t.Errorf("PID-3 = %q, want a#b#c", got)
		}
		if got := Escape("x#y", m.Delimiters()); got != "x\\P\\y" {
			t.Errorf("Escape = %q", got)
		}
	})
	t.Run("fewer encoding characters", func(t *testing.T) {
		m := mustParse(t, "MSH|^~|A|B|C|D|2024||ADT^A01|X|P|2.3\rPID|1||a\\b&c\r")
		if got, _ := m.GetString("PID-3"); got != "a\\b&c" {
			t.Errorf("PID-3 = %q, want the text unchanged (no escape or subcomponent character)", got)
		}
	})
}

func TestEscapes(t *testing.T) {
	m := mustParse(t, "MSH|^~\\&|A|B|C|D|2024||ORU^R01|X|P|2.5.1||||||UNICODE UTF-8\r"+
		"OBX|1|FT|C||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f|x\r"+
		"OBX|2|FT|C||line1\\.br\\line2\\.sp\\line3\\H\\bold\\N\\\r"+
		"OBX|3|ST|C||\\X41C3A9\\ hex\r"+
		"OBX|4|ST|C||unterminated \\F and lone \\\r"+
		"OBX|5|ST|C||\"\"\r"+
		"OBX|6|ST|C||\r"+
		"OBX|7|ST|C||\\E\\.br\\E\\ literal\r")
	tests := []struct{ path, str, text string }{
		{"OBX[1]-5", "a|b^c&d~e\\f", "a|b^c&d~e\\f"},
		{"OBX[2]-5", "line1\\.br\\line2\\.sp\\line3\\H\\bold\\N\\", "line1\nline2\nline3bold"},
		{"OBX[3]-5", "Aé hex", "Aé hex"},
		{"OBX[4]-5", "unterminated \\F and lone \\", "unterminated \\F and lone \\"},
		{"OBX[5]-5", `""`, ""},
		{"OBX[7]-5", "\\.br\\ literal", "\\.br\\ literal"},
	}
	for _, tt := range tests {
		v := m.Get(MustPath(tt.path))
		if v.String() != tt.str {
			t.Errorf("%s String() = %q, want %q", tt.path, v.String(), tt.str)
		}
		if v.Text() != tt.text {
			t.Errorf("%s Text() = %q, want %q", tt.path, v.Text(), tt.text)
		}
	}
	null, empty, absent := m.Get(MustPath("OBX[5]-5")), m.Get(MustPath("OBX[6]-5")), m.Get(MustPath("OBX[6]-9"))
	if !null.IsNull() || null.IsEmpty() {
		t.Error(`"" must be null and not empty`)
	}
	if empty.IsNull() || !empty.IsEmpty() || absent.IsNull() || !absent.IsEmpty() {
		t.Error("empty and absent values must be empty and not null")
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	d := DefaultDelimiters
	for _, s := range []string{"plain", "a|b^c~d\\e&f", "\\F\\ literal", "multi\nline\r\nx", "", "ünïcödé"} {
		m := NewMessage("ADT", "A08", "", "2.5.1")
		if err := m.Set(MustPath("NTE-3"), s); err != nil {
			t.Fatal(err)
		}
		back := mustParse(t, string(m.Bytes()))
		want := s
		if got := back.Get(MustPath("NTE-3")).String(); got != want {
			t.Errorf("round trip of %q gave %q", s, got)
		}
	}
	if got := EscapeText("one\r\ntwo\nthree|x", d); got != "one\\.br\\two\\.br\\three\\F\\x" {
		t.Errorf("EscapeText = %q", got)
	}
}

func TestCharsets(t *testing.T) {
	latin1 := []byte("MSH|^~\\&|A|B|C|D|2024||ADT^A08|X|P|2.5||||||8859/1\rPID|1||1||M\xfcller^J\xe9r\xf4me\r")
	m, err := Parse(latin1)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.GetString("PID-5.1"); got != "Müller" {
		t.Errorf("PID-5.1 = %q, want Müller", got)
	}
	if m.Charset() == "UTF-8" {
		t.Errorf("charset = %s, want ISO 8859-1", m.Charset())
	}
	if !bytes.Equal(m.Bytes(), latin1) {
		t.Errorf("latin-1 message did not re-encode byte for byte")
	}
	if err := m.Set(MustPath("PID-5.2"), "Zoë"); err != nil {
		t.Errorf("Set of a latin-1 character: %v", err)
	}
	if err := m.Set(MustPath("PID-5.2"), "日本"); err == nil {
		t.Error("Set of text outside ISO 8859-1 must fail")
	}

	// An acknowledgment of a latin-1 message with an application name
	// outside ISO 8859-1 degrades that character instead of failing.
	ack := BuildAck(m, AA, "", nil, AckOptions{SendingApp: "Zoë日"})
	if got := ack.Bytes(); !bytes.Contains(got, []byte("Zo\xeb?")) {
		t.Errorf("latin-1 ack = %q", got)
	}

	mislabelled := "MSH|^~\\&|A|B|C|D|2024||ADT^A08|X|P|2.5||||||8859/1\rPID|1||1||Müller\r"
	m = mustParse(t, mislabelled)
	if got, _ := m.GetString("PID-5"); got != "Müller" || string(m.Bytes()) != mislabelled {
		t.Errorf("UTF-8 labelled 8859/1: PID-5 = %q", got)
	}

	undeclaredLatin1 := []byte("MSH|^~\\&|A|B|C|D|2024||ADT^A08|X|P|2.3\rPID|1||1||Gar\xe7on\r")
	m, err = Parse(undeclaredLatin1)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.GetString("PID-5"); got != "Garçon" || !bytes.Equal(m.Bytes(), undeclaredLatin1) {
		t.Errorf("undeclared latin-1: PID-5 = %q", got)
	}

	hexLatin1 := []byte("MSH|^~\\&|A|B|C|D|2024||ADT^A08|X|P|2.5||||||8859/1\rPID|1||1||\\XE9\\t\xe9\r")
	m, _ = Parse(hexLatin1)
	if got, _ := m.GetString("PID-5"); got != "été" {
		t.Errorf("hex escape in latin-1 = %q, want été", got)
	}

	if _, err := Parse([]byte("MSH|^~\\&|A|B|C|D|2024||ADT^A08|X|P|2.5||||||UNICODE UTF-16\r")); err == nil {
		t.Error("UTF-16 must be refused")
	}
	if _, err := Parse([]byte("MSH|^~\\&|A|B|C|D|2024||ADT^A08|X|P|2.5||||||8859/99\r")); err == nil {
		t.Error("unknown 8859 part must be refused")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in   string
		seg, field int
		want       string
	}{
		{"empty", "", 0, 0, "empty message"},
		{"whitespace", "\r\n \r", 0, 0, "empty message"},
		{"no MSH", "PID|1\r", 0, 0, "does not start with an MSH"},
		{"batch", "FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|A\r", 0, 0, "batch file"},
		{"bare MSH", "MSH|", 1, 2, "no field separator"},
		{"MSH only", "MSH", 1, 2, "no field separator"},
		{"empty MSH-2", "MSH||A|B", 1, 2, "MSH-2 (encoding characters) is empty"},
		{"alnum delimiter", "MSH|^~A&|A|B", 1, 2, "non-alphanumeric"},
		{"duplicate delimiter", "MSH|^^\\&|A", 1, 2, "used twice"},
		{"too many", "MSH|^~\\&#!|A", 1, 2, "at most 5"},
		{"bad segment id", "MSH|^~\\&|A\rpid|1\r", 2, 0, "segment id must be"},
		{"long segment id", "MSH|^~\\&|A\rPIDX|1\r", 2, 0, "segment id must be"},
		{"second MSH", "MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\r", 3, 0, "second MSH"},
		{"wrapped line", "MSH|^~\\&|A\rOBX|1|TX|||some text\rcontinued here\r", 3, 0, "segment id must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *ParseError", err)
			}
			if pe.Segment != tt.seg || pe.Field != tt.field || !strings.Contains(pe.Error(), tt.want) {
				t.Errorf("err = %q (segment %d field %d), want segment %d field %d containing %q", pe, pe.Segment, pe.Field, tt.seg, tt.field, tt.want)
			}
		})
	}
}

// Errors must locate a problem without quoting the message: they get logged.
func TestParseErrorsDoNotQuoteContent(t *testing.T) {
	inputs := []string{
		"MSH|^~\\&|A\rSECRETNAME DOE|1\r",
		"MSH|^~\\&|A\rPID|1||SECRETNAME\rSECRETNAME\r",
		"SECRETNAME|^~\\&",
		"MSH|^~\\&|A|B|C|D|2024||ADT^A08|X|P|2.5||||||UNICODE SECRETNAME",
	}
	for _, in := range inputs {
		_, err := Parse([]byte(in))
		if err == nil {
			t.Fatalf("Parse(%q) succeeded", in)
		}
		if strings.Contains(err.Error(), "SECRETNAME") {
			t.Errorf("error quotes content: %v", err)
		}
	}
}

func TestParseHeader(t *testing.T) {
	in := "MSH|^~\\&|EPIC|HOSP|R|F|2024||ADT^A01|C9|P|2.4\rPID|broken\rbad line\r"
	if _, err := Parse([]byte(in)); err == nil {
		t.Fatal("Parse should fail on the bad segment")
	}
	h, err := ParseHeader([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Header(); got.ControlID != "C9" || got.SendingApp.Namespace != "EPIC" || got.Version != "2.4" || len(h.Segments()) != 1 {
		t.Errorf("header = %+v", got)
	}
}

func TestSplit(t *testing.T) {
	one := "MSH|^~\\&|A|B|C|D|2024||ADT^A01|M1|P|2.5\nPID|1\n"
	two := "MSH|^~\\&|A|B|C|D|2024||ADT^A01|M2|P|2.5\r\nPID|2\r\n"
	tests := []struct {
		name, in string
		ids      []string
	}{
		{"single LF", one, []string{"M1"}},
		{"two messages", one + two, []string{"M1", "M2"}},
		{"BOM", "\xEF\xBB\xBF" + one, []string{"M1"}},
		{"batch", "FHS|^~\\&|A\nBHS|^~\\&|A\n" + one + two + "BTS|2\nFTS|1\n", []string{"M1", "M2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := Split([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(parts) != len(tt.ids) {
				t.Fatalf("got %d messages, want %d", len(parts), len(tt.ids))
			}
			for i, p := range parts {
				if bytes.ContainsAny(p, "\n") {
					t.Errorf("message %d still has LF", i)
				}
				m := mustParse(t, string(p))
				if m.Header().ControlID != tt.ids[i] {
					t.Errorf("message %d MSH-10 = %q", i, m.Header().ControlID)
				}
			}
		})
	}
	for _, bad := range []string{"", "\n\n", "PID|1\nMSH|^~\\&|A\n", "hello"} {
		if _, err := Split([]byte(bad)); err == nil {
			t.Errorf("Split(%q) succeeded", bad)
		}
	}
}

func TestSet(t *testing.T) {
	m := mustParse(t, adtA01)
	steps := []struct{ path, value, wantField string }{
		{"PID-5.2", "JANE", "DOE^JANE^Q"},
		{"PID-5.5", "JR", "DOE^JANE^Q^^JR"},
		{"PID-3[2].4", "NEW", "MRN001^^^HOSP^MR~ALT9^^^NEW^PI"},
		{"PID-3[3].1", "THIRD", "MRN001^^^HOSP^MR~ALT9^^^NEW^PI~THIRD"},
		{"PID-3.4.2", "1.2.3", "MRN001^^^HOSP&1.2.3^MR~ALT9^^^NEW^PI~THIRD"},
		{"PID-8", "F|X", "F\\F\\X"},
		{"PID-30", "Y", "Y"},
	}
	for _, s := range steps {
		if err := m.Set(MustPath(s.path), s.value); err != nil {
			t.Fatalf("Set %s: %v", s.path, err)
		}
		p := MustPath(s.path)
		if got := m.Segment("PID", 1).Field(p.Field); got != s.wantField {
			t.Errorf("after Set %s: field = %q, want %q", s.path, got, s.wantField)
		}
	}
	// Growing PID must not disturb the next segment (shared backing array).
	if got, _ := m.GetString("PV1-2"); got != "I" {
		t.Errorf("PV1-2 = %q after growing PID", got)
	}
	if err := m.Set(MustPath("MSH-1"), "x"); err == nil {
		t.Error("setting MSH-1 must fail")
	}
	if err := m.Set(MustPath("OBX[2]-5"), "v"); err != nil {
		t.Fatal(err)
	}
	if m.Count("OBX") != 2 {
		t.Errorf("Set on OBX[2] should append two OBX segments, have %d", m.Count("OBX"))
	}
	if err := m.SetRaw(MustPath("NTE-3"), "a|b"); err == nil {
		t.Error("SetRaw with a field separator must fail")
	}
	back := mustParse(t, string(m.Bytes()))
	if got, _ := back.GetString("PID-8"); got != "F|X" {
		t.Errorf("PID-8 after round trip = %q", got)
	}
}

func TestBuildAck(t *testing.T) {
	in := mustParse(t, adtA01)
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("", -4*3600))
	ack := BuildAck(in, AA, "", nil, AckOptions{ControlID: "ACK1", Time: at})
	want := "MSH|^~\\&|EHRBRIDGE|CRM|EPIC|HOSP|20240506070809.000-0400||ACK^A01^ACK|ACK1|P|2.5.1\rMSA|AA|CTRL123\r"
	if got := string(ack.Bytes()); got != want {
		t.Errorf("AA ack =\n%q\nwant\n%q", got, want)
	}

	errs := []ErrDetail{{Segment: "MSH", Field: 10, Code: ErrCodeRequiredMissing, Text: "control id missing"}}
	ack = BuildAck(in, AR, "rejected", errs, AckOptions{ControlID: "ACK2", Time: at})
	if got := string(ack.Bytes()); !strings.HasSuffix(got, "MSA|AR|CTRL123|rejected\rERR||MSH^1^10|101^Required field missing^HL70357|E||||control id missing\r") {
		t.Errorf("v2.5 AR ack = %q", got)
	}
	code, id, text, ok := ack.Ack()
	if !ok || code != AR || id != "CTRL123" || text != "rejected" {
		t.Errorf("Ack() = %v %v %v %v", code, id, text, ok)
	}

	v23 := mustParse(t, strings.Replace(adtA01, "2.5.1", "2.3", 1))
	ack = BuildAck(v23, AE, "failed", []ErrDetail{{Segment: "PID", Field: 3, Code: ErrCodeInternal}}, AckOptions{ControlID: "A3", Time: at})
	if got := string(ack.Bytes()); !strings.HasSuffix(got, "MSA|AE|CTRL123|failed\rERR|PID^1^3^207&Application internal error&HL70357\r") {
		t.Errorf("v2.3 AE ack = %q", got)
	}

	// An acknowledgment echoes the inbound character set and delimiters.
	custom := mustParse(t, "MSH#*!$%#A#B#C#D#2024##ORU*R01#Z9#T#2.6######UTF8#\rPID#1\r")
	ack = BuildAck(custom, CA, "", nil, AckOptions{ControlID: "A4", Time: at})
	if got := string(ack.Bytes()); got != "MSH#*!$%#C#D#A#B#20240506070809.000-0400##ACK*R01*ACK#A4#T#2.6######UTF8\rMSA#CA#Z9\r" {
		t.Errorf("custom delimiter ack = %q", got)
	}
	// A reply without trigger, and a long text.
	noTrigger := mustParse(t, "MSH|^~\\&|A|B|C|D|2024||ACK|Q1|P|2.5\r")
	ack = BuildAck(noTrigger, AE, strings.Repeat("x", 200), nil, AckOptions{})
	if got, _ := ack.GetString("MSH-9"); got != "ACK" {
		t.Errorf("MSH-9 = %q", got)
	}
	if _, _, text, _ := ack.Ack(); len(text) != 80 {
		t.Errorf("MSA-3 length = %d, want 80", len(text))
	}
	if id := ack.Header().ControlID; len(id) != 20 {
		t.Errorf("generated control id %q", id)
	}
}

func TestCheckHeader(t *testing.T) {
	tests := map[string][]int{
		"MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P|2.5\r":   nil,
		"MSH|^~\\&|A|B|C|D|2024|||X|P|2.5\r":          {9},
		"MSH|^~\\&|A|B|C|D|2024||ADT^A01||P|2.5\r":    {10},
		"MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|Q|2.5\r":   {11},
		"MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P|3.0\r":   {12},
		"MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P\r":       {12},
		"MSH|^~\\&|A|B|C|D|2024|||||\r":               {9, 10, 11, 12},
		"MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|T^T|2.3\r": nil,
	}
	for in, want := range tests {
		got := mustParse(t, in).CheckHeader()
		var fields []int
		for _, e := range got {
			fields = append(fields, e.Field)
		}
		if fmt.Sprint(fields) != fmt.Sprint(want) {
			t.Errorf("CheckHeader(%q) fields = %v, want %v", in, fields, want)
		}
	}
}

func TestNewMessage(t *testing.T) {
	m := NewMessage("MDM", "T02", "MDM_T02", "2.5.1")
	_ = m.Set(MustPath("PID-3.1"), "MRN1")
	obx, err := m.AddSegment("OBX")
	if err != nil {
		t.Fatal(err)
	}
	_ = obx.SetField(1, "1")
	_ = obx.SetField(2, "TX")
	_ = obx.SetFieldRaw(5, EscapeText("Called patient.\nFollow-up & review", m.Delimiters()))
	back := mustParse(t, string(m.Bytes()))
	h := back.Header()
	if h.Type != "MDM" || h.Trigger != "T02" || h.Structure != "MDM_T02" || h.Version != "2.5.1" || len(h.ControlID) != 20 {
		t.Errorf("header = %+v", h)
	}
	if got := back.Get(MustPath("OBX-5")).Text(); got != "Called patient.\nFollow-up & review" {
		t.Errorf("OBX-5 text = %q", got)
	}
	if _, err := m.AddSegment("MSH"); err == nil {
		t.Error("adding a second MSH must fail")
	}
}

func TestWalk(t *testing.T) {
	m := mustParse(t, adtA01+"OBX|1|ST|C||v1\rOBX|2|ST|C||v2\r")
	var got []string
	m.Walk(func(p string, v Value) bool {
		got = append(got, p+"="+v.String())
		return true
	})
	joined := strings.Join(got, "\n")
	for _, want := range []string{"MSH-1=|", "MSH-2=^~\\&", "MSH-9.2=A01", "PID-3[1].1=MRN001", "PID-3[2].4=OTHER",
		"PID-5.1=DOE", "PID-8=M", "OBX[1]-5=v1", "OBX[2]-5=v2", "PV1-3.2=2012"} {
		if !strings.Contains(joined+"\n", want+"\n") {
			t.Errorf("Walk output lacks %q", want)
		}
	}
	// Every walked path reads back the walked value.
	m.Walk(func(p string, v Value) bool {
		if got, err := m.GetString(p); err != nil || got != v.String() {
			t.Errorf("Get(%s) = %q, %v; Walk gave %q", p, got, err, v.String())
		}
		return true
	})
}

func TestFormatDoesNotLeak(t *testing.T) {
	m := mustParse(t, adtA01)
	for _, s := range []string{fmt.Sprint(m), fmt.Sprintf("%v %+v %#v %s", m, m, m, m), fmt.Sprint(m.Segment("PID", 1))} {
		if strings.Contains(s, "DOE") || strings.Contains(s, "MRN001") {
			t.Errorf("formatted message leaks content: %s", s)
		}
	}
}

func TestRepetitionsAndComponents(t *testing.T) {
	m, err := Parse([]byte("MSH|^~\\&|A|B|C|D|20260105||ADT^A01|1|P|2.5.1\rPID|1||1^^^H&1.2&ISO^MR~2^^^S^SS~~3\\T\\x^^^^PI\r"))
	if err != nil {
		t.Fatal(err)
	}
	reps := slices.Collect(m.Segment("PID", 1).Repetitions(3))
	if len(reps) != 4 {
		t.Fatalf("%d repetitions", len(reps))
	}
	cases := []struct{ got, want string }{
		{reps[0].Component(1).String(), "1"},
		{reps[0].Component(4).Subcomponent(2).String(), "1.2"},
		{reps[0].Component(4).Raw(), "H&1.2&ISO"},
		{reps[1].Component(5).String(), "SS"},
		{reps[2].Raw(), ""},
		{reps[3].Component(1).String(), "3&x"},
		{reps[3].Component(9).Raw(), ""},
	}
	for i, c := range cases {
		if c.got != c.want {
			t.Errorf("case %d: %q, want %q", i, c.got, c.want)
		}
	}
	if r := slices.Collect(m.Segment("PID", 1).Repetitions(4)); r != nil {
		t.Errorf("empty field has repetitions %v", r)
	}
	if r := slices.Collect(m.Segment("MSH", 1).Repetitions(2)); len(r) != 1 || r[0].String() != "^~\\&" {
		t.Errorf("MSH-2 repetitions %v", r)
	}
}

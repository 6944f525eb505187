package ehr

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// conn is one client connection to a source, for exchanges that answer
// with several frames or none.
type conn struct {
	t         *testing.T
	c         net.Conn
	rd        *mllp.Reader
	sentinels int // sentinel messages sent (each one a stored message)
}

func dial(t *testing.T, addr string) *conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &conn{t: t, c: c, rd: mllp.NewReader(c, 0)}
}

// exchange sends payload and returns every frame that answers it: an
// original-mode sentinel message follows it, and what arrives before the
// sentinel's acknowledgment is payload's (none is a valid answer in
// enhanced mode, which a read timeout could not tell from a slow one).
func (c *conn) exchange(payload string) [][]byte {
	c.t.Helper()
	c.sentinels++
	return c.untilSentinel(payload, fmt.Sprintf("SENTINEL%d", c.sentinels))
}

// codes returns "MSA-1/MSA-2" of each frame.
func codes(t *testing.T, frames [][]byte) []string {
	t.Helper()
	var out []string
	for _, f := range frames {
		m, err := hl7.Parse(f)
		if err != nil {
			t.Fatalf("ack %q does not parse: %v", f, err)
		}
		code, id, _, _ := m.Ack()
		out = append(out, string(code)+"/"+id)
	}
	return out
}

func enhanced(id, accept, app, name string) string {
	return "MSH|^~\\&|EPIC|HOSP||CRM|20240101120000||ADT^A01^ADT_A01|" + id + "|P|2.5.1|||" + accept + "|" + app + "\r" +
		"PID|1||MRN" + id + "^^^HOSP^MR||" + name + "\r"
}

// modeCase is a message (control id, MSH-15, MSH-16) and the codes it
// must be answered with, as codes renders them.
type modeCase struct{ id, accept, app, want string }

// checkModes sends each case's message, for a patient named name, and
// checks its answers' codes; check, when set, sees the frames too.
func (c *conn) checkModes(what, name string, cases []modeCase, check func(frames [][]byte)) {
	c.t.Helper()
	for _, tt := range cases {
		frames := c.exchange(enhanced(tt.id, tt.accept, tt.app, name))
		if got := strings.Join(codes(c.t, frames), " "); got != tt.want {
			c.t.Errorf("%sMSH-15 %q MSH-16 %q: got %q, want %q", what, tt.accept, tt.app, got, tt.want)
		}
		if check != nil {
			check(frames)
		}
	}
}

// Issue 25.6: enhanced mode answers as MSH-15/16 (table 0155) ask; a
// retransmit gets its original answers back byte for byte.
func TestMLLPSourceEnhancedMode(t *testing.T) {
	cp := openLog(t)
	src := &MLLPSource{Name: "adt", Log: cp}
	c := dial(t, startSource(t, src, 0, nil))
	c.checkModes("", "DOE^JANE", []modeCase{
		{"E1", "AL", "AL", "CA/E1 AA/E1"},
		{"E2", "AL", "NE", "CA/E2"},
		{"E3", "NE", "AL", "AA/E3"},
		{"E4", "ER", "ER", ""}, // success: nobody asked
		{"E5", "SU", "SU", "CA/E5 AA/E5"},
		{"E6", "AL", "", "CA/E6"},
		{"E7", "", "AL", "AA/E7"},
		{"E8", "NE", "NE", ""},
	}, nil)
	// Every message was stored, those answered with nothing included, and
	// the connection stayed usable throughout.
	if n := src.Accepted.Load() - int64(c.sentinels); n != 8 {
		t.Errorf("accepted = %d, want 8 (besides %d sentinels)", n, c.sentinels)
	}
	first := c.exchange(enhanced("E1", "AL", "AL", "DOE^JANE"))
	r, err := cp.Reveal(1)
	if err != nil {
		t.Fatal(err)
	}
	if stored := DecodeAcks(r.Ack); len(stored) != 2 || !bytes.Equal(stored[0], first[0]) || !bytes.Equal(stored[1], first[1]) {
		t.Errorf("stored answers %q, retransmit got %q", r.Ack, first)
	}
	again := c.exchange(enhanced("E1", "AL", "AL", "DOE^JANE"))
	if len(again) != 2 || !bytes.Equal(again[0], first[0]) || !bytes.Equal(again[1], first[1]) {
		t.Errorf("second retransmit got %q, want %q", again, first)
	}
	if got := c.exchange(enhanced("E8", "NE", "NE", "DOE^JANE")); len(got) != 0 {
		t.Errorf("retransmit of a message that wanted no answer got %q", got)
	}
	if src.Duplicates.Load() != 3 {
		t.Errorf("duplicates = %d, want 3", src.Duplicates.Load())
	}

	// Rejections: CR when the commit acknowledgment is wanted on error,
	// else the application acknowledgment reports it.
	c.checkModes("conflict with ", "CHANGED^NAME", []modeCase{
		{"E1", "AL", "AL", "CR/E1"},
		{"E2", "ER", "NE", "CR/E2"},
		{"E3", "NE", "ER", "AR/E3"},
		{"E5", "SU", "SU", ""},
	}, func(frames [][]byte) {
		if len(frames) > 0 {
			m, _ := hl7.Parse(frames[0])
			if code, _ := m.GetString("ERR-3.1"); code != "205" {
				t.Errorf("conflict ERR-3.1 = %q, want 205", code)
			}
		}
	})
	// A value outside table 0155: rejected in original mode, naming MSH-15.
	frames := c.exchange(enhanced("E9", "XX", "AL", "DOE^JANE"))
	if got := strings.Join(codes(t, frames), " "); got != "AR/E9" {
		t.Fatalf("MSH-15 XX: got %q", got)
	}
	m, _ := hl7.Parse(frames[0])
	if loc, _ := m.GetString("ERR-2"); loc != "MSH^1^15" {
		t.Errorf("ERR-2 = %q", loc)
	}
	if code, _ := m.GetString("ERR-3.1"); code != "103" {
		t.Errorf("ERR-3.1 = %q, want 103 (table value not found)", code)
	}
}

// Issue 25.6: a failed append is a commit error, reported once.
func TestMLLPSourceEnhancedModeStorageFails(t *testing.T) {
	src := &MLLPSource{Name: "adt", Log: failingLog{}}
	c := dial(t, startSource(t, src, 0, nil))
	for _, tt := range []struct{ accept, app, want string }{
		{"AL", "AL", "CE/F1"},
		{"ER", "ER", "CE/F1"},
		{"NE", "AL", "AE/F1"},
		{"SU", "SU", ""},
	} {
		frames := c.exchange(enhanced("F1", tt.accept, tt.app, "DOE^JANE"))
		if got := strings.Join(codes(t, frames), " "); got != tt.want {
			t.Errorf("MSH-15 %q MSH-16 %q: got %q, want %q", tt.accept, tt.app, got, tt.want)
		}
	}
}

func TestAcksEncoding(t *testing.T) {
	old := []byte("MSH|^~\\&|CRM||EPIC|HOSP|2024||ACK^A01^ACK|X|P|2.5.1\rMSA|AA|C1\r")
	if got := DecodeAcks(old); len(got) != 1 || !bytes.Equal(got[0], old) {
		t.Errorf("a record's single ACK (every record before enhanced mode) reads as %q", got)
	}
	if !bytes.Equal(EncodeAcks([][]byte{old}), old) {
		t.Error("a single ACK must be stored as before")
	}
	two := [][]byte{old, bytes.Replace(old, []byte("AA"), []byte("CA"), 1)}
	if got := DecodeAcks(EncodeAcks(two)); len(got) != 2 || !bytes.Equal(got[0], two[0]) || !bytes.Equal(got[1], two[1]) {
		t.Errorf("two ACKs round trip to %q", got)
	}
	if got := DecodeAcks(EncodeAcks(nil)); len(got) != 0 {
		t.Errorf("no ACK round trips to %q", got)
	}
}

// Issue 25.5: every message with a recognisable MSH and field separator is
// answered (AR with an ERR naming the problem when it cannot be accepted);
// the connection stays open for the next one.
func TestMLLPSourceAnswersEveryMSH(t *testing.T) {
	src := &MLLPSource{Name: "adt", Log: openLog(t)}
	c := dial(t, startSource(t, src, 0, nil))
	bare, err := os.ReadFile(shared.Path(t, "corpus", "hl7v2", "CDCgov-trusted-intermediary", "Test", "Message", "msh_present_but_missing_all_fields.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, in string
		want     string // MSA-1/MSA-2
		errLoc   string // ERR-2 of the first ERR
		errCode  string
	}{
		{"MSH| only (corpus)", string(bare), "AR/", "MSH^1^2", "101"},
		{"empty MSH-2", "MSH||EPIC|HOSP||CRM|2024||ADT^A01|B2|P|2.5.1\rPID|1\r", "AR/B2", "MSH^1^2", "101"},
		{"doubled escape char", "MSH|^~\\\\&|EPIC|HOSP||CRM|2024||ADT^A01|B3|P|2.5.1\rPID|1\r", "AR/B3", "MSH^1^2", "102"},
		{"UTF-16 on ASCII text", "MSH|^~\\&|EPIC|HOSP||CRM|2024||ADT^A01|B4|P|2.5.1||||||UNICODE UTF-16\rPID|1\r", "AR/B4", "MSH^1^18", "103"},
		{"UNICODE on ASCII text", "MSH|^~\\&|EPIC|HOSP||CRM|2024||ADT^A01|B5|P|2.5.1||||||UNICODE\rPID|1||M5^^^H^MR\r", "AA/B5", "", ""},
		// Enhanced mode asked for with a broken MSH-2: MSH-15/16 are still
		// readable at the field separator, so the rejection is a CR alone.
		{"doubled escape char, AL/NE", "MSH|^~\\\\&|EPIC|HOSP||CRM|2024||ADT^A01|B7|P|2.5.1|||AL|NE\rPID|1\r", "CR/B7", "MSH^1^2", "102"},
		{"'.' as field separator", "MSH.^~\\&.EPIC.HOSP..CRM.20240101..ADT^A01.B6.P.2\\F\\5\\F\\1\rPID.1..M6^^^H^MR\r", "AA/B6", "", ""},
	} {
		frames := c.exchange(tt.in)
		if got := strings.Join(codes(t, frames), " "); got != tt.want {
			t.Errorf("%s: got %q, want %q (%q)", tt.name, got, tt.want, frames)
			continue
		}
		m, _ := hl7.Parse(frames[0])
		if loc, _ := m.GetString("ERR-2"); loc != tt.errLoc {
			t.Errorf("%s: ERR-2 = %q, want %q", tt.name, loc, tt.errLoc)
		}
		if code, _ := m.GetString("ERR-3.1"); code != tt.errCode {
			t.Errorf("%s: ERR-3.1 = %q, want %q", tt.name, code, tt.errCode)
		}
		if msh7 := m.Get(hl7.Path{Segment: "MSH", Field: 7}).Raw(); len(msh7) < 14 {
			t.Errorf("%s: ACK MSH-7 = %q", tt.name, msh7)
		}
	}
}

// An oversized frame whose MSH-2 is broken follows the rule of any
// message with a broken MSH-2: its valid MSH-15/16 are honoured (CR), and
// only values outside table 0155 fall back to an original-mode AR.
func TestMLLPSourceOversizedBrokenMSH2(t *testing.T) {
	src := &MLLPSource{Name: "adt", Log: openLog(t)}
	c := dial(t, startSource(t, src, 2048, nil))
	pid := strings.Repeat("PID|1||M1^^^H^MR||DOE^JANE\r", 100)
	for _, tt := range []struct{ in, want string }{
		{"MSH|^~\\\\&|EPIC|HOSP||CRM|2024||ADT^A01|O1|P|2.5.1|||AL|NE\r" + pid, "CR/O1"},
		{"MSH|^~\\\\&|EPIC|HOSP||CRM|2024||ADT^A01|O2|P|2.5.1|||XX|NE\r" + pid, "AR/O2"},
	} {
		frames := c.exchange(tt.in)
		if got := strings.Join(codes(t, frames), " "); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
			continue
		}
		m, _ := hl7.Parse(frames[0])
		if loc, _ := m.GetString("ERR[2]-2"); loc != "MSH^1^2" {
			t.Errorf("%s: second ERR-2 = %q, want MSH^1^2", tt.want, loc)
		}
	}
}

// Issue 25.5, the class: every corpus message that starts with MSH and a
// field separator gets an acknowledgment, whatever is wrong with it. A
// sentinel message after each one keeps the count honest: enhanced-mode
// messages may be answered with two frames (or, as they ask, none).
func TestMLLPSourceAnswersWholeCorpus(t *testing.T) {
	src := &MLLPSource{Name: "corpus"} // protocol only: nothing stored
	c := dial(t, startSource(t, src, 0, nil))
	n, enhancedMsgs := 0, 0
	for i, file := range corpusFiles(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := hl7.Split(data)
		if err != nil {
			msgs = [][]byte{data}
		}
		for j, m := range msgs {
			if !answerable(m) {
				continue
			}
			n++
			sentinel := fmt.Sprintf("S%d-%d", i, j)
			c.sentinels++
			frames := c.untilSentinel(string(m), sentinel)
			if hdr, problems, ok := hl7.ReadHeader(m); ok && len(problems) == 0 && hdr.Header().Enhanced() {
				enhancedMsgs++
				continue
			}
			if len(frames) != 1 {
				t.Errorf("%s (message %d): %d acknowledgments, want 1", filepath.Base(file), j+1, len(frames))
			}
		}
	}
	if n < 270 {
		t.Errorf("only %d corpus messages sent", n)
	}
	t.Logf("%d corpus messages answered (%d in enhanced mode, answered as they asked)", n, enhancedMsgs)
}

// untilSentinel sends payload and then an original-mode message with
// control id sentinel, and returns the frames that came before the
// sentinel's acknowledgment.
func (c *conn) untilSentinel(payload, sentinel string) [][]byte {
	c.t.Helper()
	s := "MSH|^~\\&|T|T||CRM|2024||ADT^A01|" + sentinel + "|P|2.5.1\r"
	if err := mllp.WriteFrame(c.c, []byte(payload)); err != nil {
		c.t.Fatal(err)
	}
	if err := mllp.WriteFrame(c.c, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
	var frames [][]byte
	for {
		_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		p, err := c.rd.ReadFrame()
		if err != nil {
			c.t.Fatalf("waiting for the sentinel %s: %v", sentinel, err)
		}
		if m, err := hl7.Parse(p); err == nil {
			if _, id, _, _ := m.Ack(); id == sentinel {
				return frames
			}
		}
		frames = append(frames, p)
	}
}

// answerable: after an optional byte order mark and blank lines, "MSH"
// and a field separator.
func answerable(m []byte) bool {
	m = bytes.TrimPrefix(m, []byte("\xEF\xBB\xBF"))
	m = bytes.TrimLeft(m, "\r\n \t")
	return len(m) > 3 && bytes.HasPrefix(m, []byte("MSH")) && m[3] > ' ' && m[3] < 0x7f &&
		!(m[3] >= '0' && m[3] <= '9' || m[3] >= 'A' && m[3] <= 'Z' || m[3] >= 'a' && m[3] <= 'z')
}

// Issue 25.5/25.6 paths log what happened without patient data: broken
// MSH-2, unreadable MSH-18, enhanced-mode answers, an oversized frame
// whose MSH-16 is outside table 0155 (answered in original mode).
func TestMLLPSourceNewPathsLogNoPHI(t *testing.T) {
	phi := []string{"ZZSURNAME", "MRN88442211", "ZZCONTROL77", "Zürich"}
	pid := "PID|1||MRN88442211^^^HOSP^MR||ZZSURNAME^ANNA|||||1 LANE^^Zürich\r"
	logs := &syncbuf.Buffer{}
	src := &MLLPSource{Name: "adt", Log: openLog(t)}
	c := dial(t, startSource(t, src, 2048, logs))
	for _, m := range []string{
		"MSH|^~\\\\&|EPIC|HOSP||CRM|2024||ADT^A01|ZZCONTROL77|P|2.5.1\r" + pid,
		"MSH|^~\\&|EPIC|HOSP||CRM|2024||ADT^A01|ZZCONTROL77|P|2.5.1||||||UNICODE UTF-32\r" + pid,
		"MSH|^~\\&|EPIC|HOSP||CRM|2024||ADT^A01|ZZCONTROL77|P|2.5.1|||AL|AL\r" + pid,
		"MSH|^~\\&|EPIC|HOSP||CRM|2024||ADT^A01|ZZCONTROL78|P|2.5.1|||NE|NE\r" + pid,
	} {
		c.exchange(m)
	}
	big := c.exchange("MSH|^~\\&|EPIC|HOSP||CRM|2024||ADT^A01|ZZCONTROL79|P|2.5.1|||AL|XX\r" + strings.Repeat(pid, 40))
	if got := strings.Join(codes(t, big), " "); got != "AR/ZZCONTROL79" {
		t.Errorf("oversized frame with MSH-16 XX: got %q, want an original-mode AR", got)
	}
	out := logs.String()
	for _, s := range phi {
		if strings.Contains(out, s) {
			t.Errorf("log output contains %q:\n%s", s, out)
		}
	}
	for _, want := range []string{`"msg":"hl7 message rejected: unreadable header"`, `"acks":2`,
		`"msg":"hl7 message stored; the sender asked for no acknowledgment (MSH-15/MSH-16)"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

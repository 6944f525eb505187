package ehr

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// TestWildMLLP sends every message of the corpus of strangers' messages
// (hl7/testdata/wild, cut as a file-drop sender cuts them) to an
// MLLPSource over loopback, then sends each again, and checks what comes
// back:
//   - a message with a recognisable MSH and field separator is answered
//     (unless it asks for no acknowledgment at all, see checkAnswers);
//   - every answer parses, carries MSA with a table 0008 code and, where
//     the inbound MSH-10 is readable, MSA-2 = MSH-10; a rejection carries
//     an ERR segment;
//   - original mode (MSH-15 and MSH-16 empty) gets exactly one AA, AE or
//     AR; enhanced mode gets the commit and application acknowledgments
//     MSH-15 and MSH-16 ask for (table 0155), commit first;
//   - the acknowledgment's MSH-3 and MSH-4 are the inbound MSH-5 and MSH-6,
//     whole hierarchic designators (an OID-only one included);
//   - a retransmit of an accepted message gets the same bytes back, a
//     rejected one the same codes;
//   - an accepted message sent again by two senders whose MSH-4 differ
//     only in the universal id (same local names), both with one new
//     control id, is accepted from both; an accepted ASCII message sent
//     again with MSH-18 UNICODE under a control id of its own is accepted;
//   - a file without any MSH line, sent whole as one frame, does not stop
//     the listener;
//   - the log output holds no patient name or identifier of the corpus.
//
// Each file has its own source (its own record keys), all share one
// checkpoint log. After each corpus frame the test sends a sentinel message
// and reads answers up to the sentinel's ACK, so it sees every frame the
// source sends for the corpus message without waiting on timeouts.
func TestWildMLLP(t *testing.T) {
	files := shared.WildFiles(t)
	names := shared.WildNames(files)
	// Durability is not what is tested here: without fsync the few
	// thousand appends take a second instead of most of a minute.
	cp, err := checkpoint.Open(filepath.Join(t.TempDir(), checkpoint.FileName),
		checkpoint.Options{Logger: slog.New(slog.DiscardHandler), UnsafeNoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Close() })
	logs := &syncbuf.Buffer{}
	w := &wildSender{t: t}
	var f shared.Findings
	var sent, answered, silent, senders, unicode int
	codes := map[string]int{}
	var phi []string
	for i, name := range names {
		src := &MLLPSource{Name: fmt.Sprintf("wild%d", i), Log: cp}
		w.addr = startSource(t, src, 0, logs)
		w.conn = nil
		msgs := shared.SplitMessages(files[name])
		if len(msgs) == 0 {
			// Not an HL7 message; whatever the source does with it, the
			// listener goes on answering.
			w.exchange(files[name])
			w.close()
			if frames, closed := w.exchange(nil); closed || len(frames) != 0 {
				t.Errorf("%s: the listener stopped answering after this file (%d stray frames)", name, len(frames))
			}
			continue
		}
		first := make([][][]byte, len(msgs))
		for j, raw := range msgs {
			sent++
			frames, _ := w.exchange(raw)
			first[j] = frames
			if len(frames) == 0 {
				silent++
			} else {
				answered++
			}
			for _, fr := range frames {
				if m, err := hl7.Parse(fr); err == nil {
					c, _, _, _ := m.Ack()
					codes[string(c)]++
				}
			}
			checkAnswers(&f, fmt.Sprintf("%s #%d", name, j+1), raw, frames)
			phi = append(phi, patientValues(raw)...)
		}
		for j, raw := range msgs {
			again, _ := w.exchange(raw)
			checkRetransmit(&f, fmt.Sprintf("%s #%d", name, j+1), first[j], again)
		}
		for j, raw := range msgs {
			if c, _ := answerCodes(first[j]); !accepting(c) {
				continue
			}
			// Two senders with the same local names whose MSH-4 differ in
			// the universal id (HD.2) alone, both using one new control
			// id: neither is a retransmit or a reused control id of the
			// other, so both are accepted.
			if a, ok := otherFacility(raw, "2.999.4"); ok {
				b, _ := otherFacility(raw, "2.999.5")
				senders++
				for k, v := range [][]byte{a, b} {
					frames, _ := w.exchange(v)
					if c, _ := answerCodes(frames); !accepting(c) {
						f.Add(fmt.Sprintf("sender %d of two whose MSH-4 differ only in HD.2, same control id: %s", k+1, notAccepted(c)), fmt.Sprintf("%s #%d", name, j+1))
					}
				}
			}
			// The same ASCII message saying MSH-18 UNICODE (table 0211),
			// under a control id of its own: read, and accepted.
			if u, ok := unicodeVariant(raw); ok {
				frames, _ := w.exchange(u)
				unicode++
				if c, _ := answerCodes(frames); !accepting(c) {
					f.Add("an ASCII message with MSH-18 UNICODE (own control id): "+notAccepted(c), fmt.Sprintf("%s #%d", name, j+1))
				}
			}
		}
		w.close()
	}
	t.Logf("wild corpus over MLLP: %d messages sent, %d answered, %d without an answer; first answers' codes %v; %d pairs of senders differing in MSH-4's universal id, %d with MSH-18 UNICODE", sent, answered, silent, codes, senders, unicode)
	f.Report(t)
	if sent < 450 {
		t.Errorf("only %d wild messages sent", sent)
	}
	out := logs.String()
	leaked := 0
	for _, v := range phi {
		if strings.Contains(out, v) {
			leaked++
		}
	}
	if leaked > 0 {
		t.Errorf("the log output contains %d patient names or identifiers of the corpus", leaked)
	}
}

// wildSender talks to one source over one connection, reconnecting after
// the source closed it.
type wildSender struct {
	t        *testing.T
	addr     string
	conn     net.Conn
	rd       *mllp.Reader
	sentinel int
}

func (w *wildSender) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// exchange sends payload (nil: nothing) and a sentinel message, and
// returns the frames answered before the sentinel's ACK, and whether the
// connection was closed instead.
func (w *wildSender) exchange(payload []byte) (frames [][]byte, closed bool) {
	w.t.Helper()
	if w.conn == nil {
		c, err := net.Dial("tcp", w.addr)
		if err != nil {
			w.t.Fatal(err)
		}
		w.conn, w.rd = c, mllp.NewReader(c, 0)
	}
	w.sentinel++
	id := fmt.Sprintf("WILDSENTINEL%d", w.sentinel)
	sentinel := "MSH|^~\\&|WILDTEST|WILDTEST|||20260101000000||ADT^A01|" + id + "|P|2.5\r"
	var out []byte
	if payload != nil {
		out = mllp.AppendFrame(out, payload)
	}
	out = mllp.AppendFrame(out, []byte(sentinel))
	_ = w.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := w.conn.Write(out); err != nil {
		w.close()
		return nil, true
	}
	for {
		f, err := w.rd.ReadFrame()
		if err != nil {
			w.close()
			return frames, true
		}
		if m, err := hl7.Parse(f); err == nil {
			if _, ctl, _, ok := m.Ack(); ok && ctl == id {
				return frames, false
			}
		}
		frames = append(frames, f)
	}
}

// mshFields splits the MSH line of raw at its field separator: index n-1
// holds MSH-n (n >= 2), as the bytes stand.
func mshFields(raw []byte) [][]byte {
	line := raw
	if i := bytes.IndexByte(raw, '\r'); i >= 0 {
		line = raw[:i]
	}
	return bytes.Split(line, raw[3:4])
}

// mshField returns MSH-n's first component, trimmed, or "".
func mshField(f [][]byte, n int) string {
	if len(f) < n {
		return ""
	}
	v := f[n-1]
	if len(f[1]) > 0 {
		if i := bytes.IndexByte(v, f[1][0]); i >= 0 {
			v = v[:i]
		}
	}
	return strings.TrimSpace(string(v))
}

// readableControlID returns MSH-10 when it can be compared with MSA-2
// without decoding: 1 to 199 printable ASCII characters that are none of
// the message's delimiters.
func readableControlID(f [][]byte) (string, bool) {
	if len(f) < 10 || len(f[9]) == 0 || len(f[9]) > 199 {
		return "", false
	}
	v := f[9]
	for _, c := range v {
		if c < 0x21 || c > 0x7e || bytes.IndexByte(f[1], c) >= 0 || c == '\\' || c == '^' || c == '~' || c == '&' {
			return "", false
		}
	}
	return string(v), true
}

// checkAnswers checks the frames answered to raw (see TestWildMLLP).
// Acknowledgment modes follow table 0155 for MSH-15 (accept) and MSH-16
// (application): AL always, NE never, ER only on error or rejection, SU
// only on success; both empty is original mode. In enhanced mode an empty
// MSH-16 asks for no application acknowledgment.
func checkAnswers(f *shared.Findings, what string, raw []byte, frames [][]byte) {
	msh := mshFields(raw)
	accept, app := mshField(msh, 15), mshField(msh, 16)
	known := func(s string) bool { return s == "" || s == "AL" || s == "NE" || s == "ER" || s == "SU" }
	original := accept == "" && app == ""
	if len(frames) == 0 {
		if original || accept == "AL" || app == "AL" || !known(accept) || !known(app) {
			f.Add(fmt.Sprintf("no answer (MSH-15 %q, MSH-16 %q)", accept, app), what)
		}
		return
	}
	ctl, readable := readableControlID(msh)
	var commits, apps []hl7.AckCode
	for _, fr := range frames {
		m, err := hl7.Parse(fr)
		if err != nil {
			f.Add("an answer does not parse", what)
			return
		}
		code, id, _, ok := m.Ack()
		if !ok {
			f.Add("an answer has no MSA", what)
			return
		}
		if in, err := hl7.Parse(raw); err == nil {
			for _, hd := range [][2]int{{5, 3}, {6, 4}} {
				want, got := hdOf(in, hd[0]), hdOf(m, hd[1])
				if want != "" && got != want {
					f.Add(fmt.Sprintf("the answer's MSH-%d is not the inbound MSH-%d, whole (%d of 3 components differ)", hd[1], hd[0], hdDiff(want, got)), what)
				}
			}
		}
		switch code {
		case hl7.AA, hl7.CA:
		case hl7.AE, hl7.AR, hl7.CE, hl7.CR:
			if m.Count("ERR") == 0 {
				f.Add(fmt.Sprintf("%s without an ERR segment", code), what)
			}
		default:
			f.Add("MSA-1 is not a table 0008 code", what)
		}
		if readable && id != ctl {
			f.Add("MSA-2 is not the inbound MSH-10", what)
		}
		if code.IsCommit() {
			if len(apps) > 0 {
				f.Add("a commit acknowledgment after an application acknowledgment", what)
			}
			commits = append(commits, code)
		} else {
			apps = append(apps, code)
		}
	}
	if original {
		if len(frames) != 1 || len(commits) != 0 {
			f.Add("original mode (MSH-15/16 empty) not answered by exactly one AA, AE or AR", what)
		}
		return
	}
	if !known(accept) || !known(app) {
		return
	}
	if len(commits) > 1 || len(apps) > 1 {
		f.Add("more than one commit or application acknowledgment", what)
	}
	switch {
	case accept == "AL" && len(commits) != 1:
		f.Add("MSH-15 AL: not exactly one commit acknowledgment", what)
	case accept == "NE" && len(commits) != 0:
		f.Add("MSH-15 NE: a commit acknowledgment", what)
	case accept == "SU" && len(commits) > 0 && commits[0] != hl7.CA:
		f.Add("MSH-15 SU: a commit acknowledgment other than CA", what)
	case accept == "ER" && len(commits) > 0 && commits[0] == hl7.CA:
		f.Add("MSH-15 ER: CA sent", what)
	}
	committed := len(commits) == 0 || commits[0] == hl7.CA
	switch {
	case (app == "NE" || app == "") && len(apps) != 0:
		f.Add(fmt.Sprintf("MSH-16 %q in enhanced mode: an application acknowledgment", app), what)
	case app == "AL" && committed && len(apps) != 1:
		f.Add("MSH-16 AL: not exactly one application acknowledgment after CA", what)
	case app == "SU" && len(apps) > 0 && apps[0] != hl7.AA:
		f.Add("MSH-16 SU: an application acknowledgment other than AA", what)
	case app == "ER" && len(apps) > 0 && apps[0] == hl7.AA:
		f.Add("MSH-16 ER: AA sent", what)
	}
}

// hdOf renders MSH-n of m as a hierarchic designator: its three
// components decoded and trimmed, joined by "^", trailing empty ones
// dropped; "" when all are empty.
func hdOf(m *hl7.Message, n int) string {
	var parts []string
	for c := 1; c <= 3; c++ {
		parts = append(parts, strings.TrimSpace(m.Get(hl7.Path{Segment: "MSH", Field: n, Component: c}).String()))
	}
	for len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	return strings.Join(parts, "^")
}

// hdDiff counts the components in which two rendered HDs differ.
func hdDiff(a, b string) int {
	pa, pb := strings.Split(a, "^"), strings.Split(b, "^")
	n := 0
	for i := 0; i < 3; i++ {
		var x, y string
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		if x != y {
			n++
		}
	}
	return n
}

// answerCodes returns the MSA-1 codes of frames ("?" for one that does
// not parse).
func answerCodes(frames [][]byte) ([]string, bool) {
	var codes []string
	for _, f := range frames {
		m, err := hl7.Parse(f)
		if err != nil {
			codes = append(codes, "?")
			continue
		}
		c, _, _, _ := m.Ack()
		codes = append(codes, string(c))
	}
	return codes, len(codes) > 0
}

// accepting reports whether answers accept a message: one of them is AA or
// CA and none rejects it.
func accepting(codes []string) bool {
	ok := false
	for _, c := range codes {
		switch hl7.AckCode(c) {
		case hl7.AA, hl7.CA:
			ok = true
		default:
			return false
		}
	}
	return ok
}

// notAccepted says how answers with codes failed to accept a message.
func notAccepted(codes []string) string {
	if len(codes) == 0 {
		return "no answer"
	}
	return "answered " + strings.Join(codes, " ")
}

// otherFacility returns raw with MSH-4 made of its namespace id (HD.1) and
// the universal id oid (type ISO), and "S" appended to MSH-10, for a
// message with a readable control id.
func otherFacility(raw []byte, oid string) ([]byte, bool) {
	f := mshFields(raw)
	ctl, ok := readableControlID(f)
	if !ok {
		return nil, false
	}
	comp := f[1][:1]
	first, _, _ := bytes.Cut(f[3], comp)
	f[3] = bytes.Join([][]byte{first, []byte(oid), []byte("ISO")}, comp)
	f[9] = []byte(ctl + "S")
	line := bytes.Join(f, raw[3:4])
	return append(line, raw[bytes.IndexByte(raw, '\r'):]...), true
}

// unicodeVariant returns raw with MSH-18 set to UNICODE and "U" appended to
// MSH-10, for a message of ASCII bytes with MSH-18 empty and a readable
// control id.
func unicodeVariant(raw []byte) ([]byte, bool) {
	for _, c := range raw {
		if c >= 0x80 {
			return nil, false
		}
	}
	f := mshFields(raw)
	ctl, ok := readableControlID(f)
	if !ok || len(f) > 17 && len(f[17]) > 0 {
		return nil, false
	}
	for len(f) < 18 {
		f = append(f, nil)
	}
	f[9] = []byte(ctl + "U")
	f[17] = []byte("UNICODE")
	line := bytes.Join(f, raw[3:4])
	return append(line, raw[bytes.IndexByte(raw, '\r'):]...), true
}

// checkRetransmit compares the answers to a message sent twice: byte for
// byte when the first answer accepted it (the stored answer comes back),
// else the same acknowledgment codes.
func checkRetransmit(f *shared.Findings, what string, first, again [][]byte) {
	c1, _ := answerCodes(first)
	c2, _ := answerCodes(again)
	if slices.ContainsFunc(c1, func(c string) bool { return c == string(hl7.AA) || c == string(hl7.CA) }) {
		if len(first) != len(again) {
			f.Add("a retransmit of an accepted message answered with other frames", what)
			return
		}
		for i := range first {
			if !bytes.Equal(first[i], again[i]) {
				f.Add("a retransmit's answer differs from the original's bytes", what)
			}
		}
		return
	}
	if strings.Join(c1, " ") != strings.Join(c2, " ") {
		f.Add("a retransmit of a rejected message answered with other codes", what)
	}
}

// patientValues returns names and identifiers of raw's patient that a log
// must never show: PID-5 surnames of 5 or more characters and PID-3 ids
// of 6 or more that are not all digits (digit runs occur in timestamps).
func patientValues(raw []byte) []string {
	m, err := hl7.Parse(raw)
	if err != nil || m.Segment("PID", 1) == nil {
		return nil
	}
	var out []string
	if s, _ := m.GetString("PID-5.1.1"); len(strings.TrimSpace(s)) >= 5 {
		out = append(out, strings.TrimSpace(s))
	}
	if s, _ := m.GetString("PID-3.1"); len(s) >= 6 && strings.Trim(s, "0123456789") != "" {
		out = append(out, s)
	}
	return out
}

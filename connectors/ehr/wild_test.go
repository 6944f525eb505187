package ehr

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sort"
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
//   - a retransmit of an accepted message gets the same bytes back, a
//     rejected one the same codes;
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
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	// Durability is not what is tested here: without fsync the ~1,800
	// appends take a second instead of most of a minute.
	cp, err := checkpoint.Open(filepath.Join(t.TempDir(), checkpoint.FileName),
		checkpoint.Options{Logger: slog.New(slog.DiscardHandler), UnsafeNoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Close() })
	logs := &syncbuf.Buffer{}
	w := &wildSender{t: t}
	var sent, answered, silent int
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
			for _, f := range frames {
				if m, err := hl7.Parse(f); err == nil {
					c, _, _, _ := m.Ack()
					codes[string(c)]++
				}
			}
			checkAnswers(t, fmt.Sprintf("%s #%d", name, j+1), raw, frames)
			phi = append(phi, patientValues(raw)...)
		}
		for j, raw := range msgs {
			again, _ := w.exchange(raw)
			checkRetransmit(t, fmt.Sprintf("%s #%d", name, j+1), first[j], again)
		}
		w.close()
	}
	t.Logf("wild corpus over MLLP: %d messages sent, %d answered, %d without an answer; first answers' codes %v", sent, answered, silent, codes)
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
func checkAnswers(t *testing.T, what string, raw []byte, frames [][]byte) {
	t.Helper()
	f := mshFields(raw)
	accept, app := mshField(f, 15), mshField(f, 16)
	known := func(s string) bool { return s == "" || s == "AL" || s == "NE" || s == "ER" || s == "SU" }
	original := accept == "" && app == ""
	if len(frames) == 0 {
		if original || accept == "AL" || app == "AL" || !known(accept) || !known(app) {
			t.Errorf("%s: no answer (MSH-15 %q, MSH-16 %q)", what, accept, app)
		}
		return
	}
	ctl, readable := readableControlID(f)
	var commits, apps []hl7.AckCode
	for i, fr := range frames {
		m, err := hl7.Parse(fr)
		if err != nil {
			t.Errorf("%s: answer %d does not parse: %v", what, i+1, err)
			return
		}
		code, id, _, ok := m.Ack()
		if !ok {
			t.Errorf("%s: answer %d has no MSA", what, i+1)
			return
		}
		switch code {
		case hl7.AA, hl7.CA:
		case hl7.AE, hl7.AR, hl7.CE, hl7.CR:
			if m.Count("ERR") == 0 {
				t.Errorf("%s: answer %d is %s without an ERR segment", what, i+1, code)
			}
		default:
			t.Errorf("%s: answer %d has MSA-1 %q, not a table 0008 code", what, i+1, code)
		}
		if readable && id != ctl {
			t.Errorf("%s: answer %d has MSA-2 %q, want MSH-10 %q", what, i+1, id, ctl)
		}
		if code.IsCommit() {
			if len(apps) > 0 {
				t.Errorf("%s: commit acknowledgment %s after an application acknowledgment", what, code)
			}
			commits = append(commits, code)
		} else {
			apps = append(apps, code)
		}
	}
	if original {
		if len(frames) != 1 || len(commits) != 0 {
			t.Errorf("%s: original mode answered with %v %v, want one AA, AE or AR", what, commits, apps)
		}
		return
	}
	if !known(accept) || !known(app) {
		return
	}
	if len(commits) > 1 || len(apps) > 1 {
		t.Errorf("%s: answered %v %v, want at most one commit and one application acknowledgment", what, commits, apps)
	}
	switch {
	case accept == "AL" && len(commits) != 1:
		t.Errorf("%s: MSH-15 AL: %d commit acknowledgments, want 1", what, len(commits))
	case accept == "NE" && len(commits) != 0:
		t.Errorf("%s: MSH-15 NE: got commit acknowledgment %v", what, commits)
	case accept == "SU" && len(commits) > 0 && commits[0] != hl7.CA:
		t.Errorf("%s: MSH-15 SU: got %s", what, commits[0])
	case accept == "ER" && len(commits) > 0 && commits[0] == hl7.CA:
		t.Errorf("%s: MSH-15 ER: got CA", what)
	}
	committed := len(commits) == 0 || commits[0] == hl7.CA
	switch {
	case (app == "NE" || app == "") && len(apps) != 0:
		t.Errorf("%s: MSH-16 %q: got application acknowledgment %v", what, app, apps)
	case app == "AL" && committed && len(apps) != 1:
		t.Errorf("%s: MSH-16 AL: %d application acknowledgments, want 1", what, len(apps))
	case app == "SU" && len(apps) > 0 && apps[0] != hl7.AA:
		t.Errorf("%s: MSH-16 SU: got %s", what, apps[0])
	case app == "ER" && len(apps) > 0 && apps[0] == hl7.AA:
		t.Errorf("%s: MSH-16 ER: got AA", what)
	}
}

// checkRetransmit compares the answers to a message sent twice: byte for
// byte when the first answer accepted it (the stored answer comes back),
// else the same acknowledgment codes.
func checkRetransmit(t *testing.T, what string, first, again [][]byte) {
	t.Helper()
	codesOf := func(frames [][]byte) (codes []string, accepted bool) {
		for _, f := range frames {
			m, err := hl7.Parse(f)
			if err != nil {
				codes = append(codes, "?")
				continue
			}
			c, _, _, _ := m.Ack()
			codes = append(codes, string(c))
			accepted = accepted || c == hl7.AA || c == hl7.CA
		}
		return codes, accepted
	}
	c1, accepted := codesOf(first)
	c2, _ := codesOf(again)
	if accepted {
		if len(first) != len(again) {
			t.Errorf("%s: retransmit answered %v, first %v", what, c2, c1)
			return
		}
		for i := range first {
			if !bytes.Equal(first[i], again[i]) {
				t.Errorf("%s: retransmit's answer %d differs from the original's bytes", what, i+1)
			}
		}
		return
	}
	if strings.Join(c1, " ") != strings.Join(c2, " ") {
		t.Errorf("%s: retransmit answered %v, first %v", what, c2, c1)
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

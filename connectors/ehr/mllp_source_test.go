package ehr

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/logging"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// startSource serves an MLLPSource on a free loopback port, logging through
// the product's redacting logger at debug level into logs.
func startSource(t *testing.T, src *MLLPSource, maxFrame int, logs *syncbuf.Buffer) string {
	t.Helper()
	var w interface{ Write([]byte) (int, error) } = logs
	if logs == nil {
		w = &syncbuf.Buffer{}
	}
	log, err := logging.New(w, logging.Options{Format: "json", Level: slog.LevelDebug})
	if err != nil {
		t.Fatal(err)
	}
	src.Logger = log
	srv := &mllp.Server{Handler: src, MaxFrameSize: maxFrame, Logger: log.With("source", src.Name)}
	l, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return l.Addr().String()
}

func send(t *testing.T, addr string, payload string) *hl7.Message {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := mllp.WriteFrame(c, []byte(payload)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := mllp.NewReader(c, 0).ReadFrame()
	if err != nil {
		return nil
	}
	m, err := hl7.Parse(p)
	if err != nil {
		t.Fatalf("ack does not parse: %v", err)
	}
	return m
}

const admit = "MSH|^~\\&|EPIC|HOSP||CRM|20240101120000||ADT^A01^ADT_A01|C100|P|2.5.1\r" +
	"PID|1||MRN100^^^HOSP^MR||DOE^JANE||19800101|F\r"

// failingLog refuses every append, like a full disk.
type failingLog struct{}

func (failingLog) Append(context.Context, checkpoint.Entry) (checkpoint.Result, error) {
	return checkpoint.Result{}, errors.New("checkpoint: append not committed: write: no space left on device")
}

func openLog(t *testing.T) *checkpoint.Log {
	t.Helper()
	l, err := checkpoint.Open(filepath.Join(t.TempDir(), checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestMLLPSourceAcks(t *testing.T) {
	cp := openLog(t)
	src := &MLLPSource{Name: "adt", Log: cp}
	addr := startSource(t, src, 4096, nil)

	var first []byte
	t.Run("AA with swapped header, after the append", func(t *testing.T) {
		ack := send(t, addr, admit)
		code, id, _, _ := ack.Ack()
		h := ack.Header()
		if code != hl7.AA || id != "C100" {
			t.Fatalf("ack = %s %s", code, id)
		}
		if h.SendingApp.Namespace != "EHRBRIDGE" || h.SendingFacility.Namespace != "CRM" || h.ReceivingApp.Namespace != "EPIC" || h.ReceivingFacility.Namespace != "HOSP" ||
			h.Type != "ACK" || h.Trigger != "A01" || h.Version != "2.5.1" || h.ProcessingID != "P" {
			t.Errorf("ack header = %+v", h)
		}
		first = ack.Bytes()
		r, err := cp.Reveal(1)
		if err != nil || r.Key != "adt|EPIC|HOSP|C100" || string(r.Payload) != admit || string(r.Ack) != string(first) || r.Type != "ADT^A01" {
			t.Fatalf("logged record = %+v, %v", r, err)
		}
		if r.Lane != cp.LaneHash("MRN100^HOSP") {
			t.Error("lane is not PID-3.1^PID-3.4")
		}
	})
	t.Run("retransmit gets the original ACK bytes", func(t *testing.T) {
		// Restamped MSH-7 and LF terminators: still the same message.
		resent := strings.ReplaceAll(strings.Replace(admit, "20240101120000", "20240101120500", 1), "\r", "\n")
		ack := send(t, addr, resent)
		if string(ack.Bytes()) != string(first) {
			t.Errorf("retransmit ACK differs:\n%q\n%q", ack.Bytes(), first)
		}
		if st, _ := cp.Stats(); st.States[checkpoint.Received] != 1 {
			t.Errorf("records = %d, want 1", st.States[checkpoint.Received])
		}
	})
	t.Run("AR 205 for a reused control id", func(t *testing.T) {
		ack := send(t, addr, strings.Replace(admit, "DOE^JANE", "ROE^JANE", 1))
		code, id, text, _ := ack.Ack()
		if code != hl7.AR || id != "C100" || !strings.Contains(text, "conflict 1") {
			t.Fatalf("ack = %s %s %q", code, id, text)
		}
		if c, _ := ack.GetString("ERR-3.1"); c != "205" {
			t.Errorf("ERR-3.1 = %q, want 205", c)
		}
		if cs, _ := cp.Conflicts(0, 10); len(cs) != 1 {
			t.Errorf("conflicts = %d", len(cs))
		}
	})
	t.Run("AR for a bad header names every field", func(t *testing.T) {
		ack := send(t, addr, "MSH|^~\\&|EPIC|HOSP|||2024||||X|\rPID|1\r")
		code, _, _, _ := ack.Ack()
		if code != hl7.AR || ack.Count("ERR") != 4 {
			t.Fatalf("ack = %s with %d ERR", code, ack.Count("ERR"))
		}
		if loc, _ := ack.GetString("ERR[1]-2"); loc != "MSH^1^9" {
			t.Errorf("ERR-2 = %q", loc)
		}
		if c, _ := ack.GetString("ERR[2]-3.1"); c != "101" {
			t.Errorf("ERR-3.1 = %q", c)
		}
	})
	t.Run("AR for a malformed segment", func(t *testing.T) {
		ack := send(t, addr, "MSH|^~\\&|EPIC|HOSP||CRM|2024||ADT^A01|C101|P|2.5.1\rPID|1\rbroken line\r")
		code, id, text, _ := ack.Ack()
		if code != hl7.AR || id != "C101" || text != "message could not be parsed" {
			t.Fatalf("ack = %s %s %q", code, id, text)
		}
		if e, _ := ack.GetString("ERR-8"); !strings.Contains(e, "segment id must be") {
			t.Errorf("ERR-8 = %q", e)
		}
	})
	t.Run("AR for an oversized frame", func(t *testing.T) {
		big := admit + strings.Repeat("OBX|1|TX|||"+strings.Repeat("z", 100)+"\r", 60)
		ack := send(t, addr, big)
		code, id, text, _ := ack.Ack()
		if code != hl7.AR || id != "C100" || !strings.Contains(text, "exceeds the maximum of 4096 bytes") {
			t.Fatalf("ack = %s %s %q", code, id, text)
		}
	})
	t.Run("no ACK for a frame without MSH", func(t *testing.T) {
		if ack := send(t, addr, "hello"); ack != nil {
			t.Errorf("got an ack for garbage")
		}
	})
	if src.Accepted.Load() != 1 || src.Duplicates.Load() != 1 || src.Conflicts.Load() != 1 || src.Rejected.Load() != 4 {
		t.Errorf("counters accepted=%d dup=%d conflicts=%d rejected=%d", src.Accepted.Load(), src.Duplicates.Load(), src.Conflicts.Load(), src.Rejected.Load())
	}
	if problems, err := cp.Check(); err != nil || len(problems) > 0 {
		t.Errorf("log check: %v %v", err, problems)
	}
}

func TestMLLPSourceAEWhenStorageFails(t *testing.T) {
	src := &MLLPSource{Name: "adt", Log: failingLog{}}
	addr := startSource(t, src, 0, nil)
	ack := send(t, addr, admit)
	code, _, text, _ := ack.Ack()
	if code != hl7.AE || text != "message could not be stored; please resend" {
		t.Fatalf("ack = %s %q", code, text)
	}
	if src.Errored.Load() != 1 || src.Accepted.Load() != 0 {
		t.Errorf("counters errored=%d accepted=%d", src.Errored.Load(), src.Accepted.Load())
	}
}

// storageFullLog refuses appends as the checkpoint log does on a full disk.
type storageFullLog struct{}

func (storageFullLog) Append(context.Context, checkpoint.Entry) (checkpoint.Result, error) {
	return checkpoint.Result{}, &checkpoint.StorageError{Kind: checkpoint.StorageFull, Op: "append", Err: syscall.ENOSPC}
}

// A full disk is answered AE (HL7 table 0008: application error, resend)
// with ERR code 207 (table 0357: application internal error) and a text
// that names the receiver's storage as the cause (issue 27).
func TestMLLPSourceAEOnFullDiskNamesTheCause(t *testing.T) {
	src := &MLLPSource{Name: "adt", Log: storageFullLog{}}
	addr := startSource(t, src, 0, nil)
	ack := send(t, addr, admit)
	code, _, text, _ := ack.Ack()
	const want = "message could not be stored (receiver's disk full or read-only); please resend"
	if code != hl7.AE || text != want {
		t.Fatalf("ack = %s %q, want AE %q", code, text, want)
	}
	if c, _ := ack.GetString("ERR-3.1"); c != "207" {
		t.Errorf("ERR-3 = %q, want 207", c)
	}
	if src.Errored.Load() != 1 || src.Accepted.Load() != 0 {
		t.Errorf("counters errored=%d accepted=%d", src.Errored.Load(), src.Accepted.Load())
	}
}

func TestContentHashAndLane(t *testing.T) {
	parse := func(s string) *hl7.Message {
		m, err := hl7.Parse([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := parse(admit)
	ignore := []hl7.Path{hl7.MustPath("MSH-7")}
	if ContentHash(a, ignore) != ContentHash(parse(strings.Replace(admit, "20240101120000", "20991231", 1)), ignore) {
		t.Error("MSH-7 must not change the hash")
	}
	if ContentHash(a, ignore) == ContentHash(parse(strings.Replace(admit, "JANE", "JUNE", 1)), ignore) {
		t.Error("a changed name must change the hash")
	}
	if ContentHash(a, nil) == ContentHash(parse(strings.Replace(admit, "20240101120000", "20991231", 1)), nil) {
		t.Error("without ignore, MSH-7 counts")
	}
	if LaneKey(a) != "MRN100^HOSP" {
		t.Errorf("lane = %q", LaneKey(a))
	}
	if LaneKey(parse("MSH|^~\\&|A|B|C|D|2024||MFN^M02|1|P|2.5\r")) != "" {
		t.Error("no PID, no lane")
	}
	// Issue 25.1: a blank id is no identity: each such message gets a lane
	// of its own instead of one lane for every patient without an MRN.
	for _, pid3 := range []string{" ", `""`, "^^^HOSP^MR", " ^^^HOSP^MR"} {
		if l := LaneKey(parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|1||" + pid3 + "||X^Y\r")); l != "" {
			t.Errorf("PID-3 %q: lane %q, want none", pid3, l)
		}
	}
}

// The security officer's test: a receive cycle of messages full of
// recognisable PHI, accepted, rejected and oversized, leaves no trace of it
// in the log, at debug level, while the log still says what happened.
func TestMLLPSourceLogsNoPHI(t *testing.T) {
	phi := []string{"ZZSURNAME", "ZZGIVEN", "MRN77441122", "19610704", "555-0199", "123 CANARY LANE", "ZZCONTROL42", "ZZNOTETEXT", "Zürich"}
	good := "MSH|^~\\&|EPIC|HOSP||CRM|20240101||ADT^A01|ZZCONTROL42|P|2.5.1\r" +
		"PID|1||MRN77441122^^^HOSP^MR||ZZSURNAME^ZZGIVEN||19610704|M|||123 CANARY LANE^^Zürich||555-0199\r" +
		"NTE|1||ZZNOTETEXT\r"
	badHeader := strings.Replace(good, "|P|2.5.1", "|X|9.9", 1)
	badSegment := good + "ZZNOTETEXT broken ZZSURNAME\r"
	oversized := good + strings.Repeat("NTE|2||ZZNOTETEXT "+strings.Repeat("x", 200)+"\r", 30)

	logs := &syncbuf.Buffer{}
	src := &MLLPSource{Name: "adt", Log: openLog(t)}
	addr := startSource(t, src, 4096, logs)
	conflicting := strings.Replace(good, "ZZNOTETEXT", "ZZNOTETEXT amended", 1)
	for _, m := range []string{good, badHeader, badSegment, oversized, good, conflicting} {
		if ack := send(t, addr, m); ack == nil {
			t.Fatal("no ack")
		}
	}
	out := logs.String()
	for _, s := range phi {
		if strings.Contains(out, s) {
			t.Errorf("log output contains %q:\n%s", s, out)
		}
	}
	for _, want := range []string{`"msg":"hl7 message stored and acknowledged"`, `"msg":"hl7 retransmit recognised; original acknowledgment sent again"`,
		`"msg":"hl7 control id reused with different content; rejected and recorded as a conflict"`, `"msg":"hl7 message rejected: invalid header"`,
		`"msg":"hl7 message rejected: parse error"`, `"msg":"mllp frame too large; rejected"`, `"msg_type":"ADT^A01"`, `"key":"k_`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

// referenceContentHash is the content hash as first defined: every
// segment's id and fields joined by the field separator, ignored fields
// left empty, segments ended by CR. Stored hashes depend on it: a change
// would turn every retransmit after an upgrade into a conflict.
func referenceContentHash(m *hl7.Message, ignore []hl7.Path) [32]byte {
	var buf []byte
	sep := m.Delimiters().Field
	seen := map[string]int{}
	for _, seg := range m.Segments() {
		id := seg.Name()
		seen[id]++
		buf = append(buf, id...)
		for f := 1; f <= seg.NumFields(); f++ {
			buf = append(buf, sep)
			skip := false
			for _, p := range ignore {
				if p.Segment == id && p.Field == f && (p.SegmentRep == 0 || p.SegmentRep == seen[id]) {
					skip = true
				}
			}
			if !skip {
				buf = append(buf, seg.Field(f)...)
			}
		}
		buf = append(buf, '\r')
	}
	return sha256.Sum256(buf)
}

func TestContentHashIsStable(t *testing.T) {
	ignores := [][]hl7.Path{nil, {hl7.MustPath("MSH-7")}, {hl7.MustPath("MSH-7"), hl7.MustPath("EVN-2"), hl7.MustPath("OBX[2]-14")}}
	n := 0
	for _, file := range corpusFiles(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := hl7.Split(data)
		if err != nil {
			continue
		}
		for _, raw := range msgs {
			m, err := hl7.Parse(raw)
			if err != nil {
				continue
			}
			for _, ig := range ignores {
				if ContentHash(m, ig) != referenceContentHash(m, ig) {
					t.Fatalf("%s: content hash differs from its definition (ignore %v)", filepath.Base(file), ig)
				}
			}
			n++
		}
	}
	if n < 250 {
		t.Fatalf("only %d corpus messages hashed", n)
	}
}

func corpusFiles(t *testing.T) []string {
	var out []string
	root := shared.Path(t, "corpus", "hl7v2")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".hl7") {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

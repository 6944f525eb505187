package bench

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// TestIngestSmoke runs every phase briefly and checks that each produced
// figures and that the report names them. It asserts nothing about the
// goals: timing on a shared machine is noise.
func TestIngestSmoke(t *testing.T) {
	dir := t.TempDir()
	before := runtime.NumGoroutine()
	var out bytes.Buffer
	rep, err := Ingest(context.Background(), IngestOptions{Duration: 300 * time.Millisecond, Dir: dir}, &out)
	if err != nil {
		t.Fatalf("Ingest: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Logf("\n%s", text)
	for _, p := range []Phase{rep.Bolt1, rep.BoltGroup, rep.BoltHalf, rep.AppendHalf, rep.Ingest1, rep.IngestMany, rep.HalfLoad, rep.HalfFloor} {
		if p.Count <= 0 || p.Rate <= 0 || p.P99 <= 0 || p.P50 > p.P99 {
			t.Errorf("phase %q: %+v, want positive figures", p.Name, p)
		}
	}
	for _, line := range []string{
		"\nbbolt 1 Update/record ",
		"\nbbolt 64-way group commit ",
		"\nbbolt 64-way group commit, half load ",
		"\ncheckpoint.Append 64-way, half load ",
		"\ningest 1 conn ",
		"\ningest 64 conn ",
		"\ningest 64 conn, half load ",
		"\ningest 64 conn, half load, no fsync ",
		"\nfor reference: ACK p99 at half load without fsync ",
		"\ningest 1 conn: ",
		"\ningest 64 conn: ",
		"\nACK p99 at half load: ",
		"\nfor reference: a raw bbolt writer's own p99 at half load ",
		"\nfor reference: ACK p99 at half load ÷ the log's own commit p99 there ",
		"\nfor reference: at half load the log alone's writer p99 ",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("output lacks a line starting %q", strings.TrimPrefix(line, "\n"))
		}
	}
	if got := strings.Count(text, "(goal "); got != 3 {
		t.Errorf("%d ratio lines with a goal, want 3", got)
	}
	if strings.Count(text, " PASS")+strings.Count(text, " MISS") != 3 {
		t.Error("each ratio line should end PASS or MISS")
	}
	for _, r := range []Ratio{rep.OneConn, rep.ManyConns, rep.HalfLoadP99} {
		if r.Value <= 0 {
			t.Errorf("ratio %q = %v", r.Name, r.Value)
		}
	}
	if rep.HalfLoad.Offered <= 0 || rep.HalfLoad.Offered != rep.IngestMany.Rate/2 || rep.BoltHalf.Offered != rep.HalfLoad.Offered || rep.AppendHalf.Offered != rep.HalfLoad.Offered || rep.HalfFloor.Offered != rep.HalfLoad.Offered {
		t.Errorf("half load offered %v to ingest, %v to bbolt, %v to Append and %v without fsync, want half of %v to all", rep.HalfLoad.Offered, rep.BoltHalf.Offered, rep.AppendHalf.Offered, rep.HalfFloor.Offered, rep.IngestMany.Rate)
	}
	// The ingest phases report the log's own commits, of the measured part
	// only: no more commits than acknowledgments.
	for _, p := range []Phase{rep.BoltGroup, rep.BoltHalf, rep.AppendHalf, rep.Ingest1, rep.IngestMany, rep.HalfLoad} {
		if len(p.commits) > p.Count {
			t.Errorf("phase %q: %d commits for %d records", p.Name, len(p.commits), p.Count)
		}
		if p.CommitP50 <= 0 || p.CommitP50 > p.CommitP99 {
			t.Errorf("phase %q: commit p50 %v p99 %v, want positive figures", p.Name, p.CommitP50, p.CommitP99)
		}
	}
	if rep.HalfLoadP99.Value != float64(rep.HalfLoad.P99)/float64(rep.BoltHalf.CommitP99) {
		t.Errorf("half-load ratio %v, want ACK p99 %v ÷ commit p99 %v", rep.HalfLoadP99.Value, rep.HalfLoad.P99, rep.BoltHalf.CommitP99)
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("data directories left behind: %v", left)
	}
	// Every server, connection and committer has stopped.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestIngestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Ingest(ctx, IngestOptions{Duration: time.Second, Dir: t.TempDir()}, &bytes.Buffer{}); err == nil {
		t.Error("a cancelled run must fail")
	}
}

// The generated messages are valid, distinct and of the promised size.
func TestMessages(t *testing.T) {
	g := newMsgGen("T")
	ids, lanes := map[string]bool{}, map[string]bool{}
	for range 1000 {
		raw, ctrl := g.next()
		if len(raw) < 1000 || len(raw) > 2048 {
			t.Fatalf("message of %d bytes, want 1–2 KB", len(raw))
		}
		m, err := hl7.Parse(raw)
		if err != nil {
			t.Fatalf("Parse: %v\n%s", err, raw)
		}
		if p := m.CheckHeader(); len(p) > 0 {
			t.Fatalf("CheckHeader: %v", p[0])
		}
		h := m.Header()
		if h.Type != "ADT" || h.Trigger != "A01" || ids[h.ControlID] || h.ControlID != string(ctrl) {
			t.Fatalf("header %+v (duplicate control id?)", h)
		}
		ids[h.ControlID] = true
		lanes[m.Get(hl7.Path{Segment: "PID", Field: 3, Rep: 1, Component: 1}).String()] = true
	}
	if len(lanes) < 900 {
		t.Errorf("%d patients in 1000 messages, want them spread", len(lanes))
	}
}

// BenchmarkBoltUpdate is one raw bbolt Update per record, with checkpoint's
// options and a value the size of a test message: the floor under one
// connection's ingest.
func BenchmarkBoltUpdate(b *testing.B) {
	db, err := openBolt(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	payload, _ := newMsgGen("B").next()
	b.SetBytes(int64(len(payload)))
	seq := uint64(0)
	for b.Loop() {
		seq++
		if err := putOne(db, seq, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngestMLLP1 is one distinct ADT^A01 sent over one loopback MLLP
// connection, parsed, appended to checkpoint, fsynced and answered AA:
// compare its ns/op with BenchmarkBoltUpdate's.
func BenchmarkIngestMLLP1(b *testing.B) {
	r, err := startRig(b.TempDir(), 1, false)
	if err != nil {
		b.Fatal(err)
	}
	defer r.close()
	c, err := r.dial(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	gen := newMsgGen("B")
	deadline := time.Now().Add(time.Hour)
	msg, ctrl := gen.next()
	if err := c.send(msg, ctrl, deadline); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		msg, ctrl := gen.next()
		if err := c.send(msg, ctrl, deadline); err != nil {
			b.Fatal(err)
		}
	}
}

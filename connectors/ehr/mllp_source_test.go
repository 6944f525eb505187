package ehr

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/logging"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startSource serves an MLLPSource on a free loopback port, logging through
// the product's redacting logger at debug level into logs.
func startSource(t *testing.T, src *MLLPSource, maxFrame int, logs *syncBuffer) string {
	t.Helper()
	var w interface{ Write([]byte) (int, error) } = logs
	if logs == nil {
		w = &syncBuffer{}
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

func TestMLLPSourceAcks(t *testing.T) {
	var intakeErr error
	var got []string
	var mu sync.Mutex
	src := &MLLPSource{Name: "adt", Intake: func(ctx context.Context, source string, m *hl7.Message, raw []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if intakeErr != nil {
			return intakeErr
		}
		got = append(got, source+" "+RecordKey(source, m.Header()))
		return nil
	}}
	addr := startSource(t, src, 4096, nil)

	t.Run("AA with swapped header", func(t *testing.T) {
		ack := send(t, addr, admit)
		code, id, _, _ := ack.Ack()
		h := ack.Header()
		if code != hl7.AA || id != "C100" {
			t.Fatalf("ack = %s %s", code, id)
		}
		if h.SendingApp != "EHRBRIDGE" || h.SendingFacility != "CRM" || h.ReceivingApp != "EPIC" || h.ReceivingFacility != "HOSP" ||
			h.Type != "ACK" || h.Trigger != "A01" || h.Version != "2.5.1" || h.ProcessingID != "P" {
			t.Errorf("ack header = %+v", h)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 1 || got[0] != "adt adt|EPIC|HOSP|C100" {
			t.Errorf("intake saw %q", got)
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
	t.Run("AE when intake fails", func(t *testing.T) {
		mu.Lock()
		intakeErr = errors.New("checkpoint log: disk full")
		mu.Unlock()
		defer func() { mu.Lock(); intakeErr = nil; mu.Unlock() }()
		ack := send(t, addr, admit)
		code, _, text, _ := ack.Ack()
		if code != hl7.AE || text != "checkpoint log: disk full" {
			t.Fatalf("ack = %s %q", code, text)
		}
	})
	t.Run("no ACK for a frame without MSH", func(t *testing.T) {
		if ack := send(t, addr, "hello"); ack != nil {
			t.Errorf("got an ack for garbage")
		}
	})
	if src.Accepted.Load() != 1 || src.Rejected.Load() != 4 || src.Errored.Load() != 1 {
		t.Errorf("counters accepted=%d rejected=%d errored=%d", src.Accepted.Load(), src.Rejected.Load(), src.Errored.Load())
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

	logs := &syncBuffer{}
	src := &MLLPSource{Name: "adt"}
	addr := startSource(t, src, 4096, logs)
	for _, m := range []string{good, badHeader, badSegment, oversized, good} {
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
	for _, want := range []string{`"msg":"hl7 message accepted"`, `"msg":"hl7 message rejected: invalid header"`,
		`"msg":"hl7 message rejected: parse error"`, `"msg":"mllp frame too large; rejected"`, `"msg_type":"ADT^A01"`, `"key":"k_`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

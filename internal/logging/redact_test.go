package logging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const hl7Error = "parse failed: PID|1||12345^^^HOSP^MR||DOE^JOHN"

type patient struct{ Name, MRN string }

type stringer string

func (s stringer) String() string { return string(s) }

// valuer resolves to whatever value it holds, to exercise resolution.
type valuer struct{ v slog.Value }

func (v valuer) LogValue() slog.Value { return v.v }

type panicValuer struct{}

func (panicValuer) LogValue() slog.Value { panic("secret DOE^JOHN") }

// selfValuer never stops resolving to another LogValuer.
type selfValuer struct{}

func (s selfValuer) LogValue() slog.Value { return slog.AnyValue(s) }

type nilPtrError struct{ msg string }

func (e *nilPtrError) Error() string { return e.msg }

func TestRedactionRules(t *testing.T) {
	tm := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	long := strings.Repeat("x", 600)
	longUTF8 := strings.Repeat("é", 300) // 600 bytes, cut must not split a rune
	var nilErr *nilPtrError

	tests := []struct {
		name     string
		opts     Options
		log      func(*slog.Logger)
		key      string // dotted path in the output
		want     string
		wantJSON string // when JSON renders the value differently
	}{
		{name: "message passes", log: func(l *slog.Logger) { l.Info("constant message") },
			key: "msg", want: "constant message"},
		{name: "unsafe string", log: func(l *slog.Logger) { l.Info("m", "name", "DOE") },
			key: "name", want: RedactedText},
		{name: "safe key string", log: func(l *slog.Logger) { l.Info("m", "source", "lab-a") },
			key: "source", want: "lab-a"},
		{name: "safe key via slog.String", log: func(l *slog.Logger) { l.Info("m", slog.String("msg_type", "ADT")) },
			key: "msg_type", want: "ADT"},
		{name: "extra safe key", opts: Options{SafeKeys: []string{"site"}},
			log: func(l *slog.Logger) { l.Info("m", "site", "north") }, key: "site", want: "north"},
		{name: "excluded key lane", log: func(l *slog.Logger) { l.Info("m", "lane", "MRN1") },
			key: "lane", want: RedactedText},
		{name: "excluded key file", log: func(l *slog.Logger) { l.Info("m", "file", "doe_john.hl7") },
			key: "file", want: RedactedText},
		{name: "safe key with message data", log: func(l *slog.Logger) { l.Info("m", "source", "PID|1||x") },
			key: "source", want: valueMessageDataText},
		{name: "bad key", log: func(l *slog.Logger) { l.Info("m", []any{"DOE"}...) },
			key: "!BADKEY", want: RedactedText},
		{name: "int", log: func(l *slog.Logger) { l.Info("m", "count", 42) }, key: "count", want: "42"},
		{name: "negative int", log: func(l *slog.Logger) { l.Info("m", "delta", int8(-3)) }, key: "delta", want: "-3"},
		{name: "uint", log: func(l *slog.Logger) { l.Info("m", "bytes", uint32(7)) }, key: "bytes", want: "7"},
		{name: "float", log: func(l *slog.Logger) { l.Info("m", "ratio", 0.25) }, key: "ratio", want: "0.25"},
		{name: "bool", log: func(l *slog.Logger) { l.Info("m", "ok", true) }, key: "ok", want: "true"},
		{name: "duration", log: func(l *slog.Logger) { l.Info("m", "took", 1500*time.Millisecond) },
			key: "took", want: "1.5s", wantJSON: "1500000000"},
		{name: "time", log: func(l *slog.Logger) { l.Info("m", "at", tm) },
			key: "at", want: "2024-01-02T03:04:05.000Z", wantJSON: "2024-01-02T03:04:05Z"},
		{name: "error passes", log: func(l *slog.Logger) { l.Info("m", "err", errors.New("dial tcp: refused")) },
			key: "err", want: "dial tcp: refused"},
		{name: "error under any key", log: func(l *slog.Logger) { l.Info("m", "cause", errors.New("timeout")) },
			key: "cause", want: "timeout"},
		{name: "wrapped error", log: func(l *slog.Logger) { l.Info("m", "err", fmt.Errorf("send: %w", io.EOF)) },
			key: "err", want: "send: EOF"},
		{name: "error with pipe only", log: func(l *slog.Logger) { l.Info("m", "err", errors.New("want a|b, got c")) },
			key: "err", want: "want a|b, got c"},
		{name: "error with HL7 segment", log: func(l *slog.Logger) { l.Info("m", "err", errors.New(hl7Error)) },
			key: "err", want: errorMessageDataText},
		{name: "error with segment ID only", log: func(l *slog.Logger) { l.Info("m", "err", errors.New("bad ZP1|x")) },
			key: "err", want: errorMessageDataText},
		{name: "error with quoted segments", log: func(l *slog.Logger) {
			l.Info("m", "err", fmt.Errorf("bad message %q", "MSH|x\rEVN|y"))
		}, key: "err", want: errorMessageDataText},
		{name: "error with pipe then caret", log: func(l *slog.Logger) { l.Info("m", "err", errors.New("a | b ^ c")) },
			key: "err", want: errorMessageDataText},
		{name: "error string is a string", log: func(l *slog.Logger) { l.Info("m", "err", errors.New("x").Error()) },
			key: "err", want: RedactedText},
		{name: "long error truncated", log: func(l *slog.Logger) { l.Info("m", "err", errors.New(long)) },
			key: "err", want: long[:maxErrorBytes-len(truncatedMark)] + truncatedMark},
		{name: "long UTF-8 error truncated on rune", log: func(l *slog.Logger) { l.Info("m", "err", errors.New(longUTF8)) },
			key: "err", want: longUTF8[:maxErrorBytes-len(truncatedMark)] + truncatedMark},
		{name: "nil pointer error", log: func(l *slog.Logger) { l.Info("m", "err", error(nilErr)) },
			key: "err", want: errorUnavailableText},
		{name: "nil any", log: func(l *slog.Logger) { l.Info("m", "err", nil) }, key: "err", want: "<nil>"},
		{name: "Key unsafe key", log: func(l *slog.Logger) { l.Info("m", "record", Key("lab-a|X|Y|123")) },
			key: "record", want: Hash(testHashKey, "lab-a|X|Y|123")},
		{name: "Key under safe key", log: func(l *slog.Logger) { l.Info("m", "source", Key("MRN1")) },
			key: "source", want: Hash(testHashKey, "MRN1")},
		{name: "Key other hash key", opts: Options{HashKey: otherHashKey},
			log: func(l *slog.Logger) { l.Info("m", "lane", Key("MRN1")) }, key: "lane", want: Hash(otherHashKey, "MRN1")},
		{name: "Safe unsafe key", log: func(l *slog.Logger) { l.Info("m", "mapping", Safe("adt-default")) },
			key: "mapping", want: "adt-default"},
		{name: "Safe with message data", log: func(l *slog.Logger) { l.Info("m", "x", Safe("PID|1")) },
			key: "x", want: valueMessageDataText},
		{name: "PHI safe key", log: func(l *slog.Logger) { l.Info("m", "source", PHI("DOE")) },
			key: "source", want: RedactedText},
		{name: "struct", log: func(l *slog.Logger) { l.Info("m", "p", patient{"DOE", "1"}) }, key: "p", want: RedactedText},
		{name: "struct under safe key", log: func(l *slog.Logger) { l.Info("m", "state", patient{"DOE", "1"}) },
			key: "state", want: RedactedText},
		{name: "pointer", log: func(l *slog.Logger) { l.Info("m", "p", &patient{"DOE", "1"}) }, key: "p", want: RedactedText},
		{name: "bytes", log: func(l *slog.Logger) { l.Info("m", "raw", []byte("DOE")) }, key: "raw", want: RedactedText},
		{name: "map", log: func(l *slog.Logger) { l.Info("m", "m", map[string]string{"n": "DOE"}) }, key: "m", want: RedactedText},
		{name: "slice", log: func(l *slog.Logger) { l.Info("m", "s", []string{"DOE"}) }, key: "s", want: RedactedText},
		{name: "stringer", log: func(l *slog.Logger) { l.Info("m", "s", stringer("DOE")) }, key: "s", want: RedactedText},
		{name: "stringer under safe key", log: func(l *slog.Logger) { l.Info("m", "source", stringer("x")) },
			key: "source", want: RedactedText},
		{name: "valuer to string unsafe", log: func(l *slog.Logger) { l.Info("m", "v", valuer{slog.StringValue("DOE")}) },
			key: "v", want: RedactedText},
		{name: "valuer to string safe key", log: func(l *slog.Logger) { l.Info("m", "state", valuer{slog.StringValue("idle")}) },
			key: "state", want: "idle"},
		{name: "valuer to int", log: func(l *slog.Logger) { l.Info("m", "v", valuer{slog.IntValue(5)}) }, key: "v", want: "5"},
		{name: "valuer to Key", log: func(l *slog.Logger) { l.Info("m", "v", valuer{slog.AnyValue(Key("MRN1"))}) },
			key: "v", want: Hash(testHashKey, "MRN1")},
		{name: "valuer to valuer to error", log: func(l *slog.Logger) {
			l.Info("m", "v", valuer{slog.AnyValue(valuer{slog.AnyValue(errors.New("boom"))})})
		}, key: "v", want: "boom"},
		{name: "valuer to group", log: func(l *slog.Logger) {
			l.Info("m", "p", valuer{slog.GroupValue(slog.String("name", "DOE"), slog.Any("mrn", Key("MRN1")),
				slog.String("state", "new"), slog.Int("visits", 3))})
		}, key: "p.name", want: RedactedText},
		{name: "valuer to group key", log: func(l *slog.Logger) {
			l.Info("m", "p", valuer{slog.GroupValue(slog.String("name", "DOE"), slog.Any("mrn", Key("MRN1")))})
		}, key: "p.mrn", want: Hash(testHashKey, "MRN1")},
		{name: "valuer to group safe", log: func(l *slog.Logger) {
			l.Info("m", "p", valuer{slog.GroupValue(slog.String("name", "DOE"), slog.String("state", "new"))})
		}, key: "p.state", want: "new"},
		{name: "panicking valuer", log: func(l *slog.Logger) { l.Info("m", "v", panicValuer{}) }, key: "v", want: RedactedText},
		{name: "endless valuer", log: func(l *slog.Logger) { l.Info("m", "v", selfValuer{}) }, key: "v", want: RedactedText},
		{name: "nested group string", log: func(l *slog.Logger) {
			l.Info("m", slog.Group("a", slog.Group("b", "name", "DOE", "count", 3)))
		}, key: "a.b.name", want: RedactedText},
		{name: "nested group int", log: func(l *slog.Logger) {
			l.Info("m", slog.Group("a", slog.Group("b", "name", "DOE", "count", 3)))
		}, key: "a.b.count", want: "3"},
		{name: "nested group safe", log: func(l *slog.Logger) {
			l.Info("m", slog.Group("a", slog.Group("b", "ack_code", "AA")))
		}, key: "a.b.ack_code", want: "AA"},
		{name: "LogAttrs", log: func(l *slog.Logger) {
			l.LogAttrs(context.Background(), slog.LevelWarn, "m", slog.String("name", "DOE"))
		}, key: "name", want: RedactedText},
		{name: "With unsafe", log: func(l *slog.Logger) { l.With("name", "DOE", "source", "lab").Info("m") },
			key: "name", want: RedactedText},
		{name: "With safe", log: func(l *slog.Logger) { l.With("name", "DOE", "source", "lab").Info("m") },
			key: "source", want: "lab"},
		{name: "With Key", log: func(l *slog.Logger) { l.With("lane", Key("MRN1")).Info("m") },
			key: "lane", want: Hash(testHashKey, "MRN1")},
		{name: "With group value", log: func(l *slog.Logger) { l.With(slog.Group("g", "name", "DOE")).Info("m") },
			key: "g.name", want: RedactedText},
		{name: "WithGroup", log: func(l *slog.Logger) { l.WithGroup("g").Info("m", "name", "DOE") },
			key: "g.name", want: RedactedText},
		{name: "WithGroup safe", log: func(l *slog.Logger) { l.WithGroup("g").Info("m", "op", "upsert") },
			key: "g.op", want: "upsert"},
		{name: "WithGroup then With", log: func(l *slog.Logger) {
			l.WithGroup("g").With("name", "DOE").WithGroup("h").Info("m", "count", 1)
		}, key: "g.name", want: RedactedText},
		{name: "WithGroup then With inner", log: func(l *slog.Logger) {
			l.WithGroup("g").With("name", "DOE").WithGroup("h").Info("m", "status", "sent")
		}, key: "g.h.status", want: "sent"},
	}
	for _, tt := range tests {
		for _, format := range formats {
			t.Run(tt.name+"/"+format, func(t *testing.T) {
				line, got := logLine(t, format, tt.opts, tt.log)
				want := tt.want
				if format == "json" && tt.wantJSON != "" {
					want = tt.wantJSON
				}
				v, ok := got[tt.key]
				if !ok {
					t.Fatalf("key %q missing from %s", tt.key, line)
				}
				if v != want {
					t.Errorf("%s = %q, want %q\nline: %s", tt.key, v, want, line)
				}
				if strings.Contains(line, "DOE") {
					t.Errorf("patient data in output: %s", line)
				}
			})
		}
	}
}

func TestTruncateLength(t *testing.T) {
	for _, n := range []int{511, 512, 513, 600, 5000} {
		for _, unit := range []string{"x", "é", "日本"} {
			s := strings.Repeat(unit, n/len(unit)+1)
			got := truncate(s, maxErrorBytes)
			if len(got) > maxErrorBytes {
				t.Errorf("len(truncate(%d×%q)) = %d > %d", n, unit, len(got), maxErrorBytes)
			}
			if !strings.HasPrefix(s, strings.TrimSuffix(got, truncatedMark)) {
				t.Errorf("truncate(%d×%q) is not a prefix", n, unit)
			}
		}
	}
}

func TestLooksLikeMessageData(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"", false},
		{"connection refused", false},
		{"a|b", false},
		{"x^y|z", false}, // caret before the pipe is not HL7 field structure
		{"ABCD|", false}, // "BCD|" is inside a word
		{"pid|1", false}, // segment IDs are upper case
		{"PID|1", true},
		{"err: OBX|1|TX", true},
		{"seg \"MSH|x\\rPV1|y\"", true},
		{"x\\rZ01|", true},
		{"a|b^c", true},
	}
	for _, tt := range tests {
		if got := looksLikeMessageData(tt.s); got != tt.want {
			t.Errorf("looksLikeMessageData(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestHash(t *testing.T) {
	re := regexp.MustCompile(`^k_[0-9a-f]{16}$`)
	a := Hash(testHashKey, "lab-a|SEND|FAC|MSG1")
	if !re.MatchString(a) {
		t.Fatalf("Hash = %q, want k_ and 16 hex digits", a)
	}
	if b := Hash(testHashKey, "lab-a|SEND|FAC|MSG1"); a != b {
		t.Errorf("Hash not stable: %q != %q", a, b)
	}
	if b := Hash(otherHashKey, "lab-a|SEND|FAC|MSG1"); a == b {
		t.Errorf("Hash same under different keys: %q", a)
	}
	if b := Hash(testHashKey, "lab-a|SEND|FAC|MSG2"); a == b {
		t.Errorf("Hash same for different values: %q", a)
	}
}

// TestProcessHashKey checks that loggers without a configured key agree with
// each other (so lines correlate within a run) and do not use an empty key.
func TestProcessHashKey(t *testing.T) {
	hashOf := func() string {
		var buf bytes.Buffer
		l, err := New(&buf, Options{Format: "json"})
		if err != nil {
			t.Fatal(err)
		}
		l.Info("m", "lane", Key("MRN1"))
		return parseJSONLine(t, strings.TrimSpace(buf.String()))["lane"]
	}
	a, b := hashOf(), hashOf()
	if a != b {
		t.Errorf("random-key loggers disagree: %q vs %q", a, b)
	}
	if a == Hash(nil, "MRN1") || !strings.HasPrefix(a, "k_") {
		t.Errorf("unexpected hash %q with random key", a)
	}
}

func TestHashKeyCopied(t *testing.T) {
	key := append([]byte(nil), testHashKey...)
	var buf bytes.Buffer
	l, err := New(&buf, Options{Format: "json", HashKey: key})
	if err != nil {
		t.Fatal(err)
	}
	key[0] ^= 0xff
	l.Info("m", "lane", Key("MRN1"))
	if got := parseJSONLine(t, strings.TrimSpace(buf.String()))["lane"]; got != Hash(testHashKey, "MRN1") {
		t.Errorf("hash changed after caller modified key: %q", got)
	}
}

func TestSafeKeysIsCopy(t *testing.T) {
	k := SafeKeys()
	k[0] = "name"
	if SafeKeys()[0] == "name" {
		t.Fatal("SafeKeys returned shared storage")
	}
	for _, bad := range []string{"file", "path", "lane", "name", "err", "msg"} {
		for _, k := range SafeKeys() {
			if k == bad {
				t.Errorf("%q must not be a default safe key", bad)
			}
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		w       io.Writer
		opts    Options
		wantErr bool
	}{
		{name: "default text", w: io.Discard},
		{name: "text", w: io.Discard, opts: Options{Format: "text"}},
		{name: "json upper", w: io.Discard, opts: Options{Format: "JSON"}},
		{name: "unknown format", w: io.Discard, opts: Options{Format: "xml"}, wantErr: true},
		{name: "nil writer", opts: Options{Format: "text"}, wantErr: true},
		{name: "short hash key", w: io.Discard, opts: Options{HashKey: []byte("short")}, wantErr: true},
		{name: "min hash key", w: io.Discard, opts: Options{HashKey: make([]byte, MinHashKeyLen)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(tt.w, tt.opts)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New error = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && l == nil {
				t.Fatal("nil logger without error")
			}
		})
	}
}

func TestLevel(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, Options{Format: "text", Level: slog.LevelWarn})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("dropped")
	l.Warn("kept")
	if out := buf.String(); strings.Contains(out, "dropped") || !strings.Contains(out, "kept") {
		t.Errorf("level filtering wrong: %q", out)
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{in: "debug", want: slog.LevelDebug},
		{in: "info", want: slog.LevelInfo},
		{in: "warn", want: slog.LevelWarn},
		{in: "error", want: slog.LevelError},
		{in: " ERROR ", want: slog.LevelError},
		{in: "", wantErr: true},
		{in: "verbose", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseLevel(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestNilInnerPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for nil inner handler")
		}
	}()
	NewRedactingHandler(nil, RedactOptions{})
}

// TestConcurrent exercises the shared HMAC pool and derived handlers under
// the race detector.
func TestConcurrent(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})
	l, err := New(w, Options{Format: "json", HashKey: testHashKey})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			ll := l.With("worker", i).WithGroup("g")
			for j := range 100 {
				ll.Info("m", "lane", Key(fmt.Sprintf("MRN%d", j)), "name", "DOE")
			}
		})
	}
	wg.Wait()
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		m := parseJSONLine(t, line)
		if m["g.name"] != RedactedText || !strings.HasPrefix(m["g.lane"], "k_") {
			t.Fatalf("bad concurrent line: %s", line)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

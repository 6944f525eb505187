package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"testing"
)

var (
	testHashKey  = []byte("test-hash-key-0123456789abcdef")
	otherHashKey = []byte("other-hash-key-0123456789abcdef")
	formats      = []string{"text", "json"}
)

// logLine builds a logger in format, lets fn log exactly one record and
// returns the raw line plus its attributes flattened to dotted keys.
func logLine(t *testing.T, format string, opts Options, fn func(*slog.Logger)) (string, map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	opts.Format = format
	if opts.HashKey == nil {
		opts.HashKey = testHashKey
	}
	l, err := New(&buf, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	fn(l)
	line := strings.TrimSuffix(buf.String(), "\n")
	if strings.Contains(line, "\n") {
		t.Fatalf("want one line, got %q", line)
	}
	if format == "json" {
		return line, parseJSONLine(t, line)
	}
	return line, parseTextLine(t, line)
}

func parseJSONLine(t *testing.T, line string) map[string]string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("invalid JSON %q: %v", line, err)
	}
	out := make(map[string]string)
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			switch v := v.(type) {
			case map[string]any:
				walk(prefix+k+".", v)
			case string:
				out[prefix+k] = v
			case float64:
				out[prefix+k] = strconv.FormatFloat(v, 'f', -1, 64)
			case bool:
				out[prefix+k] = strconv.FormatBool(v)
			case nil:
				out[prefix+k] = "<nil>"
			default:
				t.Fatalf("unexpected JSON value %T for %s", v, prefix+k)
			}
		}
	}
	walk("", m)
	return out
}

// parseTextLine reads slog's text format: key=value pairs separated by
// spaces, values quoted Go-style when they need it.
func parseTextLine(t *testing.T, line string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	s := line
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			t.Fatalf("malformed text line %q at %q", line, s)
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				t.Fatalf("bad quoted value in %q: %v", line, err)
			}
			val, _ = strconv.Unquote(q)
			s = s[len(q):]
		} else if sp := strings.IndexByte(s, ' '); sp >= 0 {
			val = s[:sp]
			s = s[sp:]
		} else {
			val, s = s, ""
		}
		out[key] = val
		s = strings.TrimPrefix(s, " ")
	}
	return out
}

package logging

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"log/slog"
	"sync"
	"unicode/utf8"
)

// RedactOptions configures NewRedactingHandler.
type RedactOptions struct {
	// HashKey is the HMAC key for Key values. Empty means the random
	// per-process key, whose hashes do not survive a restart.
	HashKey []byte
	// SafeKeys adds attribute keys to the SafeKeys allowlist.
	SafeKeys []string
}

// maxErrorBytes bounds error text so a wrapped error that unexpectedly
// embeds a whole payload leaks at most a fragment of it.
const maxErrorBytes = 512

// maxResolve and maxDepth stop a LogValuer that returns itself, or groups
// nested without end, from hanging or overflowing the logging goroutine.
const (
	maxResolve = 100
	maxDepth   = 32
)

var redactedValue = slog.StringValue(RedactedText)

// policy is shared, read-only after construction, by a handler and all the
// handlers derived from it with WithAttrs and WithGroup.
type policy struct {
	safe map[string]struct{}
	macs sync.Pool // of hash.Hash; HMAC setup costs more than hashing a key
}

type redactingHandler struct {
	inner slog.Handler
	pol   *policy
}

// NewRedactingHandler returns a handler that applies the package's redaction
// policy to every attribute before passing the record to inner, which must
// not be nil.
func NewRedactingHandler(inner slog.Handler, opts RedactOptions) slog.Handler {
	if inner == nil {
		panic("logging: NewRedactingHandler with nil inner handler")
	}
	var key []byte
	if len(opts.HashKey) > 0 {
		// Copied so a caller reusing its buffer cannot change hashes
		// mid-run.
		key = append([]byte(nil), opts.HashKey...)
	} else {
		key = processHashKey()
	}
	p := &policy{safe: make(map[string]struct{})}
	for _, k := range SafeKeys() {
		p.safe[k] = struct{}{}
	}
	for _, k := range opts.SafeKeys {
		p.safe[k] = struct{}{}
	}
	p.macs.New = func() any { return hmac.New(sha256.New, key) }
	return &redactingHandler{inner: inner, pol: p}
}

// Enabled defers to the inner handler so level filtering is unchanged.
func (h *redactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

// Handle passes r to the inner handler with every attribute redacted.
func (h *redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.NumAttrs() == 0 {
		return h.inner.Handle(ctx, r)
	}
	// A new record rather than a modified one: r's attributes may be
	// shared with the caller's copy.
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.pol.attr(a, 0))
		return true
	})
	return h.inner.Handle(ctx, out)
}

// WithAttrs redacts attrs once, here, rather than on every record.
func (h *redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.pol.attr(a, 0)
	}
	return &redactingHandler{inner: h.inner.WithAttrs(red), pol: h.pol}
}

// WithGroup passes the group name through: names come from code, not data.
func (h *redactingHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &redactingHandler{inner: h.inner.WithGroup(name), pol: h.pol}
}

func (p *policy) attr(a slog.Attr, depth int) slog.Attr {
	return slog.Attr{Key: a.Key, Value: p.value(a.Key, a.Value, depth)}
}

func (p *policy) value(key string, v slog.Value, depth int) slog.Value {
	for range maxResolve {
		switch v.Kind() {
		case slog.KindString:
			if _, ok := p.safe[key]; ok {
				return tripwire(v.String())
			}
			return redactedValue
		case slog.KindInt64, slog.KindUint64, slog.KindFloat64,
			slog.KindBool, slog.KindDuration, slog.KindTime:
			return v
		case slog.KindGroup:
			if depth >= maxDepth {
				return redactedValue
			}
			attrs := v.Group()
			out := make([]slog.Attr, len(attrs))
			for i, a := range attrs {
				out[i] = p.attr(a, depth+1)
			}
			return slog.GroupValue(out...)
		case slog.KindLogValuer:
			// Our own types are recognised before resolving: their
			// LogValue methods are the fallback for handlers that do
			// not redact, not what this handler should log.
			switch t := v.Any().(type) {
			case Key:
				return slog.StringValue(p.hash(string(t)))
			case Safe:
				return tripwire(string(t))
			case PHI:
				return redactedValue
			}
			var ok bool
			if v, ok = resolveOnce(v.LogValuer()); !ok {
				return redactedValue
			}
		case slog.KindAny:
			switch t := v.Any().(type) {
			case nil:
				return v
			case error:
				return slog.StringValue(errorText(t))
			}
			return redactedValue
		default:
			return redactedValue
		}
	}
	return redactedValue
}

// resolveOnce calls LogValue one step at a time, unlike slog.Value.Resolve,
// so that a LogValuer returning a Key, Safe or PHI is still recognised; a
// panic yields ok=false instead of a panic message that might quote data.
func resolveOnce(lv slog.LogValuer) (v slog.Value, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return lv.LogValue(), true
}

func (p *policy) hash(s string) string {
	m := p.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(s))
	var sum [sha256.Size]byte
	out := formatHash(m.Sum(sum[:0]))
	p.macs.Put(m)
	return out
}

// tripwire lets through a string that code has declared safe unless it
// plainly holds HL7 content, which would mean the declaration is wrong.
func tripwire(s string) slog.Value {
	if looksLikeMessageData(s) {
		return slog.StringValue(valueMessageDataText)
	}
	return slog.StringValue(s)
}

func errorText(err error) (s string) {
	// A nil pointer with an Error method on the value, or a buggy Error,
	// must not take down the goroutine that is logging.
	defer func() {
		if recover() != nil {
			s = errorUnavailableText
		}
	}()
	s = err.Error()
	if looksLikeMessageData(s) {
		return errorMessageDataText
	}
	return truncate(s, maxErrorBytes)
}

const truncatedMark = " [truncated]"

// truncate cuts s to at most n bytes including the mark, on a rune boundary
// so JSON output stays valid UTF-8.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}

// looksLikeMessageData reports whether s seems to contain HL7 v2 content:
// a field separator followed later by a component separator, or a segment
// ID followed by a field separator. False positives only cost detail in a
// log line; false negatives leak, so the test errs wide.
func looksLikeMessageData(s string) bool {
	first := -1
	for i := 0; i < len(s); i++ {
		if s[i] != '|' {
			continue
		}
		if first < 0 {
			first = i
		}
		if segmentIDBefore(s, i) {
			return true
		}
	}
	if first < 0 {
		return false
	}
	for i := len(s) - 1; i > first; i-- {
		if s[i] == '^' {
			return true
		}
	}
	return false
}

// segmentIDBefore reports whether s[bar-3:bar] is a segment ID ([A-Z][A-Z0-9]{2})
// that starts at a word boundary.
func segmentIDBefore(s string, bar int) bool {
	if bar < 3 || !isUpper(s[bar-3]) || !isUpperOrDigit(s[bar-2]) || !isUpperOrDigit(s[bar-1]) {
		return false
	}
	if bar == 3 || !isWordByte(s[bar-4]) {
		return true
	}
	// A message formatted with %q shows its segment separators as `\r`,
	// which would otherwise hide the boundary before every segment ID.
	return bar >= 5 && s[bar-5] == '\\' && (s[bar-4] == 'r' || s[bar-4] == 'n')
}

func isUpper(c byte) bool        { return 'A' <= c && c <= 'Z' }
func isUpperOrDigit(c byte) bool { return isUpper(c) || '0' <= c && c <= '9' }
func isWordByte(c byte) bool {
	return isUpperOrDigit(c) || 'a' <= c && c <= 'z' || c == '_'
}

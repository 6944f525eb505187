package logging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// MinHashKeyLen is the shortest HashKey New accepts: a short key would let
// anyone holding the logs recover identifiers by trying likely values.
const MinHashKeyLen = 16

// Options configures New.
type Options struct {
	// Format is "text" or "json"; empty means "text".
	Format string
	// Level is the minimum level logged.
	Level slog.Level
	// HashKey is the HMAC key for Key values, at least MinHashKeyLen
	// bytes; nil means a random per-process key.
	HashKey []byte
	// SafeKeys adds attribute keys to the SafeKeys allowlist.
	SafeKeys []string
}

// New returns a logger writing to w in the requested format, with every
// record passed through the redacting handler.
func New(w io.Writer, opts Options) (*slog.Logger, error) {
	if w == nil {
		return nil, errors.New("logging: nil writer")
	}
	if n := len(opts.HashKey); n > 0 && n < MinHashKeyLen {
		return nil, fmt.Errorf("logging: hash key is %d bytes, need at least %d", n, MinHashKeyLen)
	}
	ho := &slog.HandlerOptions{Level: opts.Level}
	var inner slog.Handler
	switch strings.ToLower(strings.TrimSpace(opts.Format)) {
	case "", "text":
		inner = slog.NewTextHandler(w, ho)
	case "json":
		inner = slog.NewJSONHandler(w, ho)
	default:
		return nil, fmt.Errorf("logging: unknown format %q (want text or json)", opts.Format)
	}
	h := NewRedactingHandler(inner, RedactOptions{HashKey: opts.HashKey, SafeKeys: opts.SafeKeys})
	return slog.New(h), nil
}

// ParseLevel converts a configured level name (debug, info, warn, error;
// case-insensitive) to a slog.Level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("logging: unknown level %q (want debug, info, warn or error)", s)
}

package logging

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkRedactingHandler reports the plain and redacting text handlers
// side by side so the cost of redaction is visible as a ratio.
func BenchmarkRedactingHandler(b *testing.B) {
	err := errors.New("dial tcp 10.0.0.5:443: connection refused")
	plain := slog.NewTextHandler(io.Discard, nil)
	handlers := []struct {
		name string
		h    slog.Handler
	}{
		{"plain", plain},
		{"redacting", NewRedactingHandler(plain, RedactOptions{HashKey: testHashKey})},
	}
	for _, hc := range handlers {
		b.Run(hc.name, func(b *testing.B) {
			l := slog.New(hc.h).With("component", "mllp", "remote", "10.0.0.5:2575")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				l.LogAttrs(ctx, slog.LevelInfo, "message handled",
					slog.String("msg_type", "ADT"),
					slog.String("name", "DOE^JOHN"),
					slog.Any("record", Key("lab-a|SEND|FAC|MSG00001")),
					slog.Int("bytes", 1834),
					slog.Duration("took", 3*time.Millisecond),
					slog.Any("err", err),
				)
			}
		})
	}
}

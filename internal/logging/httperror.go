package logging

import (
	"errors"
	"log"
	"log/slog"
	"strings"
)

// NewHTTPErrorLog returns a logger for http.Server.ErrorLog that sends
// net/http's own lines through log, and so through the redacting handler,
// instead of printing them as record messages, which are not redacted:
//
//   - "http: TLS handshake error from ADDR: ERR" goes to handshakes, which
//     logs each peer at most once per interval with a count (nil handshakes
//     logs each one);
//   - "http: panic serving ADDR: VALUE" and its stack (also http2's) are
//     logged as "http handler panicked" with the peer and the function that
//     panicked, never VALUE: a panic value can hold patient data;
//   - any other line is logged as "http server problem" with the line as an
//     error value, so the error tripwire and length cap apply.
func NewHTTPErrorLog(l *slog.Logger, handshakes *PeerLimiter) *log.Logger {
	return log.New(&httpErrorWriter{log: l, handshakes: handshakes}, "", 0)
}

type httpErrorWriter struct {
	log        *slog.Logger
	handshakes *PeerLimiter
}

func (w *httpErrorWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	switch {
	case strings.HasPrefix(line, "http: TLS handshake error from "):
		addr, reason := splitAddr(strings.TrimPrefix(line, "http: TLS handshake error from "))
		err := errors.New(reason)
		if w.handshakes != nil {
			w.handshakes.Fail(addr, err)
		} else {
			w.log.Warn("TLS handshake failed", "remote", addr, "err", err)
		}
	case strings.HasPrefix(line, "http: panic serving "), strings.HasPrefix(line, "http2: panic serving "):
		_, rest, _ := strings.Cut(line, "panic serving ")
		addr, _ := splitAddr(rest)
		// The stack follows the value, which may hold any text: it
		// starts at the last goroutine header.
		stack := ""
		if i := strings.LastIndex(line, "\ngoroutine "); i >= 0 {
			stack = line[i+1:]
		}
		w.log.Error("http handler panicked; request aborted", "remote", addr,
			"where", Safe(panicSiteFromStack(stack)))
	default:
		w.log.Warn("http server problem", "err", errors.New(line))
	}
	return len(p), nil
}

// splitAddr splits "ADDR: rest" (ADDR may be an IPv6 host:port, which has
// colons but no ": ").
func splitAddr(s string) (addr, rest string) {
	addr, rest, _ = strings.Cut(s, ": ")
	if i := strings.IndexByte(addr, '\n'); i >= 0 {
		addr = addr[:i]
	}
	return addr, rest
}

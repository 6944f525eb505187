package daemon

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/logging"
)

// httpLimits are the timeouts of every HTTP server the daemon runs (the
// admin endpoint, the FHIR subscription endpoints). A peer that sends its
// headers slowly, a body that never ends, a client that stops reading and a
// keep-alive connection left open each hold a connection and a goroutine:
// these bound how long.
type httpLimits struct {
	// ReadHeader bounds reading a request's headers (slowloris).
	ReadHeader time.Duration
	// Read bounds reading a whole request, body included.
	Read time.Duration
	// Write bounds a response that makes no progress: each write of a
	// response moves the deadline on, so a long response that keeps
	// flowing (a backup of a large log) is not cut, and a client that
	// stops reading is.
	Write time.Duration
	// Idle closes a keep-alive connection without a request.
	Idle time.Duration
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int
}

// serverLimits is what newHTTPServer applies; tests shorten it.
var serverLimits = httpLimits{
	ReadHeader:     10 * time.Second,
	Read:           time.Minute,
	Write:          time.Minute,
	Idle:           2 * time.Minute,
	MaxHeaderBytes: 64 << 10,
}

// harden sets srv's timeouts and header limit, sends net/http's error log
// through the redacting logger (TLS handshake failures at most once a
// minute per peer, a handler panic without its value), and recovers a
// handler's panic: logged with its type and where it was raised, the
// request aborted, the server serving on. component names the server in
// the log. It keeps srv's handler, TLS configuration and ConnState hook.
// Call it before serving.
func harden(srv *http.Server, log *slog.Logger, component string) {
	lim := serverLimits
	srv.ReadHeaderTimeout = lim.ReadHeader
	srv.ReadTimeout = lim.Read
	srv.WriteTimeout = lim.Write
	srv.IdleTimeout = lim.Idle
	srv.MaxHeaderBytes = lim.MaxHeaderBytes
	log = log.With("component", component)
	handshakes := &logging.PeerLimiter{Log: log, Msg: "TLS handshake failed"}
	srv.ErrorLog = logging.NewHTTPErrorLog(log, handshakes)
	srv.RegisterOnShutdown(handshakes.Close)
	srv.Handler = guardHTTP(srv.Handler, log, lim.Write)
}

// guardHTTP recovers a panic of next (net/http would log its value) and
// moves the write deadline on with each write of the response.
func guardHTTP(next http.Handler, log *slog.Logger, write time.Duration) http.Handler {
	if next == nil {
		next = http.DefaultServeMux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler { //nolint:errorlint // the sentinel is compared by identity
					panic(p)
				}
				log.Error("http handler panicked; request aborted", logging.PanicAttrs(p)...)
				// net/http closes the connection and, for this
				// sentinel, logs nothing.
				panic(http.ErrAbortHandler)
			}
		}()
		next.ServeHTTP(&progressWriter{ResponseWriter: w, rc: http.NewResponseController(w), write: write}, r)
	})
}

// progressWriter gives each write of a response a fresh write deadline.
type progressWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	write time.Duration
}

func (p *progressWriter) Write(b []byte) (int, error) {
	_ = p.rc.SetWriteDeadline(time.Now().Add(p.write))
	return p.ResponseWriter.Write(b)
}

// Flush keeps http.Flusher working through the wrapper.
func (p *progressWriter) Flush() { _ = p.rc.Flush() }

// Unwrap lets http.ResponseController reach the connection.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

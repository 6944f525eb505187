package daemon

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/ehrbridge/ehrbridge/internal/logging"
)

// ErrPanicked is the failure a component reports when one of its
// goroutines panicked: the daemon stops as for any component failure (Wait
// returns it, the process exits non-zero) and the service manager restarts
// it; what was acknowledged is in the checkpoint log.
var ErrPanicked = errors.New("panicked (see the log line before this one)")

// guard runs f, the body of one of the daemon's goroutines (a listener's
// accept loop, the pipeline, a poll, the sweep, the storage loop, the
// mapping watcher). A panic in f is recovered and logged with its type and
// the function that raised it, never its value (which can hold patient
// data), and the component's failure goes to errc without blocking: one
// failure pending already stops the daemon. A nil errc only logs. It
// reports whether f panicked.
func guard(log *slog.Logger, errc chan<- error, component string, f func()) (panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			panicked = true
			log.Error("a component panicked and has stopped", append([]any{"part", logging.Safe(component)}, logging.PanicAttrs(p)...)...)
			if errc != nil {
				select {
				case errc <- fmt.Errorf("%s: %w", component, ErrPanicked):
				default:
				}
			}
		}
	}()
	f()
	return false
}

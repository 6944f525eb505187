package logging

import (
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
)

// PanicAttrs describes a recovered panic value for a log call without its
// value, which can hold patient data (a panic formatting a field, an index
// error quoting nothing but a map key that is an MRN): "panic_type" is the
// value's Go type and "where" the function and file:line that raised it.
// Call it in the deferred function that recovered r, so that the panicking
// frames are still on the stack.
func PanicAttrs(r any) []any {
	if w, ok := r.(*WorkerPanic); ok {
		return []any{"panic_type", Safe(w.Type), "where", Safe(w.Where)}
	}
	return []any{"panic_type", Safe(fmt.Sprintf("%T", r)), "where", Safe(panicSite())}
}

// WorkerPanic is a panic caught in a worker goroutine (one of a fan-out
// that a caller waits for), to be raised again in the waiting goroutine,
// where the component's recovery logs it: a panic left in the worker would
// end the process and print its value on stderr. It keeps the original
// panic's type and site, not its value.
type WorkerPanic struct {
	Type  string // the Go type of the original panic value
	Where string // the function and file:line that panicked
}

func (w *WorkerPanic) Error() string {
	return "a worker goroutine panicked (" + w.Type + " at " + w.Where + ")"
}

// CatchWorkerPanic recovers a panic of the goroutine that defers it (it
// must be deferred directly: defer logging.CatchWorkerPanic(&p)) into *dst,
// keeping the first. The goroutine that waits for the workers raises *dst
// again when it is set.
func CatchWorkerPanic(dst *atomic.Pointer[WorkerPanic]) {
	r := recover()
	if r == nil {
		return
	}
	w, ok := r.(*WorkerPanic)
	if !ok {
		w = &WorkerPanic{Type: fmt.Sprintf("%T", r), Where: panicSite()}
	}
	dst.CompareAndSwap(nil, w)
}

// panicSite is the first frame below runtime.gopanic that is not the
// runtime's own (runtime.panicIndex, sigpanic and the like): the code that
// panicked. "unknown" when the stack holds no panic (called outside a
// deferred recovery).
func panicSite() string {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(2, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	inPanic := false
	for {
		f, more := frames.Next()
		if inPanic && !strings.HasPrefix(f.Function, "runtime.") {
			return site(f.Function, f.File, f.Line)
		}
		if f.Function == "runtime.gopanic" {
			inPanic = true
		}
		if !more {
			return "unknown"
		}
	}
}

// site formats a frame as "pkg.Func (file.go:12)", the package path cut to
// its last element: code names only.
func site(function, file string, line int) string {
	if i := strings.LastIndex(function, "/"); i >= 0 {
		function = function[i+1:]
	}
	return function + " (" + filepath.Base(file) + ":" + strconv.Itoa(line) + ")"
}

// codeName is what a function name in a stack trace looks like.
var codeName = regexp.MustCompile(`^[A-Za-z0-9_./*()\[\]{}~-]+$`)

// panicSiteFromStack finds the panicking frame in a goroutine dump as
// runtime.Stack writes it (net/http's "http: panic serving" lines carry
// one): the first non-runtime function after the "panic(" line.
func panicSiteFromStack(stack string) string {
	lines := strings.Split(stack, "\n")
	inPanic := false
	for i := 0; i+1 < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "\t") || l == "" {
			continue
		}
		if strings.HasPrefix(l, "panic(") {
			inPanic = true
			continue
		}
		if !inPanic || strings.HasPrefix(l, "runtime.") {
			continue
		}
		fn := l
		if j := strings.LastIndex(fn, "("); j > 0 {
			fn = fn[:j] // the arguments: words of memory, not wanted
		}
		loc := strings.TrimSpace(lines[i+1])
		if j := strings.LastIndex(loc, " +0x"); j > 0 {
			loc = loc[:j]
		}
		file, lineNo, _ := strings.Cut(loc, ":")
		n, err := strconv.Atoi(lineNo)
		if err != nil || !codeName.MatchString(fn) || !strings.HasSuffix(file, ".go") {
			return "unknown" // not a stack as runtime.Stack writes it
		}
		return site(fn, file, n)
	}
	return "unknown"
}

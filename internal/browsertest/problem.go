package browsertest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
)

// ProblemKind is what went wrong in a page.
type ProblemKind string

// The kinds of problem the harness records.
const (
	// Exception is an uncaught JavaScript exception or unhandled rejection
	// (Runtime.exceptionThrown).
	Exception ProblemKind = "exception"
	// ConsoleError is a console.error or failed console.assert call
	// (Runtime.consoleAPICalled).
	ConsoleError ProblemKind = "console error"
	// LogError is an error the browser itself logged for the page, such as
	// a resource that failed to load (Log.entryAdded).
	LogError ProblemKind = "browser log error"
	// CSPViolation is a Content-Security-Policy violation: the page's
	// securitypolicyviolation event, or the browser's log entry for it.
	CSPViolation ProblemKind = "CSP violation"
)

// maxProblemText bounds the text kept per problem.
const maxProblemText = 300

// Problem is one error a page caused.
type Problem struct {
	Kind ProblemKind
	Text string // the message, at most 300 bytes
	URL  string // where it happened, when known
}

// String is the problem as test output shows it.
func (p Problem) String() string {
	if p.URL == "" {
		return fmt.Sprintf("%s: %s", p.Kind, p.Text)
	}
	return fmt.Sprintf("%s: %s (at %s)", p.Kind, p.Text, p.URL)
}

// rule is an Allow or Expect: problems of kind whose text contains substr
// are not failures; an Expect must also match at least once.
type rule struct {
	kind    ProblemKind
	substr  string
	must    bool
	matched bool
}

// Allow tolerates problems of kind whose text contains substr ("" for
// any): they do not fail the test.
func (b *Browser) Allow(kind ProblemKind, substr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rules = append(b.rules, &rule{kind: kind, substr: substr})
}

// Expect is Allow, and also fails the test at cleanup when no such problem
// occurred.
func (b *Browser) Expect(kind ProblemKind, substr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rules = append(b.rules, &rule{kind: kind, substr: substr, must: true})
}

// Problems returns the problems recorded so far, in order.
func (b *Browser) Problems() []Problem {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Problem(nil), b.problems...)
}

// WaitProblem waits up to Timeout for a problem of kind and returns the
// first one, failing the test when none comes.
func (b *Browser) WaitProblem(kind ProblemKind) Problem {
	b.t.Helper()
	deadline := time.Now().Add(b.Timeout)
	for {
		for _, p := range b.Problems() {
			if p.Kind == kind {
				return p
			}
		}
		if time.Now().After(deadline) {
			b.fail("waiting for a "+string(kind), fmt.Errorf("none after %v (recorded: %v)", b.Timeout, b.Problems()))
			return Problem{}
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// checkProblems fails the test for each problem no rule covers and each
// Expect nothing matched.
func (b *Browser) checkProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		covered := false
		for _, r := range b.rules {
			if r.kind == p.Kind && strings.Contains(p.Text, r.substr) {
				r.matched, covered = true, true
			}
		}
		if !covered {
			b.t.Errorf("browser: unexpected %v", p)
		}
	}
	for _, r := range b.rules {
		if r.must && !r.matched {
			b.t.Errorf("browser: expected a %s containing %q; none occurred", r.kind, r.substr)
		}
	}
}

// record is the tab's event listener. It runs on chromedp's reader
// goroutine, so it only appends.
func (b *Browser) record(ev any) {
	var p Problem
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		if d == nil {
			return
		}
		p = Problem{Kind: Exception, Text: d.Text, URL: d.URL}
		if d.Exception != nil && d.Exception.Description != "" {
			p.Text += " " + d.Exception.Description
		}
	case *runtime.EventConsoleAPICalled:
		if e.Type != runtime.ConsoleAPICalledTypeError && e.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		parts := make([]string, 0, len(e.Args))
		for _, a := range e.Args {
			parts = append(parts, remoteText(a))
		}
		p = Problem{Kind: ConsoleError, Text: strings.Join(parts, " ")}
		if e.StackTrace != nil && len(e.StackTrace.CallFrames) > 0 {
			p.URL = e.StackTrace.CallFrames[0].URL
		}
	case *log.EventEntryAdded:
		if e.Entry == nil || e.Entry.Level != log.EntryLevelError {
			return
		}
		p = Problem{Kind: LogError, Text: e.Entry.Text, URL: e.Entry.URL}
		if e.Entry.Source == log.EntrySourceSecurity && strings.Contains(e.Entry.Text, "Content Security Policy") {
			p.Kind = CSPViolation
		}
	case *runtime.EventBindingCalled:
		if e.Name != cspBinding {
			return
		}
		var v struct {
			Directive, Blocked, URL string
			Line                    int
		}
		if err := json.Unmarshal([]byte(e.Payload), &v); err != nil {
			p = Problem{Kind: CSPViolation, Text: "unreadable report: " + err.Error()}
			break
		}
		p = Problem{Kind: CSPViolation, Text: fmt.Sprintf("securitypolicyviolation: %s blocked %s", v.Directive, v.Blocked), URL: v.URL}
		if v.Line > 0 {
			p.URL += ":" + strconv.Itoa(v.Line)
		}
	default:
		return
	}
	if len(p.Text) > maxProblemText {
		p.Text = p.Text[:maxProblemText] + "..."
	}
	b.mu.Lock()
	b.problems = append(b.problems, p)
	b.mu.Unlock()
}

// remoteText is a console argument as text: a string as it is, another
// value by its JSON or description.
func remoteText(o *runtime.RemoteObject) string {
	if o == nil {
		return ""
	}
	if len(o.Value) > 0 {
		var s string
		if err := json.Unmarshal([]byte(o.Value), &s); err == nil {
			return s
		}
		return string(o.Value)
	}
	return o.Description
}

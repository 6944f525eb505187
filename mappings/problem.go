package mappings

import (
	"strings"

	"github.com/ehrbridge/ehrbridge/internal/problems"
)

// Problem is one finding about a mapping file, positioned in it
// ("file:line:col: message"); Problems lists them and is the error Load
// and Compile return.
type (
	Problem  = problems.Problem
	Problems = problems.Problems
)

// Error is a failure to map one input. It names the mapping, op and field
// and never quotes the message's content, so it is safe to log and to
// store as a dead letter's reason.
type Error struct {
	Mapping string
	Op      string
	Field   string
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("mapping " + e.Mapping)
	if e.Op != "" {
		b.WriteString(", op " + e.Op)
	}
	if e.Field != "" {
		b.WriteString(", " + e.Field)
	}
	b.WriteString(": " + e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

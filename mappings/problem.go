package mappings

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one finding about a mapping file, positioned in it. Line and
// Col are 1-based; 0 means the problem concerns the whole file.
type Problem struct {
	File string
	Line int
	Col  int
	Msg  string
}

// String formats the problem as "file:line:col: message".
func (p Problem) String() string {
	switch {
	case p.Line <= 0:
		return p.File + ": " + p.Msg
	case p.Col <= 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
}

// Problems is an error listing every problem found, in file order.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps Problems) sorted() Problems {
	out := slices.Clone(ps)
	slices.SortStableFunc(out, func(a, b Problem) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	return slices.Compact(out)
}

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

// Package problems is the positioned finding that config and mapping
// files report: "file:line:col: message", the form editors and CI
// annotators recognise.
package problems

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one finding about a file, positioned in it. Line and Col are
// 1-based; 0 means the problem concerns the whole file (or line).
type Problem struct {
	File string
	Line int
	Col  int
	Msg  string
}

// String formats the problem as "file:line:col: msg", or "file: msg"
// when it has no position.
func (p Problem) String() string {
	switch {
	case p.Line <= 0:
		return p.File + ": " + p.Msg
	case p.Col <= 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
}

// Problems is an error listing every problem found.
type Problems []Problem

// Error returns one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Sorted returns the problems in file order, exact duplicates dropped
// (YAML aliases can make one node report twice).
func (ps Problems) Sorted() Problems {
	out := slices.Clone(ps)
	slices.SortStableFunc(out, func(a, b Problem) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	return slices.Compact(out)
}

package config

import (
	"fmt"
	"strings"

	"github.com/ehrbridge/ehrbridge/internal/problems"
)

// Problem is one finding about a configuration file, positioned in it
// (see problems.Problem); Problems lists them, in file order.
type (
	Problem  = problems.Problem
	Problems = problems.Problems
)

// position is where a key or node was written (1-based).
type position struct {
	line, col int
}

// positions maps dotted paths ("sources.mllp[0].listen") to where they were
// written in one file.
type positions struct {
	file string
	m    map[string]position
	// env holds, for values that came from environment references, the
	// text as written ("${ADDR}"), so messages can show that instead.
	env map[string]string
}

// show returns quoted, the value at path ready for a message, unless the
// value came from the environment: it may be a secret, so the reference as
// written is shown instead.
func (p positions) show(path, quoted string) string {
	if raw, ok := p.env[path]; ok {
		return quoteShort(raw) + " (expanded value not shown)"
	}
	return quoted
}

// at returns the position of path, or of its nearest written ancestor, so
// a problem about a defaulted value still points at its section.
func (p positions) at(path string) (line, col int) {
	for {
		if pos, ok := p.m[path]; ok {
			return pos.line, pos.col
		}
		if path == "" {
			return 0, 0
		}
		path = parentPath(path)
	}
}

// problem builds a Problem at path whose message is prefixed by the path.
func (p positions) problem(path, format string, args ...any) Problem {
	line, col := p.at(path)
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	return Problem{File: p.file, Line: line, Col: col, Msg: msg}
}

// where formats the position of path for messages that refer to another
// place in the file ("first at file:3:5").
func (p positions) where(path string) string {
	line, col := p.at(path)
	return location(Problem{File: p.file, Line: line, Col: col})
}

// location is a problem's String without the message.
func location(p Problem) string {
	return strings.TrimSuffix(p.String(), ": ")
}

// parentPath strips the last ".key" or "[i]" from a dotted path.
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// joinPath appends a key to a dotted path.
func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// section names a path in messages such as `unknown key "x" in log`.
func section(path string) string {
	if path == "" {
		return "at top level"
	}
	return "in " + path
}

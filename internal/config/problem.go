package config

import (
	"fmt"
	"slices"
	"strings"
)

// Problem is one finding about a configuration file, positioned in that file.
// Line and Col are 1-based; 0 means the problem is about the whole file.
type Problem struct {
	File string
	Line int
	Col  int
	Msg  string
}

// String formats the problem as "file:line:col: msg", the form editors and
// CI annotators recognise, or "file: msg" when it has no position.
func (p Problem) String() string {
	switch {
	case p.Line <= 0:
		return p.File + ": " + p.Msg
	case p.Col <= 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
}

// Problems is an error listing every problem found in a configuration file,
// in the order they appear in the file.
type Problems []Problem

// Error returns one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// normalize orders problems as they appear in the file and drops exact
// duplicates, which aliases can produce by decoding one node several times.
func (ps Problems) normalize() Problems {
	out := slices.Clone(ps)
	slices.SortStableFunc(out, func(a, b Problem) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	return slices.Compact(out)
}

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
	return Problem{File: p.file, Line: line, Col: col}.location()
}

// location is String without the message.
func (p Problem) location() string {
	s := p.String()
	return strings.TrimSuffix(s, ": ")
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

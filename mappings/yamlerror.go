package mappings

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlSyntaxProblem turns a YAML syntax error into a problem at the true
// line and column. yaml.v3 puts in its message the line where the
// enclosing construct starts (its "context mark": for an indentation
// error on line 23, the op that starts on line 14), and no column; the
// position of the offending token is not exposed. It is found here as the
// end of the shortest prefix of the document that fails with the same
// message: first the line, then the character within it.
func yamlSyntaxProblem(file string, data []byte, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	reported := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		reported, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	p := Problem{File: file, Line: reported, Msg: "YAML syntax: " + msg}
	if line, col, at, ok := yamlErrorAt(data, msg, reported); ok {
		p.Line, p.Col = line, col
		if hint := yamlHint(msg, at); hint != "" {
			p.Msg += " (" + hint + ")"
		}
	}
	return p
}

// yamlErrorAt returns the 1-based line and column at which data first
// fails to parse with message msg, and the character there. For an
// unclosed flow collection ({hl7: ADT) that is the bracket left open.
//
// A prefix of the document that holds the offending character fails with
// msg, and so does every longer one (yaml.v3 stops at the first error);
// a shorter one parses, or fails otherwise. So the end of the shortest
// failing prefix is found by bisection, first over line ends, then over
// the characters of that line: some twenty parses, whatever the size of
// the file. The search starts just before the line yaml.v3 reported
// (where the enclosing construct starts, never after the error).
func yamlErrorAt(data []byte, msg string, reported int) (line, col int, at rune, ok bool) {
	if len(data) > 1<<20 {
		return 0, 0, 0, false // a mapping file is far smaller; do not spend the time
	}
	failsSame := func(prefix []byte) bool {
		var n yaml.Node
		err := yaml.Unmarshal(prefix, &n)
		if err == nil {
			return false
		}
		m := strings.TrimPrefix(err.Error(), "yaml: ")
		if sm := yamlLine.FindStringSubmatch(err.Error()); sm != nil {
			m = sm[2]
		}
		return m == msg
	}
	// Line starts, by byte offset; a line ends after its \n (a lone \r,
	// which YAML also takes as a line break, is rare in mapping files).
	starts := []int{0}
	for i, b := range data {
		if b == '\n' && i+1 < len(data) {
			starts = append(starts, i+1)
		}
	}
	lineEnd := func(k int) int {
		if k+1 < len(starts) {
			return starts[k+1]
		}
		return len(data)
	}
	// The first line k whose prefix, through its end, fails with msg.
	first := min(max(reported-2, 0), len(starts)-1)
	if first > 0 && failsSame(data[:lineEnd(first-1)]) {
		first = 0 // the reported line is already past it: search it all
	}
	k := first + sort.Search(len(starts)-first, func(i int) bool { return failsSame(data[:lineEnd(first+i)]) })
	if k >= len(starts) {
		return 0, 0, 0, false
	}
	text := bytes.TrimRight(data[starts[k]:lineEnd(k)], "\r\n")
	// The first character whose prefix fails with msg.
	n := sort.Search(len(text), func(i int) bool {
		return failsSame(data[:starts[k]+i+1])
	})
	c := firstNonBlank(text)
	if n < len(text) {
		c = n
		for c > 0 && !utf8.RuneStart(text[c]) {
			c-- // the start of the character that byte is part of
		}
		if open := unclosedBracket(msg); open != 0 {
			if i := bytes.LastIndexByte(text[:n+1], open); i >= 0 {
				c = i
			}
		}
	}
	at, _ = utf8.DecodeRune(text[c:])
	return k + 1, utf8.RuneCount(text[:c]) + 1, at, true
}

// unclosedBracket is the bracket that a message about a flow collection
// left open is about.
func unclosedBracket(msg string) byte {
	switch {
	case strings.Contains(msg, "'}'"):
		return '{'
	case strings.Contains(msg, "']'"):
		return '['
	}
	return 0
}

// firstNonBlank is the byte offset of the first character of line that
// is not a space or tab (0 if none).
func firstNonBlank(line []byte) int {
	for i, b := range line {
		if b != ' ' && b != '\t' {
			return i
		}
	}
	return 0
}

// yamlHint explains the yaml library's terser messages; at is the
// character the error is at.
func yamlHint(msg string, at rune) string {
	switch {
	case strings.HasPrefix(msg, "did not find expected key"), strings.HasPrefix(msg, "did not find expected '-' indicator"):
		return "is this line indented like the keys or list items above it?"
	case strings.Contains(msg, "mapping values are not allowed"):
		return "a second ': ' on the line: quote a value that contains ': '"
	case strings.Contains(msg, "found character that cannot start any token") && at == '\t':
		return "YAML indents with spaces, not tabs"
	case strings.Contains(msg, "found character that cannot start any token"):
		return fmt.Sprintf("a value cannot start with %q: quote it", at)
	case strings.Contains(msg, "end of stream") && (at == '"' || at == '\''):
		return fmt.Sprintf("the %c here is not closed", at)
	case unclosedBracket(msg) != 0:
		return fmt.Sprintf("the %c here is not closed", unclosedBracket(msg))
	}
	return ""
}

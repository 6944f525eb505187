package mappings

import (
	"bytes"
	"fmt"
	"regexp"
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
	if line, col, at, ok := yamlErrorAt(data, msg); ok {
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
func yamlErrorAt(data []byte, msg string) (line, col int, at rune, ok bool) {
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
	for k := range starts {
		end := len(data)
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		if !failsSame(data[:end]) {
			continue
		}
		text := bytes.TrimRight(data[starts[k]:end], "\r\n")
		c := firstNonBlank(text)
		for n := 1; n <= len(text); n++ {
			if n < len(text) && !utf8.RuneStart(text[n]) {
				continue // not a character boundary
			}
			if failsSame(data[:starts[k]+n]) {
				c = n - 1
				if open := unclosedBracket(msg); open != 0 {
					if i := bytes.LastIndexByte(text[:n], open); i >= 0 {
						c = i
					}
				}
				break
			}
		}
		at, _ = utf8.DecodeRune(text[c:])
		return k + 1, utf8.RuneCount(text[:c]) + 1, at, true
	}
	return 0, 0, 0, false
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

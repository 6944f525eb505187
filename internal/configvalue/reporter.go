package configvalue

import (
	"fmt"
	"strconv"
)

// Reporter receives the problems a settings type finds in its own values
// (a Validate method). Keys are relative to the section being validated:
// "smart_key_file", or "" for the section itself. The config loader turns
// each problem into "file:line:col: section.key: message" and reports every
// problem of the file at once.
type Reporter interface {
	// Add reports a problem about the key (relative to the section).
	Add(key, format string, args ...any)
	// Show returns text (the value at key as a message shows it: a string
	// quoted with [Quote], a size or duration as its String) unless the
	// value came from the environment, which may hold a secret: then what
	// the file wrote (the reference) instead.
	Show(key, text string) string
	// Readable reports a problem when file, named at key, cannot be read
	// (resolved as the config loader resolves paths); "" is not checked.
	Readable(key, file string)
}

// Quote quotes s for a message, shortened so that a stray multi-line
// value does not swamp the report.
func Quote(s string) string {
	const limit = 60
	if r := []rune(s); len(r) > limit {
		return strconv.Quote(string(r[:limit])) + "..."
	}
	return strconv.Quote(s)
}

// Problems is a Reporter that keeps each problem as "key: message", shows
// values as given and reads no file: for tests of a component's settings
// and for tools that only collect what is wrong.
type Problems []string

// Add implements Reporter.
func (p *Problems) Add(key, format string, args ...any) {
	*p = append(*p, key+": "+fmt.Sprintf(format, args...))
}

// Show implements Reporter: text as given.
func (p *Problems) Show(_, text string) string { return text }

// Readable implements Reporter: files are not checked.
func (p *Problems) Readable(string, string) {}

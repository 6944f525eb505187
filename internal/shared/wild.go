package shared

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// WildFiles returns the files of the repository's corpus of public HL7 v2
// messages (hl7/testdata/wild, sources in its README.md) by their path
// below it, licence texts and the README left out. The bytes are as the
// projects published them: several messages per file, any line ends,
// malformed cases.
func WildFiles(t testing.TB) map[string][]byte {
	t.Helper()
	root := filepath.Join(ModuleRoot(t), "hl7", "testdata", "wild")
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "licenses" {
				return filepath.SkipDir
			}
			return nil
		}
		if rel == "README.md" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = data
		return nil
	})
	if err != nil {
		t.Fatalf("reading the wild corpus: %v", err)
	}
	if len(files) < 150 {
		t.Fatalf("wild corpus has %d files, want at least 150", len(files))
	}
	return files
}

// WildNames returns the names of files (as WildFiles gives them) in
// sorted order, for tests that go through them in a stable order.
func WildNames(files map[string][]byte) []string {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// SplitMessages cuts a file into messages the way a file-drop sender does:
// a line (CR, LF or CRLF ended; a leading byte order mark dropped) that
// starts with "MSH" and a non-alphanumeric byte begins a message, every
// other non-blank line up to the next one is a segment of it, lines before
// the first MSH are dropped. Each message gets CR segment terminators and
// is otherwise byte for byte as in the file. Unlike hl7.Split it never
// refuses a file: annotations between segments stay in their message.
func SplitMessages(data []byte) [][]byte {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var out [][]byte
	var cur []byte
	for _, line := range strings.FieldsFunc(string(data), func(r rune) bool { return r == '\r' || r == '\n' }) {
		switch {
		case IsMSH([]byte(line)):
			if cur != nil {
				out = append(out, cur)
			}
			cur = append([]byte(line), '\r')
		case cur == nil || strings.TrimSpace(line) == "":
		default:
			cur = append(append(cur, line...), '\r')
		}
	}
	if cur != nil {
		out = append(out, cur)
	}
	return out
}

// IsMSH reports whether b begins with a recognisable MSH segment: "MSH"
// followed by a field separator (any byte but a letter or digit).
func IsMSH(b []byte) bool {
	if len(b) < 4 || string(b[:3]) != "MSH" {
		return false
	}
	c := b[3]
	return !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9')
}

// Findings gathers test failures by kind, so that a defect that hundreds of
// corpus messages show reads as one line: how many messages, which files.
// Where names a message as "file #n".
type Findings struct {
	byKind map[string][]string
	seen   map[string]bool
}

// Add records that the message where shows the failure kind (once).
func (f *Findings) Add(kind, where string) {
	if f.byKind == nil {
		f.byKind, f.seen = map[string][]string{}, map[string]bool{}
	}
	if f.seen[kind+"\x00"+where] {
		return
	}
	f.seen[kind+"\x00"+where] = true
	f.byKind[kind] = append(f.byKind[kind], where)
}

// Report fails t once per kind, naming up to six files.
func (f *Findings) Report(t testing.TB) {
	t.Helper()
	kinds := make([]string, 0, len(f.byKind))
	for k := range f.byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		var files []string
		seen := map[string]bool{}
		for _, w := range f.byKind[k] {
			file, _, _ := strings.Cut(w, " #")
			if !seen[file] {
				seen[file] = true
				files = append(files, file)
			}
		}
		more := ""
		if len(files) > 6 {
			files, more = files[:6], fmt.Sprintf(" and %d more", len(files)-6)
		}
		msgs := f.byKind[k]
		example := ""
		if len(msgs) <= 3 {
			example = " (" + strings.Join(msgs, ", ") + ")"
		}
		t.Errorf("%s: %d messages%s in %d files: %s%s", k, len(msgs), example, len(seen), strings.Join(files, ", "), more)
	}
}

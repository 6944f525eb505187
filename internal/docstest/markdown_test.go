package docstest

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// mdFile is one Markdown file of the documentation, split into what the
// tests look at: fenced code blocks, the prose between them (with inline
// code), and the anchors its headings and <a id> tags define.
type mdFile struct {
	path    string // relative to the module root
	blocks  []codeBlock
	prose   []proseLine
	anchors map[string]bool
}

type codeBlock struct {
	line int    // of the opening fence, 1-based
	lang string // the fence's info string
	text string
	demo string // from a <!-- demo: ... --> line right before the fence
}

type proseLine struct {
	line int
	text string
}

// docFiles are the files whose links, commands and snippets are checked:
// the README and every file in docs/.
func docFiles(t *testing.T) []*mdFile {
	t.Helper()
	root := shared.ModuleRoot(t)
	names := []string{"README.md"}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(more) < 5 {
		t.Fatalf("docs/ holds %d Markdown files; the test looks in the wrong place", len(more))
	}
	for _, m := range more {
		rel, _ := filepath.Rel(root, m)
		names = append(names, rel)
	}
	var files []*mdFile
	for _, n := range names {
		files = append(files, parseMarkdown(t, root, n))
	}
	return files
}

var (
	demoMarker = regexp.MustCompile(`^<!--\s*demo:\s*(.+?)\s*-->$`)
	anchorTag  = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
	fence      = regexp.MustCompile("^\\s*(```+|~~~+)\\s*([^`\\s]*)")
)

func parseMarkdown(t *testing.T, root, rel string) *mdFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	f := &mdFile{path: rel, anchors: map[string]bool{}}
	slugs := map[string]int{}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := fence.FindStringSubmatch(l); m != nil {
			b := codeBlock{line: i + 1, lang: m[2]}
			for j := i - 1; j >= 0; j-- {
				if strings.TrimSpace(lines[j]) == "" {
					continue
				}
				if d := demoMarker.FindStringSubmatch(strings.TrimSpace(lines[j])); d != nil {
					b.demo = d[1]
				}
				break
			}
			indent := len(l) - len(strings.TrimLeft(l, " "))
			var body []string
			for i++; i < len(lines); i++ {
				if strings.HasPrefix(strings.TrimSpace(lines[i]), m[1][:3]) {
					break
				}
				s := lines[i]
				if len(s)-len(strings.TrimLeft(s, " ")) >= indent {
					s = s[indent:]
				}
				body = append(body, s)
			}
			b.text = strings.Join(body, "\n")
			f.blocks = append(f.blocks, b)
			continue
		}
		f.prose = append(f.prose, proseLine{i + 1, l})
		for _, a := range anchorTag.FindAllStringSubmatch(l, -1) {
			f.anchors[a[1]] = true
		}
		if h := strings.TrimLeft(l, "#"); len(h) < len(l) && len(l)-len(h) <= 6 && strings.HasPrefix(h, " ") {
			s := slug(h)
			if n := slugs[s]; n > 0 {
				f.anchors[s+"-"+strconv.Itoa(n)] = true
			} else {
				f.anchors[s] = true
			}
			slugs[s]++
		}
	}
	return f
}

var mdLinkInHeading = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)

// slug is GitHub's anchor for a heading: lower case, inline markup gone,
// every character but letters, digits, '-', '_' and spaces dropped, spaces
// made '-'.
func slug(h string) string {
	h = mdLinkInHeading.ReplaceAllString(strings.TrimSpace(h), "$1")
	h = strings.ToLower(h)
	var b strings.Builder
	for _, r := range h {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

var inlineCode = regexp.MustCompile("`+([^`]+)`+")

// inlineCodes returns the inline code spans of the prose, with their lines.
func (f *mdFile) inlineCodes() []proseLine {
	var out []proseLine
	for _, p := range f.prose {
		for _, m := range inlineCode.FindAllStringSubmatch(p.text, -1) {
			out = append(out, proseLine{p.line, m[1]})
		}
	}
	return out
}

// withoutCode is a prose line with its inline code spans blanked out, so
// that a link shown as code is not taken for a link.
func withoutCode(s string) string {
	return inlineCode.ReplaceAllStringFunc(s, func(m string) string { return strings.Repeat(" ", len(m)) })
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		" The Dynamics 365 / Dataverse demo":          "the-dynamics-365--dataverse-demo",
		" Step 1: run `ehrbridge crm check`":          "step-1-run-ehrbridge-crm-check",
		" Who may do what (access control and audit)": "who-may-do-what-access-control-and-audit",
		" HL7 output (write-back)":                    "hl7-output-write-back",
		" 164.312(a)(1) Access control":               "164312a1-access-control",
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}

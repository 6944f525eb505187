package docstest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

var mdLink = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)

// Every relative link in the README and docs/ names a file or directory
// that exists, and every #anchor one a heading (or <a id>) of its file.
func TestLinksResolve(t *testing.T) {
	root := shared.ModuleRoot(t)
	files := docFiles(t)
	byPath := map[string]*mdFile{}
	for _, f := range files {
		byPath[f.path] = f
	}
	checked := 0
	for _, f := range files {
		for _, p := range f.prose {
			for _, m := range mdLink.FindAllStringSubmatch(withoutCode(p.text), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				checked++
				file, anchor, _ := strings.Cut(target, "#")
				rel := f.path
				if file != "" {
					rel = filepath.Clean(filepath.Join(filepath.Dir(f.path), file))
					if _, err := os.Stat(filepath.Join(root, rel)); err != nil {
						t.Errorf("%s:%d: link to %s: no such file", f.path, p.line, target)
						continue
					}
				}
				if anchor == "" {
					continue
				}
				tf := byPath[rel]
				if tf == nil {
					if !strings.HasSuffix(rel, ".md") {
						t.Errorf("%s:%d: link to %s: an anchor in a file that is not Markdown", f.path, p.line, target)
						continue
					}
					tf = parseMarkdown(t, root, rel)
					byPath[rel] = tf
				}
				if !tf.anchors[anchor] {
					t.Errorf("%s:%d: link to %s: %s has no heading with that anchor", f.path, p.line, target, rel)
				}
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d relative links found: the parser misses them", checked)
	}
}

// binary builds ehrbridge once for the tests of this package.
var (
	buildOnce sync.Once
	binPath   string
	buildOut  []byte
	buildErr  error
)

func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ehrbridge-docstest")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ehrbridge")
		c := exec.Command("go", "build", "-o", binPath, "./cmd/ehrbridge")
		c.Dir = shared.ModuleRoot(t)
		buildOut, buildErr = c.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// help returns what `ehrbridge args... -h` prints (stdout and stderr).
func help(t *testing.T, cache map[string]string, args ...string) string {
	t.Helper()
	k := strings.Join(args, " ")
	if h, ok := cache[k]; ok {
		return h
	}
	c := exec.Command(binary(t), append(args, "-h")...)
	out, err := c.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("ehrbridge %s -h: %v", k, err)
	}
	cache[k] = string(out)
	return string(out)
}

// shellCommand is one ehrbridge invocation shown in the docs.
type shellCommand struct {
	where string
	args  []string
}

// ehrbridgeCommands finds the ehrbridge invocations in sh code blocks (in
// command position: at the start of a command, after sudo, a pipe, && or
// $(), however the binary is spelled: ehrbridge, ./bin/ehrbridge,
// .\ehrbridge.exe) and in inline code spans that start with "ehrbridge ".
func ehrbridgeCommands(files []*mdFile) []shellCommand {
	var cmds []shellCommand
	for _, f := range files {
		for _, b := range f.blocks {
			if b.lang != "sh" && b.lang != "bash" && b.lang != "shell" && b.lang != "powershell" && b.lang != "ps1" {
				continue
			}
			text := strings.ReplaceAll(b.text, "\\\n", " ")
			for i, l := range strings.Split(text, "\n") {
				for _, args := range invocations(l) {
					cmds = append(cmds, shellCommand{where: f.path + ":" + strconv.Itoa(b.line+1+i), args: args})
				}
			}
		}
		for _, c := range f.inlineCodes() {
			// Prose also quotes log lines ("ehrbridge starting") and
			// names ("ehrbridge integration"): a span is a command when
			// it has a flag or its second word is a verb.
			if strings.HasPrefix(c.text, "ehrbridge ") || strings.HasPrefix(c.text, "./bin/ehrbridge ") {
				args := strings.Fields(c.text)[1:]
				if strings.Contains(c.text, " -") || len(args) > 0 && knownVerb(args[0]) {
					cmds = append(cmds, shellCommand{where: f.path + ":" + strconv.Itoa(c.line), args: args})
				}
			}
		}
	}
	return cmds
}

// knownVerb: the verbs of DESIGN.md's card and the ones added since, for
// telling an inline command from prose; TestCommandsExist checks each
// against the binary's --help.
func knownVerb(w string) bool {
	switch strings.SplitN(w, "|", 2)[0] {
	case "run", "lint", "crm", "map", "test", "hl7", "send", "log", "backfill", "service", "bench", "sandbox", "version":
		return true
	}
	return false
}

var segmentSplit = regexp.MustCompile(`&&|\|\||;|\||\$\(|\(`)

func invocations(line string) [][]string {
	if i := strings.Index(line, " #"); i >= 0 {
		line = line[:i]
	}
	if strings.HasPrefix(strings.TrimSpace(line), "#") {
		return nil
	}
	var out [][]string
	for _, seg := range segmentSplit.Split(line, -1) {
		tok := strings.Fields(seg)
		for len(tok) > 0 && (tok[0] == "sudo" || tok[0] == "time" || tok[0] == "exec" || strings.Contains(tok[0], "=") && !strings.HasPrefix(tok[0], "-")) {
			if tok[0] == "sudo" && len(tok) > 2 && tok[1] == "-u" {
				tok = tok[2:]
			}
			tok = tok[1:]
		}
		if len(tok) == 0 {
			continue
		}
		name := tok[0][strings.LastIndexAny(tok[0], `/\`)+1:]
		if name == "ehrbridge" || name == "ehrbridge.exe" {
			out = append(out, tok[1:])
		}
	}
	return out
}

// verbsWithSubcommands take a second word that selects what they do.
var verbsWithSubcommands = map[string]bool{"log": true, "hl7": true, "crm": true, "service": true, "bench": true}

var (
	flagToken = regexp.MustCompile(`^-{1,2}([a-z][a-z0-9-]*)`)
	wordToken = regexp.MustCompile(`^[a-z][a-z0-9]*(\|[a-z][a-z0-9]*)*$`)
)

// Every ehrbridge command the docs show names a verb the binary has, a
// subcommand its help lists, and only flags that its help names.
func TestCommandsExist(t *testing.T) {
	cache := map[string]string{}
	top := help(t, cache)
	cmds := ehrbridgeCommands(docFiles(t))
	if len(cmds) < 40 {
		t.Fatalf("only %d ehrbridge commands found in the docs: the parser misses them", len(cmds))
	}
	for _, c := range cmds {
		if len(c.args) == 0 || strings.HasPrefix(c.args[0], "-") {
			continue // the bare binary, or ehrbridge as a user name (install -o ehrbridge)
		}
		verb := c.args[0]
		if strings.ToUpper(verb) == verb {
			continue // a placeholder: ehrbridge VERB -h
		}
		if !wordToken.MatchString(verb) || !regexp.MustCompile(`(?m)^  `+regexp.QuoteMeta(verb)+`\s`).MatchString(top) {
			t.Errorf("%s: ehrbridge %s: no such command in ehrbridge --help", c.where, strings.Join(c.args, " "))
			continue
		}
		helps := []string{help(t, cache, verb)}
		rest := c.args[1:]
		if verbsWithSubcommands[verb] && len(rest) > 0 && wordToken.MatchString(rest[0]) {
			for _, sub := range strings.Split(rest[0], "|") {
				// The overview of `ehrbridge --help` names every
				// subcommand too: it is where a newcomer looks first.
				if line := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(verb) + `\s.*$`).FindString(top); !regexp.MustCompile(`\b` + regexp.QuoteMeta(sub) + `\b`).MatchString(strings.TrimPrefix(line, "  "+verb)) {
					t.Errorf("%s: ehrbridge %s %s: ehrbridge --help does not name it: %q", c.where, verb, sub, line)
				}
				h := help(t, cache, verb, sub)
				if strings.Contains(h, "unknown") || !regexp.MustCompile(`\b`+regexp.QuoteMeta(sub)+`\b`).MatchString(helps[0]+h) {
					t.Errorf("%s: ehrbridge %s %s: no such subcommand", c.where, verb, sub)
				}
				helps = append(helps, h)
			}
			rest = rest[1:]
		}
		all := strings.Join(helps, "\n")
		for _, a := range rest {
			m := flagToken.FindStringSubmatch(strings.TrimLeft(a, "[("))
			if m == nil {
				continue
			}
			if !regexp.MustCompile(`(^|[\s\[(|])--?` + regexp.QuoteMeta(m[1]) + `\b`).MatchString(all) {
				t.Errorf("%s: ehrbridge %s: flag --%s is not in its --help", c.where, strings.Join(c.args, " "), m[1])
			}
		}
	}
}

var makeTarget = regexp.MustCompile(`(?:^|[\s(])make ([a-z][a-z0-9-]*)`)

// Every `make X` the docs name is a target of the Makefile.
func TestMakeTargetsExist(t *testing.T) {
	root := shared.ModuleRoot(t)
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, f := range docFiles(t) {
		var texts []proseLine
		for _, b := range f.blocks {
			if b.lang == "sh" || b.lang == "bash" || b.lang == "shell" {
				for i, l := range strings.Split(b.text, "\n") {
					if strings.HasPrefix(strings.TrimSpace(l), "#") {
						continue
					}
					if j := strings.Index(l, " #"); j >= 0 {
						l = l[:j]
					}
					texts = append(texts, proseLine{b.line + 1 + i, l})
				}
			}
		}
		texts = append(texts, f.inlineCodes()...)
		for _, p := range texts {
			for _, m := range makeTarget.FindAllStringSubmatch(p.text, -1) {
				found++
				if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(m[1]) + `:`).Match(mk) {
					t.Errorf("%s:%d: make %s: the Makefile has no such target", f.path, p.line, m[1])
				}
			}
		}
	}
	if found < 5 {
		t.Errorf("only %d make targets found in the docs", found)
	}
}

// configTopKeys are the top-level keys of ehrbridge's config: a yaml block
// with any of them is a config snippet.
var configTopKeys = regexp.MustCompile(`(?m)^(data_dir|log|admin|checkpoint|mappings|crm|writeback|sources):`)

// Every config snippet in the docs decodes with the config's strict
// decoder without an unknown key or an inline secret. Values are not
// judged (a snippet need not be a whole, valid config).
func TestConfigSnippetsDecode(t *testing.T) {
	n := 0
	for _, f := range docFiles(t) {
		for _, b := range f.blocks {
			if (b.lang != "yaml" && b.lang != "yml") || !configTopKeys.MatchString(b.text) {
				continue
			}
			n++
			name := filepath.Join(t.TempDir(), "snippet.yaml")
			_, err := config.Parse(name, []byte(b.text), func(string) (string, bool) { return "/nonexistent/x", true })
			var probs config.Problems
			if err == nil || !errors.As(err, &probs) {
				continue
			}
			for _, p := range probs {
				if strings.Contains(p.Msg, "unknown key") || strings.Contains(p.Msg, "inline secret") || strings.Contains(p.Msg, "syntax") {
					t.Errorf("%s:%d (snippet line %d): %s", f.path, b.line+p.Line, p.Line, p.Msg)
				}
			}
		}
	}
	if n < 5 {
		t.Errorf("only %d config snippets found in the docs", n)
	}
}

// configKeyPath is a config key written out in prose: sources.mllp[].listen,
// crm.salesforce.jwt_key_file, admin.tls.
var configKeyPath = regexp.MustCompile(`^(data_dir|log|admin|checkpoint|mappings|crm|writeback|sources)((?:\.[a-z0-9_]+(?:\[\d*\])?)+)$`)

// notConfigKeys are dotted names in the docs that are not config keys:
// /status fields and files.
var notConfigKeys = map[string]bool{
	"crm.breaker":           true, // /status
	"mappings.last_problem": true, // /status
	"checkpoint.seal":       true, // /status
	"checkpoint.db":         true, // the log's file
	"admin.token":           true, // the token file of earlier releases
}

// Every config key the docs name in inline code (sources.mllp[].tls,
// writeback.target.retention) is a key of the config: each is decoded
// strictly as a one-key document.
func TestConfigKeysExist(t *testing.T) {
	n := 0
	for _, f := range docFiles(t) {
		for _, c := range f.inlineCodes() {
			m := configKeyPath.FindStringSubmatch(c.text)
			if m == nil || notConfigKeys[c.text] {
				continue
			}
			n++
			text := keyDocument(append([]string{m[1]}, strings.Split(m[2][1:], ".")...))
			_, err := config.Parse(filepath.Join(t.TempDir(), "key.yaml"), []byte(text), func(string) (string, bool) { return "x", true })
			var probs config.Problems
			if errors.As(err, &probs) {
				for _, p := range probs {
					if strings.Contains(p.Msg, "unknown key") {
						t.Errorf("%s:%d: `%s`: %s", f.path, c.line, c.text, p.Msg)
					}
				}
			}
		}
	}
	if n < 30 {
		t.Errorf("only %d config keys found in the docs' prose", n)
	}
}

// keyDocument is the YAML document that sets one key path: a segment
// ending in [] or [N] is a list, of mappings unless it is the last.
func keyDocument(segs []string) string {
	var b strings.Builder
	indent, inline := "", false
	for i, seg := range segs {
		name, list := seg, false
		if j := strings.IndexByte(seg, '['); j >= 0 {
			name, list = seg[:j], true
		}
		if !inline {
			b.WriteString(indent)
		}
		inline = false
		b.WriteString(name + ":")
		switch {
		case i == len(segs)-1 && list:
			b.WriteString(" [x]\n")
		case i == len(segs)-1:
			b.WriteString(" x\n")
		case list:
			b.WriteString("\n" + indent + "  - ")
			indent += "    "
			inline = true
		default:
			b.WriteString("\n")
			indent += "  "
		}
	}
	return b.String()
}

func TestKeyDocument(t *testing.T) {
	got := keyDocument([]string{"sources", "mllp[]", "tls", "cert_file"})
	want := "sources:\n  mllp:\n    - tls:\n        cert_file: x\n"
	if got != want {
		t.Errorf("keyDocument = %q, want %q", got, want)
	}
}

var (
	testFunc = regexp.MustCompile(`(?m)^func (Test[A-Za-z0-9_]+)\(`)
	testName = regexp.MustCompile(`\bTest[A-Z][A-Za-z0-9_]*(…)?`)
)

// Every test the docs name as the proof of something (TestUpgradeWithPendingRecords,
// `go test -run TestOutageCostsOneProbe`) exists; a name written with a
// trailing "…" is a prefix.
func TestNamedTestsExist(t *testing.T) {
	root := shared.ModuleRoot(t)
	var funcs []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, "_test.go") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range testFunc.FindAllSubmatch(b, -1) {
				funcs = append(funcs, string(m[1]))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range docFiles(t) {
		for _, c := range f.inlineCodes() {
			for _, m := range testName.FindAllStringSubmatch(c.text, -1) {
				name, prefix := strings.TrimSuffix(m[0], "…"), m[1] != ""
				n++
				found := false
				for _, fn := range funcs {
					if fn == name || prefix && strings.HasPrefix(fn, name) {
						found = true
						break
					}
				}
				if !found {
					t.Errorf("%s:%d: %s: no such test in the repository", f.path, c.line, m[0])
				}
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d test names found in the docs", n)
	}
}

// repoPath is a path in the repository written in inline code.
var repoPath = regexp.MustCompile(`^(cmd|hl7|checkpoint|mappings|connectors|internal|installer|configs|deploy|docs|tests)(/[A-Za-z0-9_.-]+)*/?$`)

// Every repository path the docs name in inline code exists.
func TestRepoPathsExist(t *testing.T) {
	root := shared.ModuleRoot(t)
	n := 0
	for _, f := range docFiles(t) {
		for _, c := range f.inlineCodes() {
			if !repoPath.MatchString(c.text) {
				continue
			}
			// The demos' data directories are made by make run and
			// make run-dynamics (TestDemos looks into them).
			if strings.HasPrefix(c.text, "configs/data/") || strings.HasPrefix(c.text, "configs/data-dynamics/") {
				continue
			}
			n++
			if _, err := os.Stat(filepath.Join(root, c.text)); err != nil {
				t.Errorf("%s:%d: `%s`: no such file or directory", f.path, c.line, c.text)
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d repository paths found in the docs", n)
	}
}

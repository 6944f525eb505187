package docstest

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// demoStep is one command of a demo block and the output the docs show
// for it ("# " lines right under it; a "# ..." line elides the middle).
type demoStep struct {
	where    string
	vars     string // the block's assignments before it (F=...)
	cmd      string
	expected []string
}

var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=\S*$`)

func demoSteps(f *mdFile, b codeBlock) []demoStep {
	var steps []demoStep
	var vars []string
	lines := strings.Split(b.text, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#"):
			continue
		case assignment.MatchString(strings.TrimSpace(l)):
			vars = append(vars, strings.TrimSpace(l))
			continue
		}
		s := demoStep{where: f.path + ":" + strconv.Itoa(b.line+1+i), vars: strings.Join(vars, "\n")}
		cmd := l
		for (strings.HasSuffix(cmd, "\\") || openQuote(cmd)) && i+1 < len(lines) {
			i++
			cmd += "\n" + lines[i]
		}
		s.cmd = cmd
		for i+1 < len(lines) && (lines[i+1] == "#" || strings.HasPrefix(lines[i+1], "# ")) {
			i++
			s.expected = append(s.expected, strings.TrimPrefix(strings.TrimPrefix(lines[i], "#"), " "))
		}
		steps = append(steps, s)
	}
	return steps
}

// openQuote reports whether a shell command ends inside a quoted string
// (which then goes on on the next line).
func openQuote(cmd string) bool {
	var q rune
	esc := false
	for _, r := range cmd {
		switch {
		case esc:
			esc = false
		case r == '\\' && q != '\'':
			esc = true
		case q == 0 && (r == '"' || r == '\''):
			q = r
		case r == q:
			q = 0
		}
	}
	return q != 0
}

// matches compares output lines with the lines shown; a shown "..." stands
// for any number of lines, so the shown lines before it must open the
// output and those after it close it.
func matches(shown, got []string) bool {
	for k, l := range shown {
		if l == "..." {
			head, tail := shown[:k], shown[k+1:]
			if len(got) < len(head)+len(tail) {
				return false
			}
			return equal(head, got[:len(head)]) && equal(tail, got[len(got)-len(tail):])
		}
	}
	return equal(shown, got)
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !lineMatches(strings.TrimRight(a[i], " "), strings.TrimRight(b[i], " ")) {
			return false
		}
	}
	return true
}

// lineMatches compares a line the docs show with one printed: "..."
// inside a shown line stands for any text (a time, an id), and runs of
// spaces match runs of spaces (tabwriter's columns).
func lineMatches(shown, got string) bool {
	if shown == got {
		return true
	}
	if !strings.Contains(shown, "...") {
		return false
	}
	var re strings.Builder
	re.WriteString("^")
	for i, part := range strings.Split(shown, "...") {
		if i > 0 {
			re.WriteString(".*")
		}
		for j, word := range strings.Fields(part) {
			if j > 0 || strings.HasPrefix(part, " ") {
				re.WriteString(` +`)
			}
			re.WriteString(regexp.QuoteMeta(word))
		}
		if strings.HasSuffix(part, " ") && strings.TrimSpace(part) != "" {
			re.WriteString(` +`)
		}
	}
	re.WriteString("$")
	ok, _ := regexp.MatchString(re.String(), got)
	return ok
}

// TestDemos runs the docs' demo walk-throughs as written: each code block
// marked <!-- demo: make TARGET --> runs, in document order (README first),
// against the daemon started the way that make target starts it, with its
// data in a temp dir and its listeners on free ports (the addresses in the
// commands are replaced accordingly). A command with output shown must
// print that (read-only commands are polled, the pipeline being
// asynchronous); one without must succeed.
func TestDemos(t *testing.T) {
	root := shared.ModuleRoot(t)
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the demos run %s, which is not installed (Debian: apt-get install -y %s)", tool, tool)
		}
	}
	groups := map[string][]demoStep{}
	var order []string
	for _, f := range docFiles(t) {
		for _, b := range f.blocks {
			if b.demo == "" {
				continue
			}
			if _, ok := groups[b.demo]; !ok {
				order = append(order, b.demo)
			}
			groups[b.demo] = append(groups[b.demo], demoSteps(f, b)...)
		}
	}
	if len(groups["make run"]) < 5 {
		t.Fatalf("the README's tour (demo: make run) has %d commands", len(groups["make run"]))
	}
	for _, name := range order {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			runDemo(t, root, name, groups[name])
		})
	}
}

func runDemo(t *testing.T, root, name string, steps []demoStep) {
	bin := binary(t)
	target, ok := strings.CutPrefix(name, "make ")
	if !ok {
		t.Fatalf("demo %q: want \"make TARGET\"", name)
	}
	daemonArgs := makeRecipe(t, root, target)
	mllp, admin, sandbox, sandboxTLS := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	data := t.TempDir()
	env := append(os.Environ(), "EHRBRIDGE_DATA_DIR="+data, "EHRBRIDGE_MLLP_ADDR="+mllp, "EHRBRIDGE_ADMIN_ADDR="+admin,
		"EHRBRIDGE_SANDBOX_ADDR="+sandbox, "EHRBRIDGE_SANDBOX_TLS_ADDR="+sandboxTLS, "EHRBRIDGE_SANDBOX_EMBED=true")
	logs := &syncbuf.Buffer{}
	exited := start(t, root, env, bin, daemonArgs, logs)
	waitFor(t, 15*time.Second, "the daemon ready", exited, func() bool {
		r, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	})
	subst := strings.NewReplacer("./bin/ehrbridge", bin, "127.0.0.1:2575", mllp, "127.0.0.1:8080", admin,
		"127.0.0.1:8089", sandbox, "127.0.0.1:8443", sandboxTLS, "configs/data/", data+"/", "configs/data-dynamics/", data+"/")
	for _, s := range steps {
		script := subst.Replace(s.vars + "\n" + s.cmd)
		readOnly := !strings.Contains(s.cmd, " -X ") && !strings.Contains(s.cmd, " send ")
		deadline := time.Now().Add(20 * time.Second)
		for {
			c := exec.Command("bash", "-c", script)
			c.Dir, c.Env = root, env
			var out, errOut bytes.Buffer
			c.Stdout, c.Stderr = &out, &errOut
			err := c.Run()
			got := strings.Split(strings.TrimRight(out.String()+errOut.String(), "\n"), "\n")
			if s.expected == nil && err == nil || s.expected != nil && matches(s.expected, got) {
				break
			}
			if !readOnly || time.Now().After(deadline) {
				if s.expected == nil {
					t.Fatalf("%s: %s: %v\n%s%s\ndaemon log:\n%s", s.where, s.cmd, err, out.String(), errOut.String(), logs)
				}
				t.Fatalf("%s: %s\nprinted:\n%s\nthe docs show:\n%s", s.where, s.cmd, strings.Join(got, "\n"), strings.Join(s.expected, "\n"))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// makeRecipe returns the arguments of the ehrbridge command the make
// target runs (its last recipe line, with the Makefile's variables).
func makeRecipe(t *testing.T, root, target string) []string {
	t.Helper()
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Z_]+)\s*[:?]?=\s*(.*)$`).FindAllStringSubmatch(string(mk), -1) {
		vars[m[1]] = strings.TrimSpace(m[2])
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `:.*\n((?:\t.*\n)+)`).FindStringSubmatch(string(mk))
	if m == nil {
		t.Fatalf("the Makefile has no target %s with a recipe", target)
	}
	recipe := strings.Split(strings.TrimSpace(m[1]), "\n")
	line := regexp.MustCompile(`\$\(([A-Z_]+)\)`).ReplaceAllStringFunc(strings.TrimSpace(recipe[len(recipe)-1]), func(v string) string {
		return vars[v[2:len(v)-1]]
	})
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "./bin/ehrbridge" || f[1] != "run" {
		t.Fatalf("make %s runs %q, not ./bin/ehrbridge run: update this test and the docs", target, line)
	}
	return f[1:]
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitFor(t *testing.T, limit time.Duration, what string, exited <-chan struct{}, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		select {
		case <-exited:
			t.Fatalf("the daemon exited while waiting for %s", what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The Dataverse demo with the sandbox running apart, as sandbox.md tells
// it: with EHRBRIDGE_SANDBOX_EMBED=false, start `ehrbridge sandbox --data
// configs/data-dynamics/crm.json` first, so that its certificate lies
// where the config trusts it (configs/data-dynamics/sandbox-tls.pem); then
// make run-dynamics sends to it.
func TestSandboxApartDemo(t *testing.T) {
	t.Parallel()
	root := shared.ModuleRoot(t)
	const shown = "./bin/ehrbridge sandbox --data configs/data-dynamics/crm.json"
	const certShown = "configs/data-dynamics/sandbox-tls.pem"
	var sb *mdFile
	for _, f := range docFiles(t) {
		if f.path == filepath.Join("docs", "sandbox.md") {
			sb = f
		}
	}
	var haveCmd, haveCert bool
	for _, c := range sb.inlineCodes() {
		haveCmd = haveCmd || c.text == shown
		haveCert = haveCert || c.text == certShown
	}
	if !haveCmd || !haveCert {
		t.Fatalf("docs/sandbox.md no longer shows `%s` and `%s`: update this test with it", shown, certShown)
	}
	bin := binary(t)
	data := t.TempDir()
	mllp, admin, sandbox, sandboxTLS := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	env := append(os.Environ(), "EHRBRIDGE_DATA_DIR="+data, "EHRBRIDGE_MLLP_ADDR="+mllp, "EHRBRIDGE_ADMIN_ADDR="+admin,
		"EHRBRIDGE_SANDBOX_ADDR="+sandbox, "EHRBRIDGE_SANDBOX_TLS_ADDR="+sandboxTLS, "EHRBRIDGE_SANDBOX_EMBED=false")
	subst := strings.NewReplacer("./bin/ehrbridge", bin, "configs/data-dynamics/", data+"/")
	// --listen is the shown command's default address, moved to a free port.
	args := append(strings.Fields(subst.Replace(shown))[1:], "--listen", sandbox)
	sbLogs := &syncbuf.Buffer{}
	start(t, root, env, bin, args, sbLogs)
	cert := subst.Replace(certShown)
	waitFor(t, 10*time.Second, "the sandbox's certificate at "+certShown, nil, func() bool {
		_, err := os.Stat(cert)
		return err == nil
	})
	logs := &syncbuf.Buffer{}
	exited := start(t, root, env, bin, makeRecipe(t, root, "run-dynamics"), logs)
	waitFor(t, 15*time.Second, "the daemon ready", exited, func() bool {
		r, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	})
	out, err := exec.Command(bin, "send", "--to", mllp, filepath.Join(root, "configs", "samples", "hl7v2", "ADT-A01-01.hl7")).CombinedOutput()
	if err != nil || string(out) != "MSG00001 AA\n" {
		t.Fatalf("send: %v %s", err, out)
	}
	waitFor(t, 20*time.Second, "the patient as a contact in the sandbox running apart", exited, func() bool {
		r, err := http.Get("http://" + sandbox + "/sandbox/v1/objects/contacts")
		if err != nil {
			return false
		}
		defer r.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		return strings.Contains(b.String(), "PATID1234")
	})
}

// start runs bin with args in dir and stops it when the test ends; the
// returned channel closes when it exits.
func start(t *testing.T, dir string, env []string, bin string, args []string, logs *syncbuf.Buffer) <-chan struct{} {
	t.Helper()
	c := exec.Command(bin, args...)
	c.Dir, c.Env, c.Stdout, c.Stderr = dir, env, logs, logs
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = c.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = c.Process.Kill()
		<-exited
	})
	return exited
}

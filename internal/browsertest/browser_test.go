package browsertest

import (
	"bytes"
	"fmt"
	"html"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp/kb"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// pages serves the harness's test pages on 127.0.0.1.
func pages(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /form", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>search</title>
<form method="post" action="/answer">
  <a href="#skip" id="skip">Skip to search</a>
  <label for="mrn">MRN</label> <input id="mrn" name="mrn">
  <label for="reason">Reason</label> <input id="reason" name="reason">
  <button id="go">Search</button>
</form>`)
	})
	mux.HandleFunc("POST /answer", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><title>answer</title><p id="answer">searched %s for %s</p>`,
			html.EscapeString(r.FormValue("mrn")), html.EscapeString(r.FormValue("reason")))
	})
	mux.HandleFunc("GET /csp", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		fmt.Fprint(w, `<!doctype html><title>csp</title><p id="p">before</p>
<script>document.getElementById('p').textContent = 'inline script ran';</script>`)
	})
	mux.HandleFunc("GET /throws", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>throws</title><p id="p">page</p>
<script>console.error('made-up console error'); throw new Error('made-up exception');</script>`)
	})
	mux.HandleFunc("GET /set-cookie", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "made-up", Path: "/", HttpOnly: true})
		fmt.Fprint(w, `<!doctype html><title>signed in</title><p>signed in</p>`)
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		user, _, _ := r.BasicAuth()
		fmt.Fprintf(w, `<!doctype html><title>whoami</title><p id="user">%s</p>`, html.EscapeString(user))
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(mux) // binds 127.0.0.1
	t.Cleanup(srv.Close)
	return srv
}

func TestFormSubmittedAndAnswerRead(t *testing.T) {
	srv := pages(t)
	b := New(t)
	t.Logf("chromium started in %v; New took %v", ChromiumStartTime(), b.StartTime())
	b.Navigate(srv.URL + "/form")
	b.Type("#mrn", "ZZ000123")
	b.SetValue("#reason", "made-up")
	b.Submit("#mrn")
	b.WaitText("#answer", "searched")
	if got, want := b.Text("#answer"), "searched ZZ000123 for made-up"; got != want {
		t.Fatalf("answer %q, want %q", got, want)
	}
	if u := b.URL(); !strings.HasSuffix(u, "/answer") {
		t.Fatalf("URL after submit %s, want .../answer", u)
	}
	if p := b.Problems(); len(p) != 0 {
		t.Fatalf("problems on a clean page: %v", p)
	}
}

func TestCSPViolationDetected(t *testing.T) {
	srv := pages(t)
	b := New(t)
	b.Expect(CSPViolation, "script-src")
	b.Navigate(srv.URL + "/csp")
	p := b.WaitProblem(CSPViolation)
	if !strings.Contains(p.Text, "script-src") || !strings.Contains(p.URL, "/csp") {
		t.Errorf("violation %v: want the script-src directive and the page's URL", p)
	}
	// The policy held: the inline script did not run.
	if got := b.Text("#p"); got != "before" {
		t.Errorf("text %q: the inline script ran despite the policy", got)
	}
	var fromEvent bool
	for _, p := range b.Problems() {
		fromEvent = fromEvent || strings.HasPrefix(p.Text, "securitypolicyviolation:")
	}
	if !fromEvent {
		t.Errorf("no securitypolicyviolation event recorded, only %v", b.Problems())
	}
}

func TestExceptionsAndConsoleErrorsRecorded(t *testing.T) {
	srv := pages(t)
	b := New(t)
	b.Expect(Exception, "made-up exception")
	b.Expect(ConsoleError, "made-up console error")
	b.Navigate(srv.URL + "/throws")
	b.WaitProblem(Exception)
	b.WaitProblem(ConsoleError)
}

// TestUnexpectedProblemFailsTheTest runs the check a cleanup runs, against
// a recorder that is not the real test, and sees it fail.
func TestUnexpectedProblemFailsTheTest(t *testing.T) {
	rec := &recorder{TB: t}
	b := &Browser{t: rec}
	b.problems = []Problem{{Kind: Exception, Text: "boom"}, {Kind: ConsoleError, Text: "tolerated"}}
	b.Allow(ConsoleError, "toler")
	b.Expect(CSPViolation, "")
	b.checkProblems()
	if len(rec.errors) != 2 || !strings.Contains(rec.errors[0], "boom") || !strings.Contains(rec.errors[1], "CSP violation") {
		t.Fatalf("errors %q, want the unexpected exception and the unmet CSP expectation", rec.errors)
	}
}

// recorder is a testing.TB whose Errorf is recorded, not reported.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Helper() {}

func TestScreenshotIsPNG(t *testing.T) {
	srv := pages(t)
	dir := t.TempDir()
	t.Setenv(EnvArtifacts, dir)
	b := New(t)
	b.Navigate(srv.URL + "/form")
	path := b.Screenshot("form")
	if want := filepath.Join(dir, "TestScreenshotIsPNG", "form.png"); path != want {
		t.Errorf("screenshot at %s, want %s", path, want)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	if cfg.Width != Width || cfg.Height != Height {
		t.Errorf("screenshot %dx%d, want the %dx%d viewport", cfg.Width, cfg.Height, Width, Height)
	}
}

func TestTabMovesFocusToLabelledControl(t *testing.T) {
	srv := pages(t)
	b := New(t)
	b.Navigate(srv.URL + "/form")
	var got []string
	for range 3 {
		b.Press(kb.Tab)
		f := b.Focused()
		got = append(got, f.Tag+"#"+f.ID+" "+f.Label)
	}
	want := []string{"a#skip Skip to search", "input#mrn MRN", "input#reason Reason"}
	if !slices.Equal(got, want) {
		t.Fatalf("focus after each Tab %q, want %q", got, want)
	}
}

func TestNothingLeavesLoopback(t *testing.T) {
	b := New(t)
	b.Allow(LogError, "")
	b.Navigate("http://ehrbridge-browsertest.example/")
	if got := b.Outbound(); !slices.Contains(got, "ehrbridge-browsertest.example") {
		t.Fatalf("refused hosts %q: the request did not go to the refusing proxy", got)
	}
	if txt := b.Text("body"); !strings.Contains(txt, "only loopback") {
		t.Fatalf("page text %q, want the proxy's refusal", txt)
	}
}

func TestMissingBrowserNamesMakeBrowser(t *testing.T) {
	t.Setenv(EnvChromium, filepath.Join(t.TempDir(), "no-such-chromium"))
	_, err := FindChromium()
	if err == nil || !strings.Contains(err.Error(), "make browser") || !strings.Contains(err.Error(), "no-such-chromium") {
		t.Fatalf("error %v, want one naming the missing binary and `make browser`", err)
	}
}

// TestBrowsersAreIsolated: two browsers of one test share no cookies.
func TestBrowsersAreIsolated(t *testing.T) {
	srv := pages(t)
	admin, viewer := New(t), New(t)
	t.Logf("a second New took %v", viewer.StartTime())
	admin.Navigate(srv.URL + "/set-cookie")
	if c := admin.Cookies(srv.URL); len(c) != 1 || c[0].Name != "session" || !c[0].HttpOnly {
		t.Fatalf("admin's cookies %v, want the HttpOnly session", c)
	}
	viewer.Navigate(srv.URL + "/form")
	if c := viewer.Cookies(srv.URL); len(c) != 0 {
		t.Fatalf("viewer sees cookies %v set in the admin's browser", c)
	}
}

func TestBasicAuthSent(t *testing.T) {
	srv := pages(t)
	b := New(t)
	b.SetBasicAuth("made-up-user", "pw")
	b.Navigate(srv.URL + "/whoami")
	if got := b.Text("#user"); got != "made-up-user" {
		t.Fatalf("server saw user %q, want made-up-user", got)
	}
}

// TestTimeoutNamesURLAndSavesScreenshot: a wait that times out fails the
// test with the page's URL and the path of a screenshot of it.
func TestTimeoutNamesURLAndSavesScreenshot(t *testing.T) {
	srv := pages(t)
	t.Setenv(EnvArtifacts, t.TempDir())
	b := New(t)
	b.Navigate(srv.URL + "/form")
	rec := &fatalRecorder{TB: t}
	b.t, b.Timeout = rec, 300*time.Millisecond
	done := make(chan struct{})
	go func() { // Fatalf ends this goroutine, as it would a test's
		defer close(done)
		b.WaitText("#mrn", "never there")
	}()
	<-done
	b.t, b.Timeout = t, DefaultTimeout
	if rec.fatal == "" {
		t.Fatal("WaitText returned although the text never appeared")
	}
	if !strings.Contains(rec.fatal, srv.URL+"/form") {
		t.Errorf("failure %q does not name the page's URL", rec.fatal)
	}
	i := strings.Index(rec.fatal, "screenshot ")
	if i < 0 {
		t.Fatalf("failure %q names no screenshot", rec.fatal)
	}
	shot := strings.TrimSuffix(rec.fatal[i+len("screenshot "):], ")")
	if _, err := os.Stat(shot); err != nil {
		t.Errorf("screenshot named in the failure: %v", err)
	}
}

// fatalRecorder is a testing.TB whose Fatalf is recorded and ends the
// calling goroutine.
type fatalRecorder struct {
	testing.TB
	fatal string
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *fatalRecorder) Helper() {}

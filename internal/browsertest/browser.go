package browsertest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// The environment variables the harness reads.
const (
	// EnvChromium names the browser binary to run, before PATH is searched.
	EnvChromium = "EHRBRIDGE_CHROMIUM"
	// EnvRequireBrowser, when set to anything, turns a missing browser from
	// a skip into a failure; make test sets it.
	EnvRequireBrowser = "EHRBRIDGE_REQUIRE_BROWSER"
	// EnvArtifacts is the folder screenshots go to (one sub-folder per
	// test); the default is <repo>/artifacts.
	EnvArtifacts = "EHRBRIDGE_ARTIFACTS"
)

// DefaultTimeout is how long a helper waits (for an element, a text, a
// page load) before it fails the test; Browser.Timeout changes it.
const DefaultTimeout = 10 * time.Second

// The size of every tab's viewport, and so of its screenshots.
const (
	Width  = 1280
	Height = 900
)

// startTimeout bounds the browser's start, which is slower than any step
// on a loaded machine.
const startTimeout = 45 * time.Second

// browserNames are the programs searched on PATH, in order.
var browserNames = []string{"chromium", "chromium-browser", "google-chrome"}

// cspWorld is the isolated world the CSP listener runs in and the binding
// it reports through: the page cannot see or replace either.
const (
	cspWorld   = "ehrbridge-browsertest"
	cspBinding = "__ehrbridgeCSPViolation"
)

// cspListener runs in cspWorld before the page's own scripts.
const cspListener = `document.addEventListener('securitypolicyviolation', function (e) {
  self.` + cspBinding + `(JSON.stringify({directive: e.effectiveDirective || e.violatedDirective,
    blocked: e.blockedURI, url: e.documentURI, line: e.lineNumber}));
}, true);`

// Browser is one test's browser: a browser context of the shared headless
// Chromium, with one tab. Its helpers fail the test (t.Fatal) when a step does not succeed within
// Timeout, so they must be called from the test's goroutine.
type Browser struct {
	// Timeout is how long each helper waits; New sets DefaultTimeout.
	Timeout time.Duration

	t         testing.TB
	ctx       context.Context // the tab
	cancelTab context.CancelFunc
	proxy     *refusingProxy
	started   time.Duration
	artifacts string

	mu       sync.Mutex
	problems []Problem
	rules    []*rule
}

// errNoBrowser is FindChromium's error.
var errNoBrowser = errors.New("no Chromium found (" + EnvChromium + ", or chromium, chromium-browser or google-chrome on PATH): run `make browser` to install Debian's chromium")

// FindChromium returns the browser binary New would run: $EHRBRIDGE_CHROMIUM,
// else the first of chromium, chromium-browser and google-chrome on PATH. It
// returns an error naming `make browser` when there is none.
func FindChromium() (string, error) {
	if p := os.Getenv(EnvChromium); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: %s=%s: %v", errNoBrowser, EnvChromium, p, err)
		}
		return p, nil
	}
	for _, name := range browserNames {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errNoBrowser
}

// New gives t a fresh browser: its own browser context (cookies, storage
// and cache of its own, like a private window) with one 1280x900 tab,
// closed when t ends. The Chromium process behind it is shared by the tests
// of the test binary (see Main) and started by the first New. Without a
// browser New fails the test when EHRBRIDGE_REQUIRE_BROWSER is set and skips
// it otherwise.
func New(t testing.TB) *Browser {
	t.Helper()
	start := time.Now()
	proc, err := sharedProcess()
	if err != nil {
		if errors.Is(err, errNoBrowser) && os.Getenv(EnvRequireBrowser) == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	b := &Browser{Timeout: DefaultTimeout, t: t}
	b.proxy = startRefusingProxy(t)
	ctx, cancelTab := chromedp.NewContext(proc.ctx, chromedp.WithListener(b.record),
		chromedp.WithNewBrowserContext(func(p *target.CreateBrowserContextParams) {
			// This context's outside traffic goes to its own refusing proxy,
			// so Outbound is this test's; loopback bypasses it.
			p.ProxyServer = "http://" + b.proxy.addr
		}))
	b.ctx, b.cancelTab = ctx, cancelTab
	t.Cleanup(b.stop)

	// The first action opens the tab and must run on the tab's own context:
	// chromedp ties the tab's life to the context of its first run, so a
	// derived context with a deadline would close it.
	opened := make(chan error, 1)
	go func() {
		opened <- chromedp.Do(ctx, chromedp.EmulateViewport(Width, Height), chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			if _, err := chromedp.Call(ctx, runtime.AddBinding, runtime.AddBindingParams{Name: cspBinding, ExecutionContextName: cspWorld}); err != nil {
				return fmt.Errorf("adding the CSP binding: %w", err)
			}
			if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspListener, WorldName: cspWorld}); err != nil {
				return fmt.Errorf("adding the CSP listener: %w", err)
			}
			return nil
		}))
	}()
	select {
	case err = <-opened:
	case <-time.After(startTimeout):
		cancelTab()
		err = fmt.Errorf("no tab after %v", startTimeout)
	}
	b.started = time.Since(start)
	if err != nil {
		t.Fatalf("browser: opening a tab in %s: %v", proc.exe, err)
	}
	return b
}

// StartTime is how long New took: starting Chromium (the first New of a
// test binary only) and opening the tab.
func (b *Browser) StartTime() time.Duration { return b.started }

// Context is the tab's chromedp context, for steps the helpers lack:
// chromedp.Run(b.Context(), ...). Bound it with a timeout.
func (b *Browser) Context() context.Context { return b.ctx }

// stop checks the recorded problems, then closes the tab and its browser
// context.
func (b *Browser) stop() {
	b.checkProblems()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	_ = chromedp.Cancel(ctx) // waits for the tab to close
	b.cancelTab()
}

// step runs a chromedp action bounded by Timeout, failing the test on
// error with the page's URL and a screenshot.
func step[T any](b *Browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fail(what, err)
	}
	return v
}

// fail ends the test with what was being done, the page's URL and a
// screenshot of it.
func (b *Browser) fail(what string, err error) {
	b.t.Helper()
	url := b.currentURL()
	shot, serr := b.capture("failed-" + what)
	if serr != nil {
		shot = "none (" + serr.Error() + ")"
	}
	b.t.Fatalf("browser: %s: %v (page %s; screenshot %s)", what, err, url, shot)
}

// currentURL is the tab's URL, or why it cannot be read.
func (b *Browser) currentURL() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return u
}

// URL returns the tab's current URL.
func (b *Browser) URL() string {
	b.t.Helper()
	return step(b, "reading the URL", chromedp.Location())
}

// Navigate loads url and waits for its load event.
func (b *Browser) Navigate(url string) {
	b.t.Helper()
	step(b, "navigating to "+url, chromedp.Navigate(url))
}

// Click clicks the first element matching the CSS selector sel, once it
// is visible.
func (b *Browser) Click(sel string) {
	b.t.Helper()
	step(b, "clicking "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// SetValue sets the value of the form control matching sel directly, as a
// script would (no key events; input and change listeners do not run).
// Use Type to act as a user.
func (b *Browser) SetValue(sel, value string) {
	b.t.Helper()
	step(b, "setting the value of "+sel, chromedp.SetValue(chromedp.CSS(sel), value, chromedp.NodeReady))
}

// Type focuses the element matching sel and types text into it as key
// events, as a user would. kb's constants (kb.Enter, kb.Tab) are keys.
func (b *Browser) Type(sel, text string) {
	b.t.Helper()
	step(b, "typing into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible))
}

// Press sends keys to whatever has the focus, for example "\t" (kb.Tab) to
// move it.
func (b *Browser) Press(keys string) {
	b.t.Helper()
	step(b, "pressing keys", chromedp.KeyEvent(keys))
}

// Submit submits the form that the element matching sel belongs to. It
// does not wait for the answer: follow it with WaitText or WaitVisible.
func (b *Browser) Submit(sel string) {
	b.t.Helper()
	step(b, "submitting the form of "+sel, chromedp.Submit(chromedp.CSS(sel), chromedp.NodeReady))
}

// Text returns the rendered text (innerText) of the first element matching
// sel, once it exists.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	return step(b, "reading the text of "+sel, chromedp.Text(chromedp.CSS(sel), chromedp.NodeReady))
}

// WaitVisible waits until an element matching sel is rendered and visible
// (it has a layout box and is not visibility:hidden), across navigations.
func (b *Browser) WaitVisible(sel string) {
	b.t.Helper()
	b.poll("waiting for "+sel+" to be visible", `(() => {
  const e = document.querySelector(`+jsString(sel)+`);
  return !!e && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
})()`)
}

// WaitText waits until the rendered text of an element matching sel
// contains want, across navigations.
func (b *Browser) WaitText(sel, want string) {
	b.t.Helper()
	b.poll("waiting for "+sel+" to contain "+jsString(want), `(() => {
  const e = document.querySelector(`+jsString(sel)+`);
  return !!e && e.innerText.includes(`+jsString(want)+`);
})()`)
}

// poll evaluates a boolean expression until it is true or Timeout passes.
// Errors while a page is being replaced are retried.
func (b *Browser) poll(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.Timeout)
	defer cancel()
	var last error
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = errors.New("timed out after " + b.Timeout.String())
			}
			b.fail(what, last)
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Eval evaluates a JavaScript expression in the page and decodes its
// result into T, failing the test on error.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	return step(b, "evaluating a script", chromedp.Evaluate[T](expr))
}

// Focus describes the element that has the keyboard focus.
type Focus struct {
	Tag   string // lower case, "body" when nothing is focused
	ID    string
	Label string // the control's label text, aria-label, or its own text
}

// Focused describes the element that has the keyboard focus.
func (b *Browser) Focused() Focus {
	b.t.Helper()
	return Eval[Focus](b, `(() => {
  const e = document.activeElement || document.body;
  let label = e.getAttribute('aria-label') || '';
  if (!label && e.labels && e.labels.length) label = e.labels[0].innerText;
  if (!label && e.getAttribute('aria-labelledby')) {
    const l = document.getElementById(e.getAttribute('aria-labelledby'));
    if (l) label = l.innerText;
  }
  if (!label && e !== document.body) label = e.innerText || e.value || '';
  return {Tag: e.tagName.toLowerCase(), ID: e.id, Label: label.trim()};
})()`)
}

// SetBasicAuth sends an HTTP Basic Authorization header with every
// request the tab makes from now on (Chromium shows no prompt headless).
func (b *Browser) SetBasicAuth(user, password string) {
	b.t.Helper()
	h := network.Headers{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}
	step(b, "setting the Authorization header", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: h})
		return err
	}))
}

// Cookies returns the browser's cookies for url (a session's cookie, to
// check its flags or hand it to an HTTP client).
func (b *Browser) Cookies(url string) []*http.Cookie {
	b.t.Helper()
	cs := step(b, "reading cookies", chromedp.Action[[]*network.Cookie](func(ctx context.Context, _ *chromedp.Target) ([]*network.Cookie, error) {
		r, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
		if err != nil {
			return nil, err
		}
		return r.Cookies, nil
	}))
	out := make([]*http.Cookie, 0, len(cs))
	for _, c := range cs {
		out = append(out, &http.Cookie{Name: c.Name, Value: c.Value, Domain: c.Domain, Path: c.Path, HttpOnly: c.HTTPOnly, Secure: c.Secure})
	}
	return out
}

// Outbound returns the hosts the browser tried to reach beyond loopback
// (each refused), in order.
func (b *Browser) Outbound() []string { return b.proxy.hosts() }

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r < 0x20 || r == 0x2028 || r == 0x2029:
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

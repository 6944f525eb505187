package console

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// Test accounts: a token is at least 16 characters.
const (
	viewerToken   = "viewer-token-0123456789"
	operatorToken = "operator-token-0123456789"
	auditorToken  = "auditor-token-0123456789"
)

// fixture is a console on a fresh log, served by httptest on 127.0.0.1.
type fixture struct {
	t        *testing.T
	log      *checkpoint.Log
	con      *Console
	srv      *httptest.Server
	dataDir  string
	now      time.Time
	mu       sync.Mutex
	overview Overview
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, dataDir: t.TempDir(), now: time.Now().UTC().Add(-time.Hour).Truncate(time.Second)}
	l, err := checkpoint.Open(filepath.Join(f.dataDir, checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f.log = l
	access := &logadmin.Access{Users: map[string]logadmin.Perm{}, Groups: map[string]logadmin.Perm{}, Trusted: map[uint32]bool{},
		Audit: logadmin.NewAudit(f.dataDir)}
	access.Audit.System = nil
	for _, a := range []struct{ name, role, token string }{{"vera", "viewer", viewerToken}, {"otto", "operator", operatorToken}, {"aude", "auditor", auditorToken}} {
		acc, err := logadmin.NewAccount(a.name, a.role, a.token)
		if err != nil {
			t.Fatal(err)
		}
		access.Accounts = append(access.Accounts, acc)
	}
	f.con, err = New(Options{Log: l, Access: access, Version: "test", Now: f.clock, Overview: func() Overview {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.overview
	}})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.con)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// client is a browser-like client: cookies kept, redirects followed.
func (f *fixture) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

// signIn signs c in with an account and returns the session's CSRF token.
func (f *fixture) signIn(c *http.Client, account, token string) string {
	f.t.Helper()
	resp, err := c.PostForm(f.srv.URL+Prefix+"signin", url.Values{"account": {account}, "token": {token}, "next": {Prefix}})
	if err != nil {
		f.t.Fatal(err)
	}
	body := readAll(f.t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, "<h1>Dashboard</h1>") {
		f.t.Fatalf("sign-in as %s: %d\n%s", account, resp.StatusCode, body)
	}
	return csrfOf(f.t, body)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", body)
	}
	return m[1]
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (f *fixture) get(c *http.Client, path string) (int, string) {
	f.t.Helper()
	resp, err := c.Get(f.srv.URL + path)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, readAll(f.t, resp)
}

func (f *fixture) audit() string {
	b, _ := os.ReadFile(filepath.Join(f.dataDir, logadmin.AuditFileName))
	return string(b)
}

func TestSignInRequiredAndSecurityHeaders(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	status, body := f.get(c, Prefix)
	if status != 200 || !strings.Contains(body, "Sign in to the ehrbridge console") {
		t.Fatalf("signed out: want the sign-in form, got %d\n%s", status, body)
	}
	resp, err := http.Get(f.srv.URL + Prefix + "signin")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "http") {
		t.Errorf("CSP allows inline code or another origin: %q", csp)
	}
	for h, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	// No page of the console refers to another origin.
	for _, p := range []string{Prefix + "signin", Prefix + "static/console.css", Prefix + "static/console.js"} {
		_, body := f.get(f.client(), p)
		if regexp.MustCompile(`(?i)(src|href)=["']?(https?:)?//`).MatchString(body) || strings.Contains(body, "url(http") {
			t.Errorf("%s refers to another origin", p)
		}
	}
}

func TestSignInWithAccountAndSignOut(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	csrf := f.signIn(c, "vera", viewerToken)
	if _, body := f.get(c, Prefix); !strings.Contains(body, "vera") || !strings.Contains(body, "(viewer)") {
		t.Fatalf("the page does not name the signed-in user and role:\n%s", body)
	}
	if !strings.Contains(f.audit(), `"action":"console sign-in","outcome":"allowed","user":"vera"`) {
		t.Errorf("sign-in not audited:\n%s", f.audit())
	}
	resp, err := c.PostForm(f.srv.URL+Prefix+"signout", url.Values{"csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); !strings.Contains(body, "Sign in to the ehrbridge console") {
		t.Fatalf("after sign-out: %s", body)
	}
	if _, body := f.get(c, Prefix); !strings.Contains(body, "Sign in to the ehrbridge console") {
		t.Fatal("the session outlived its sign-out")
	}
}

func TestSignInRefusesWrongTokenAndThrottles(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	for i := range maxFailures {
		resp, err := c.PostForm(f.srv.URL+Prefix+"signin", url.Values{"account": {"vera"}, "token": {"wrong-token-0123456789"}})
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong account name or token") {
			t.Fatalf("try %d: %d\n%s", i, resp.StatusCode, body)
		}
	}
	// Now even the right token waits out the window.
	resp, err := c.PostForm(f.srv.URL+Prefix+"signin", url.Values{"account": {"vera"}, "token": {viewerToken}})
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after %d failures: %d, want 429", maxFailures, resp.StatusCode)
	}
	f.advance(failWindow + time.Second)
	f.signIn(c, "vera", viewerToken)
	if n := strings.Count(f.audit(), `"action":"console sign-in","outcome":"refused`); n != maxFailures+1 {
		t.Errorf("refused sign-ins audited %d times, want %d", n, maxFailures+1)
	}
	if strings.Contains(f.audit(), "wrong-token") {
		t.Error("the audit log holds a token")
	}
}

func TestSessionExpiresWhenIdleAndAfterMaxAge(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	f.signIn(c, "vera", viewerToken)
	f.advance(IdleTimeout - time.Minute)
	if _, body := f.get(c, Prefix); !strings.Contains(body, "<h1>Dashboard</h1>") {
		t.Fatal("signed out before the idle timeout")
	}
	f.advance(IdleTimeout + time.Second)
	if _, body := f.get(c, Prefix); !strings.Contains(body, "Sign in") {
		t.Fatal("still signed in after the idle timeout")
	}
	f.signIn(c, "vera", viewerToken)
	for elapsed := time.Duration(0); elapsed <= MaxAge; elapsed += IdleTimeout - time.Minute {
		f.advance(IdleTimeout - time.Minute)
		f.get(c, Prefix)
	}
	if _, body := f.get(c, Prefix); !strings.Contains(body, "Sign in") {
		t.Fatal("a session kept alive by use outlived its maximum age")
	}
}

func TestSignOutNeedsTheCSRFToken(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	f.signIn(c, "vera", viewerToken)
	// A forged form (another site's page) has no token: the session stays.
	resp, err := c.PostForm(f.srv.URL+Prefix+"signout", url.Values{"csrf": {"forged"}})
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if _, body := f.get(c, Prefix); !strings.Contains(body, "<h1>Dashboard</h1>") {
		t.Fatal("a forged sign-out ended the session")
	}
}

func TestCrossSiteSignInRefused(t *testing.T) {
	f := newFixture(t)
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+Prefix+"signin", strings.NewReader(url.Values{"account": {"vera"}, "token": {viewerToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Fatalf("a cross-site sign-in: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
}

func TestSafeNextStaysInTheConsole(t *testing.T) {
	for next, want := range map[string]string{"/ui/messages?state=dead": "/ui/messages?state=dead", "https://evil.example/": Prefix,
		"//evil.example/ui/": Prefix, "/ui/\\evil": Prefix, "": Prefix, "/status": Prefix} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{"127.0.0.1:8080": true, "localhost:8080": true, "[::1]:8080": true, "LOCALHOST": true,
		"evil.example:8080": false, "10.0.0.5:8080": false, "127.0.0.1.evil.example": false} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		if got := loopbackHost(r); got != want {
			t.Errorf("loopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestDashboardShowsPartsAndRates(t *testing.T) {
	f := newFixture(t)
	set := func(frames int64) {
		f.mu.Lock()
		f.overview = Overview{Ready: true, Sources: []Endpoint{{ID: "mllp/adt", Name: "adt", Kind: "MLLP listener", Address: "127.0.0.1:2575",
			LogSource: "adt", State: "listening", Counters: []Counter{{Name: "frames received", Value: frames, Rate: true}}}},
			Destinations: []Endpoint{{ID: "crm", Name: "Salesforce", Kind: "CRM", State: "breaker open", Problem: true, LastError: "503 SERVER_UNAVAILABLE"}}}
		f.mu.Unlock()
	}
	set(100)
	f.con.rates.add(f.con.overview())
	f.advance(time.Minute)
	set(160)
	f.con.rates.add(f.con.overview())
	c := f.client()
	f.signIn(c, "vera", viewerToken)
	_, body := f.get(c, Prefix)
	for _, want := range []string{"MLLP listener", "127.0.0.1:2575", "frames received", "160", "60.0/min", "breaker open", "503 SERVER_UNAVAILABLE", `class="endpoint attention"`} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	// The live part alone, for console.js.
	req, _ := http.NewRequest("GET", f.srv.URL+Prefix+"live", nil)
	req.Header.Set("X-Console-Fetch", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if live := readAll(t, resp); strings.Contains(live, "<html") || !strings.Contains(live, "frames received") {
		t.Errorf("the live fragment is not the dashboard's part alone:\n%s", live)
	}
	// Signed out, the live fetch gets a 401 (console.js then goes to the sign-in form).
	req.Header.Del("Cookie")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("signed-out live fetch: %d", resp.StatusCode)
	}
}

func TestSamplerRates(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSampler(func() time.Time { return now })
	ov := func(v int64) Overview {
		return Overview{Sources: []Endpoint{{ID: "x", Counters: []Counter{{Name: "n", Value: v, Rate: true}}}}}
	}
	if _, ok := s.rate("x/n", 0, time.Minute); ok {
		t.Fatal("a rate without samples")
	}
	for i := range 31 { // 5 minutes of samples, 10 s apart, 6 per sample
		s.add(ov(int64(6 * i)))
		if i < 30 {
			now = now.Add(sampleEvery)
		}
	}
	if r, ok := s.rate("x/n", 180, time.Minute); !ok || r < 35.9 || r > 36.1 {
		t.Errorf("1-minute rate = %v, %v; want 36/min", r, ok)
	}
	if r, ok := s.rate("x/n", 180, 5*time.Minute); !ok || r < 35.9 || r > 36.1 {
		t.Errorf("5-minute rate = %v, %v; want 36/min", r, ok)
	}
	// A counter that went backwards (a restarted part) gives no rate.
	if _, ok := s.rate("x/n", 3, time.Minute); ok {
		t.Error("a rate from a counter that went backwards")
	}
}

package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
	"github.com/ehrbridge/ehrbridge/mappings"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the console is served on the admin address.
const Prefix = "/ui/"

// Options configure the console.
type Options struct {
	// Log is the checkpoint log the console reads and acts on.
	Log *checkpoint.Log
	// Access authenticates sign-ins, gives roles and writes the audit
	// trail (the admin endpoint's, shared with the log API).
	Access *logadmin.Access
	// Overview reads the daemon's parts for the dashboard; nil shows the
	// log's counts only.
	Overview func() Overview
	// Version is shown in the header.
	Version string
	// TLS: the console is served over TLS (its cookie is then Secure).
	TLS bool
	// Logger receives the console's own problems (never message data).
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Mappings is the running mapping set: the patient search normalises
	// a typed identifier with its lane:, the workbench maps with it. nil:
	// none.
	Mappings func() *mappings.Set
	// MappingPaths are the set's files and directories (the workbench
	// runs their tests and lint), loaded with MappingOptions.
	MappingPaths   []string
	MappingOptions mappings.Options
}

// Console is the admin console: a server-rendered web application on the
// admin address, under Prefix.
type Console struct {
	opts     Options
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
	rates    *sampler
	srcCache sourceCache
}

// New makes the console. It has no side effects: Run samples the rates.
func New(opts Options) (*Console, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Console{opts: opts, sessions: newSessions(opts.Now), pages: map[string]*template.Template{}, mux: http.NewServeMux(),
		rates: newSampler(opts.Now)}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// Run samples the dashboard's counters until ctx ends, for its rates.
func (c *Console) Run(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	c.rates.add(c.overview())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.rates.add(c.overview())
		}
	}
}

// ServeHTTP serves the console's pages, with its security headers on
// every answer.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Everything is served from the binary: no external origin is ever
	// contacted (a hospital network may have no internet), and no inline
	// script or style runs.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	if !strings.HasPrefix(r.URL.Path, Prefix+"static/") {
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

func (c *Console) routes() {
	static, _ := fs.Sub(staticFS, "static")
	c.mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", http.FileServer(http.FS(static))))
	c.mux.HandleFunc("GET "+Prefix+"signin", c.signinForm)
	c.mux.HandleFunc("POST "+Prefix+"signin", c.signin)
	c.mux.HandleFunc("POST "+Prefix+"signout", c.signout)
	c.mux.HandleFunc("GET "+Prefix+"{$}", c.page(logadmin.PermView, "", c.dashboard))
	c.mux.HandleFunc("GET "+Prefix+"live", c.page(logadmin.PermView, "", c.dashboardLive))
	c.extraRoutes()
	c.mux.HandleFunc(Prefix, c.page(logadmin.PermView, "", func(w http.ResponseWriter, r *http.Request, s *session) {
		c.fail(w, r, s, http.StatusNotFound, "There is no such page.")
	}))
}

// handler is a console page given the request's session.
type handler func(w http.ResponseWriter, r *http.Request, s *session)

// page serves h to a signed-in user holding need; others are sent to the
// sign-in form, or refused (audited) when signed in without the role.
// action, when set, is audited for each allowed call too (a search for a
// patient, a record opened).
func (c *Console) page(need logadmin.Perm, action string, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, _ := c.sessionOf(r)
		if s == nil {
			if r.Header.Get("X-Console-Fetch") != "" {
				http.Error(w, "signed out", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, Prefix+"signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if s.caller.Perm&need != need {
			c.refuse(w, r, s, action, need)
			return
		}
		h(w, r, s)
	}
}

// act serves a POST that changes something: a signed-in user holding
// need, a CSRF token matching the session's, a same-origin request; the
// audit line is written (with object) before h runs, and h does not run
// when it cannot be.
func (c *Console) act(need logadmin.Perm, action string, object func(*http.Request) string, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, _ := c.sessionOf(r)
		if s == nil {
			http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if !sameOrigin(r) || !s.csrfOK(formOrHeader(r, "csrf", "X-CSRF-Token")) {
			_ = c.opts.Access.Audit.Call(s.caller, action, "", "refused: CSRF check failed")
			c.fail(w, r, s, http.StatusForbidden, "The form was not sent by this console (its security token did not match). Reload the page and try again.")
			return
		}
		obj := ""
		if object != nil {
			obj = object(r)
		}
		if s.caller.Perm&need != need {
			c.refuseObject(w, r, s, action, obj, need)
			return
		}
		if err := c.opts.Access.Audit.Call(s.caller, action, obj, "allowed"); err != nil {
			c.fail(w, r, s, http.StatusInternalServerError, "The audit log cannot be written, so nothing was done.")
			return
		}
		h(w, r, s)
	}
}

// maxForm bounds a console form (a pasted message in the workbench is the
// largest).
const maxForm = 4 << 20

func formOrHeader(r *http.Request, field, header string) string {
	if v := r.Header.Get(header); v != "" {
		return v
	}
	return r.PostFormValue(field)
}

// sameOrigin refuses a request a browser says came from another site:
// Sec-Fetch-Site, else Origin, when present (the CSRF token still has to
// match).
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		return s == "same-origin"
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host
	}
	return true
}

// loopbackHost says whether the request named this machine by a loopback
// address or "localhost": a page elsewhere that rebinds its DNS name to
// 127.0.0.1 reaches the admin port under its own name, and must not sign
// in as the local user.
func loopbackHost(r *http.Request) bool {
	h := r.Host
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (c *Console) refuse(w http.ResponseWriter, r *http.Request, s *session, action string, need logadmin.Perm) {
	c.refuseObject(w, r, s, action, "", need)
}

// refuseObject audits and answers a refusal of action on object ("record
// 12"; "" for a page).
func (c *Console) refuseObject(w http.ResponseWriter, r *http.Request, s *session, action, object string, need logadmin.Perm) {
	if action == "" {
		action = "console " + r.URL.Path
	}
	_ = c.opts.Access.Audit.Call(s.caller, action, object, "refused")
	c.fail(w, r, s, http.StatusForbidden, fmt.Sprintf("Your role (%s) does not allow this: it needs %s. An administrator gives roles in admin.accounts or admin.roles.",
		s.caller.Perm, need))
}

// fail shows an error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	c.render(w, r, s, "error", "Problem", "", struct{ Message string }{msg})
}

// view is what every page's template gets.
type view struct {
	Title, Nav, Version string
	User, Roles         string
	CSRF                string
	CanOperate          bool
	CanReveal           bool
	Flash               string
	Data                any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, page, title, nav string, data any) {
	t := c.pages[page]
	v := view{Title: title, Nav: nav, Version: c.opts.Version, Data: data, Flash: r.URL.Query().Get("done")}
	if s != nil {
		v.User, v.Roles, v.CSRF = s.caller.Name, s.caller.Perm.String(), s.csrf
		v.CanOperate, v.CanReveal = s.caller.Perm&logadmin.PermOperate != 0, s.caller.Perm&logadmin.PermReveal != 0
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	}
	name := "layout"
	if t.Lookup("fragment") != nil && r.Header.Get("X-Console-Fetch") != "" {
		name = "fragment"
	}
	if err := t.ExecuteTemplate(w, name, v); err != nil {
		// A template's own error names a template position, never a value;
		// anything else is the browser gone away, not worth a line (and
		// its text is not ours to vouch for).
		var te texttemplate.ExecError
		if errors.As(err, &te) {
			c.opts.Logger.Warn("console page failed", "page", page, "template", te.Name)
		}
	}
}

func (c *Console) parseTemplates() error {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" || base == "parts" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", n)
		if err != nil {
			return fmt.Errorf("console: %s: %w", n, err)
		}
		c.pages[base] = t
	}
	return nil
}

func (c *Console) signinForm(w http.ResponseWriter, r *http.Request) {
	if s, _ := c.sessionOf(r); s != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.showSignin(w, r, http.StatusOK, "")
}

type signinData struct {
	Next    string
	OSUser  string // the local user the OS names, offered when there is one
	Problem string
}

func (c *Console) showSignin(w http.ResponseWriter, r *http.Request, status int, problem string) {
	d := signinData{Next: safeNext(r.FormValue("next")), Problem: problem}
	if oc, ok := c.opts.Access.OSCaller(r); ok && loopbackHost(r) && oc.Perm != 0 {
		d.OSUser = oc.Name
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	c.render(w, r, nil, "signin", "Sign in", "", d)
}

// signin starts a session: for an account (name and token), or for the
// local user the OS names (the admin socket, or loopback on Linux) when
// the form asks for that.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if !sameOrigin(r) {
		c.showSignin(w, r, http.StatusForbidden, "This sign-in did not come from the console's own page.")
		return
	}
	if c.sessions.throttled(r.RemoteAddr) {
		_ = c.opts.Access.Audit.Call(logadmin.Caller{Name: "anonymous", Via: "console", Remote: r.RemoteAddr}, "console sign-in", "", "refused: too many failures")
		c.showSignin(w, r, http.StatusTooManyRequests, "Too many failed sign-ins from this address: wait five minutes.")
		return
	}
	var caller logadmin.Caller
	var ok bool
	if r.PostFormValue("as") == "os" {
		if loopbackHost(r) {
			caller, ok = c.opts.Access.OSCaller(r)
			ok = ok && caller.Perm != 0
			caller.Via = "console (" + caller.Via + ")"
		}
	} else {
		caller, ok = c.opts.Access.SignIn(r.PostFormValue("account"), r.PostFormValue("token"), r.RemoteAddr)
	}
	if !ok {
		c.sessions.fail(r.RemoteAddr)
		if caller.Name == "" {
			caller = logadmin.Caller{Name: "anonymous", Via: "console", Remote: r.RemoteAddr}
		}
		_ = c.opts.Access.Audit.Call(caller, "console sign-in", "", "refused")
		c.showSignin(w, r, http.StatusUnauthorized, "Wrong account name or token, or no role for this console.")
		return
	}
	if err := c.opts.Access.Audit.Call(caller, "console sign-in", "", "allowed"); err != nil {
		c.showSignin(w, r, http.StatusInternalServerError, "The audit log cannot be written: sign-in refused.")
		return
	}
	id, _ := c.sessions.start(caller)
	c.setCookie(w, id, 0)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request) {
	s, id := c.sessionOf(r)
	if s != nil && !(sameOrigin(r) && s.csrfOK(r.PostFormValue("csrf"))) {
		// Another site's form: the session stays.
		c.fail(w, r, s, http.StatusForbidden, "The sign-out was not sent by this console.")
		return
	}
	if s != nil {
		_ = c.opts.Access.Audit.Call(s.caller, "console sign-out", "", "allowed")
		c.sessions.end(id)
	}
	c.setCookie(w, "", -1)
	http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
}

// safeNext keeps a post-sign-in redirect inside the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix
	}
	return next
}

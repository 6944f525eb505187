package sandbox

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/logging"
)

// Options configure a Server. Zero values select the defaults.
type Options struct {
	// ClientID and ClientSecret are the connected app's; default
	// "sandbox-client" and "sandbox-secret".
	ClientID, ClientSecret string
	// Users maps usernames to passwords (password grant; JWT subjects);
	// default {"integration@sandbox.example": "sandbox-password"}.
	Users map[string]string
	// RunAsUser is the user of the client credentials flow; default the
	// first of Users in name order.
	RunAsUser string
	// RefreshTokens maps refresh tokens to their users.
	RefreshTokens map[string]string
	// JWTKey verifies JWT bearer assertions (see ParseCertificate); nil
	// disables the flow.
	JWTKey *rsa.PublicKey
	// SandboxOrg makes the server a sandbox org: JWT bearer assertions
	// must be addressed to https://test.salesforce.com instead of
	// https://login.salesforce.com. As in Salesforce, the server's own URL
	// (a My Domain) is never a valid audience; anything else is answered
	// invalid_grant "audience is invalid"
	// (https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_jwt_flow.htm).
	SandboxOrg bool
	// LoginURLs are further accepted JWT audiences: Experience Cloud site
	// URLs.
	LoginURLs []string
	// TokenTTL is how long an access token lives; default 2h.
	TokenTTL time.Duration
	// DailyLimit is the org's daily API request allocation; default 100,000.
	DailyLimit int
	// AppLimit is the connected app's own daily allocation (an API quota
	// on the connected app), sent as Sforce-Limit-Info's per-app-api-usage
	// part and enforced; 0, the default, is no quota, and then, as in
	// Salesforce, the header has no per-app part. AppName names the app
	// there; default "ehrbridge".
	AppLimit int
	AppName  string
	// UsedAtStart and AppUsedAtStart are API requests already used today
	// when the server starts (org-wide and by the app), to start it near
	// a limit.
	UsedAtStart, AppUsedAtStart int
	// Schemas are the org's own describe files (GET
	// .../sobjects/X/describe results, or JSON lists of them: the files
	// `ehrbridge lint --schema` reads). They extend the published schema
	// the sandbox enforces by default (sfschema.json); a field they
	// describe replaces the published one. Unknown sObjects, unknown
	// fields, values outside a restricted picklist, text over a field's
	// length and required fields missing on create are refused as
	// Salesforce refuses them.
	Schemas []string
	// NoSchema accepts any object and field, as the sandbox did before it
	// knew a schema: for tests of objects no schema describes.
	NoSchema bool
	// QueryPageSize is how many records a query page holds; default 2000.
	QueryPageSize int
	// DataFile, when set, keeps the records across restarts: loaded at
	// start, saved (atomically) within FlushInterval of a change and at Close.
	DataFile string
	// FlushInterval; default 200ms.
	FlushInterval time.Duration
	// The Dataverse side (dv_identity.go, dv_webapi.go): the tenant and the
	// app registration's client id and secret; default "sandbox-tenant",
	// "sandbox-client" and "sandbox-secret". DataverseCert, when set,
	// verifies certificate (client assertion) credentials.
	TenantID                           string
	DataverseClientID, DataverseSecret string
	DataverseCert                      *x509.Certificate
	// Service protection limits per client: requests per window (default
	// 6000 per 5 minutes) and requests in flight (default 52).
	DataverseRequestLimit int
	DataverseWindow       time.Duration
	DataverseConcurrency  int
	// Seed makes drop-after-commit faults and the order of collated
	// Composite subrequests repeatable; 0 seeds from the clock.
	Seed   uint64
	Now    func() time.Time
	Logger *slog.Logger
}

// Server is the CRM sandbox: the subset of the Salesforce REST API that
// ehrbridge's connector uses, with the behaviours that matter for
// exactly-once (upsert by external id, collections, per-record errors,
// limits, expired sessions) and fault injection.
type Server struct {
	opts Options
	st   *store

	mu       sync.Mutex // sessions, cursors, faults
	sessions map[string]session
	dvTokens map[string]dvToken
	dvUsage  map[string]*dvUsage
	cursors  map[string]*cursor
	faults   []*fault
	latency  time.Duration
	dropP    float64
	rng      *rand.Rand
	journal  writeJournal // journal.go

	apiRequests atomic.Int64 // since start, toward the daily limit
	requests    atomic.Int64 // every CRM API request: token and data API
	statsMu     sync.Mutex
	byEndpoint  map[string]int64

	srv       *http.Server
	tlsSrv    *http.Server
	stopFlush chan struct{}
	flushed   chan struct{}
	closeOnce sync.Once
}

type cursor struct {
	object  string
	records []Record
	next    int
	created time.Time
	version string
	query   *Query
}

// fault is one injected misbehaviour.
type fault struct {
	status    int
	limit     bool // REQUEST_LIMIT_EXCEEDED
	count     int  // remaining requests of a counted fault
	until     time.Time
	timeBound bool
}

// New makes a server (not yet listening). It loads DataFile if set.
func New(opts Options) (*Server, error) {
	if opts.ClientID == "" {
		opts.ClientID = "sandbox-client"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "sandbox-secret"
	}
	if len(opts.Users) == 0 {
		opts.Users = map[string]string{"integration@sandbox.example": "sandbox-password"}
	}
	if opts.RunAsUser == "" {
		for u := range opts.Users {
			if opts.RunAsUser == "" || u < opts.RunAsUser {
				opts.RunAsUser = u
			}
		}
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 2 * time.Hour
	}
	if opts.DailyLimit <= 0 {
		opts.DailyLimit = 100000
	}
	if opts.AppName == "" {
		opts.AppName = "ehrbridge"
	}
	if opts.QueryPageSize <= 0 {
		opts.QueryPageSize = 2000
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 200 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TenantID == "" {
		opts.TenantID = "sandbox-tenant"
	}
	if opts.DataverseClientID == "" {
		opts.DataverseClientID = "sandbox-client"
	}
	if opts.DataverseSecret == "" {
		opts.DataverseSecret = "sandbox-secret"
	}
	if opts.DataverseRequestLimit <= 0 {
		opts.DataverseRequestLimit = 6000
	}
	if opts.DataverseWindow <= 0 {
		opts.DataverseWindow = 5 * time.Minute
	}
	if opts.DataverseConcurrency <= 0 {
		opts.DataverseConcurrency = 52
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	seed := opts.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	s := &Server{
		opts: opts, st: newStore(opts.Now), sessions: map[string]session{}, cursors: map[string]*cursor{},
		dvTokens: map[string]dvToken{}, dvUsage: map[string]*dvUsage{},
		rng: rand.New(rand.NewPCG(seed, seed^0x5a5a)), byEndpoint: map[string]int64{},
		stopFlush: make(chan struct{}), flushed: make(chan struct{}),
	}
	if !opts.NoSchema {
		schema, err := loadSchema(opts.Schemas)
		if err != nil {
			return nil, err
		}
		s.st.schema = schema
	}
	dv, err := loadDVSchema(opts.Schemas)
	if err != nil {
		return nil, err
	}
	s.st.dvSchema = dv
	if opts.DataFile != "" {
		if err := s.st.load(opts.DataFile); err != nil {
			return nil, err
		}
	}
	go s.flushLoop()
	return s, nil
}

// flushLoop saves the records within FlushInterval of a change.
func (s *Server) flushLoop() {
	defer close(s.flushed)
	if s.opts.DataFile == "" {
		<-s.stopFlush
		return
	}
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopFlush:
			s.flush()
			return
		case <-t.C:
			s.flush()
		}
	}
}

func (s *Server) flush() {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	if !s.st.dirty {
		return
	}
	if err := s.st.save(s.opts.DataFile); err != nil {
		s.opts.Logger.Error("sandbox: saving records failed; will retry", "err", err)
	}
}

// Listen binds addr (host:port; port 0 picks a free one) and serves in
// the background. It returns the bound address.
func (s *Server) Listen(addr string) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen on %s: %w", addr, err)
	}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: logging.NewHTTPErrorLog(s.opts.Logger, nil)}
	go func() {
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("sandbox: serving stopped", "err", err)
		}
	}()
	return l.Addr(), nil
}

// Close stops serving (if Listen was called) and saves the records.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		tlsSrv := s.tlsSrv
		s.mu.Unlock()
		for _, srv := range []*http.Server{s.srv, tlsSrv} {
			if srv == nil {
				continue
			}
			// Requests under way get a moment to finish. Shutdown also
			// waits up to 5 s for connections a client opened but never
			// used (HTTP/1.1 clients dial ahead under concurrency): a test
			// double need not wait for them.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if e := srv.Shutdown(ctx); errors.Is(e, context.DeadlineExceeded) {
				_ = srv.Close()
			} else if e != nil && err == nil {
				err = e
			}
			cancel()
		}
		close(s.stopFlush)
		<-s.flushed
	})
	return err
}

// Handler returns the sandbox's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /services/oauth2/token", s.counted("token", s.token))
	mux.HandleFunc("GET /services/data", s.versions)
	mux.HandleFunc("GET /services/data/{$}", s.versions)
	mux.Handle("/services/data/", s.api(http.HandlerFunc(s.route)))
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", s.openIDConfig)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", s.counted("dv_token", s.dvTokenGrant))
	mux.Handle("/api/data/", s.dvAPI(http.HandlerFunc(s.dvRoute)))
	mux.HandleFunc("GET /sandbox/v1/objects/{object}", s.dumpObject)
	mux.HandleFunc("POST /sandbox/v1/objects/{object}", s.userCreate)
	mux.HandleFunc("PATCH /sandbox/v1/objects/{object}/{id}", s.userUpdate)
	mux.HandleFunc("GET /sandbox/v1/stats", s.stats)
	mux.HandleFunc("POST /sandbox/v1/faults", s.addFault)
	mux.HandleFunc("DELETE /sandbox/v1/faults", s.clearFaults)
	mux.HandleFunc("DELETE /sandbox/v1/faults/validation_rule", s.clearRules)
	mux.HandleFunc("POST /sandbox/v1/journal", s.journalOn)
	mux.HandleFunc("GET /sandbox/v1/journal", s.journalGet)
	mux.HandleFunc("POST /sandbox/v1/expire-sessions", func(w http.ResponseWriter, r *http.Request) {
		s.ExpireTokens()
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// counted wraps a handler that counts as a CRM API request.
func (s *Server) counted(endpoint string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.count(endpoint)
		h(w, r)
	}
}

func (s *Server) count(endpoint string) {
	if endpoint == "token" || endpoint == "dv_token" {
		s.requests.Add(1)
	}
	s.statsMu.Lock()
	s.byEndpoint[endpoint]++
	s.statsMu.Unlock()
}

// writeRecordError answers a single-record call refused with apiErr: 404
// for NOT_FOUND (an unknown sObject or record), else 400, as the REST API
// does.
func writeRecordError(w http.ResponseWriter, apiErr *apiError) {
	status := http.StatusBadRequest
	if apiErr.Code == "NOT_FOUND" {
		status = http.StatusNotFound
	}
	writeErrors(w, status, apiErr)
}

// writeErrors writes a REST error body: a JSON array of errors.
func writeErrors(w http.ResponseWriter, status int, errs ...*apiError) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errs)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// api wraps the data API: faults, latency, the daily limit and its
// header, and the session check.
func (s *Server) api(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.apiRequests.Add(1)
		used := n + int64(s.opts.UsedAtStart)
		s.requests.Add(1)
		// The documented form: parts separated by ";", the per-app part
		// with the app's name, and only when the app has a quota: "If
		// there is no limit quota information, this field isn't returned"
		// (https://developer.salesforce.com/docs/atlas.en-us.200.0.api_rest.meta/api_rest/headers_api_usage.htm;
		// today's page shows api-usage alone). The sandbox has one
		// connected app, so every request is the app's.
		limitInfo := fmt.Sprintf("api-usage=%d/%d", used, s.opts.DailyLimit)
		if s.opts.AppLimit > 0 {
			limitInfo += fmt.Sprintf("; per-app-api-usage=%d/%d(appName=%s)", n+int64(s.opts.AppUsedAtStart), s.opts.AppLimit, s.opts.AppName)
		}
		w.Header().Set("Sforce-Limit-Info", limitInfo)
		if !s.waitLatency(r) {
			return
		}
		if f := s.takeFault(); f != nil {
			s.count("fault")
			if f.limit {
				// Salesforce sends no Retry-After; the sandbox tells how long its
				// injected window lasts, so that tests need not wait a full pause.
				if left := f.until.Sub(s.opts.Now()); left > 0 {
					w.Header().Set("Retry-After", strconv.Itoa(int(left/time.Second)+1))
				}
				writeErrors(w, http.StatusForbidden, errf("REQUEST_LIMIT_EXCEEDED", nil, "TotalRequests Limit exceeded."))
				return
			}
			writeErrors(w, f.status, errf("SERVER_UNAVAILABLE", nil, "Service temporarily unavailable (injected fault)"))
			return
		}
		if int(used) > s.opts.DailyLimit || s.opts.AppLimit > 0 && int(n)+s.opts.AppUsedAtStart > s.opts.AppLimit {
			writeErrors(w, http.StatusForbidden, errf("REQUEST_LIMIT_EXCEEDED", nil, "TotalRequests Limit exceeded."))
			return
		}
		if !s.authorized(r) {
			writeErrors(w, http.StatusUnauthorized, errf("INVALID_SESSION_ID", nil, "Session expired or invalid"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) currentLatency() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latency
}

// waitLatency holds a request for the injected latency; false when the
// client went away meanwhile.
func (s *Server) waitLatency(r *http.Request) bool {
	d := s.currentLatency()
	if d <= 0 {
		return true
	}
	select {
	case <-time.After(d):
		return true
	case <-r.Context().Done():
		return false
	}
}

// takeFault returns the fault that answers this request, if any, using up
// one of a counted fault.
func (s *Server) takeFault() *fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	kept := s.faults[:0]
	var hit *fault
	for _, f := range s.faults {
		switch {
		case f.timeBound && !now.Before(f.until):
			continue // expired
		case hit == nil && f.timeBound:
			hit = f
		case hit == nil && f.count > 0:
			hit = f
			f.count--
			if f.count == 0 {
				continue
			}
		}
		kept = append(kept, f)
	}
	s.faults = kept
	return hit
}

// dropAfterCommit reports whether this write's answer is to be dropped.
func (s *Server) dropAfterCommit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropP > 0 && s.rng.Float64() < s.dropP
}

// drop cuts the connection without an answer (the write is applied).
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			_ = c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func (s *Server) versions(w http.ResponseWriter, r *http.Request) {
	var out []map[string]string
	for _, v := range []string{"58.0", "59.0", "60.0", "61.0", "62.0"} {
		out = append(out, map[string]string{"label": "Sandbox", "url": "/services/data/v" + v, "version": v})
	}
	writeJSON(w, http.StatusOK, out)
}

// route dispatches /services/data/vNN.N/... after the API checks.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	segs, err := pathSegments(r.URL.EscapedPath())
	if err != nil || len(segs) < 3 || !validVersion(segs[2]) {
		writeErrors(w, http.StatusNotFound, errf("NOT_FOUND", nil, "The requested resource does not exist"))
		return
	}
	version, rest := segs[2], segs[3:]
	switch {
	case len(rest) == 1 && rest[0] == "limits" && r.Method == http.MethodGet:
		s.count("limits")
		s.limits(w)
	case len(rest) >= 1 && rest[0] == "query" && r.Method == http.MethodGet:
		s.count("query")
		s.query(w, r, version, rest[1:])
	case len(rest) >= 1 && rest[0] == "sobjects":
		s.sobjects(w, r, version, rest[1:])
	case len(rest) == 1 && rest[0] == "composite" && r.Method == http.MethodPost:
		s.count("composite")
		s.composite(w, r, version)
	case len(rest) >= 2 && rest[0] == "composite" && rest[1] == "sobjects":
		s.collections(w, r, version, rest[2:])
	default:
		writeErrors(w, http.StatusNotFound, errf("NOT_FOUND", nil, "The requested resource does not exist"))
	}
}

// pathSegments splits an escaped path and unescapes each segment, so
// that an external id with an escaped "/" stays one segment.
func pathSegments(escaped string) ([]string, error) {
	parts := strings.Split(strings.Trim(escaped, "/"), "/")
	for i, p := range parts {
		u, err := unescapePath(p)
		if err != nil {
			return nil, err
		}
		parts[i] = u
	}
	return parts, nil
}

func validVersion(v string) bool {
	num, ok := strings.CutPrefix(v, "v")
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(num, 64)
	return err == nil && f >= 20 && f < 100
}

// limits serves GET /services/data/vXX.X/limits/, "Lists information
// about limits in your org" (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_limits.htm).
// Of the limits that resource returns, the sandbox serves only
// DailyApiRequests (its Max and Remaining), the one the bridge reads.
func (s *Server) limits(w http.ResponseWriter) {
	used := int(s.apiRequests.Load()) + s.opts.UsedAtStart
	writeJSON(w, http.StatusOK, map[string]any{
		"DailyApiRequests": map[string]int{"Max": s.opts.DailyLimit, "Remaining": max(0, s.opts.DailyLimit-used)},
	})
}

// faultRequest is the body of POST /sandbox/v1/faults.
type faultRequest struct {
	Status               int      `json:"status"`
	Count                int      `json:"count"`
	Seconds              float64  `json:"seconds"`
	RequestLimitExceeded bool     `json:"request_limit_exceeded"`
	LatencyMS            *int     `json:"latency_ms"`
	DropAfterCommitRatio *float64 `json:"drop_after_commit_ratio"`
	// Seed, with drop_after_commit_ratio, reseeds the choice of the
	// writes whose answers are dropped, so that a test run can be
	// replayed.
	Seed uint64 `json:"seed"`
	// ValidationRule refuses every write of one object (rulefault.go).
	ValidationRule *ruleRequest `json:"validation_rule"`
}

func (s *Server) addFault(w http.ResponseWriter, r *http.Request) {
	var req faultRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, faultUsage, http.StatusBadRequest)
		return
	}
	if req.ValidationRule != nil {
		s.addRule(w, req.ValidationRule)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case req.LatencyMS != nil:
		s.latency += time.Duration(*req.LatencyMS) * time.Millisecond
	case req.DropAfterCommitRatio != nil:
		if *req.DropAfterCommitRatio < 0 || *req.DropAfterCommitRatio > 1 {
			http.Error(w, "drop_after_commit_ratio must be between 0 and 1", http.StatusBadRequest)
			return
		}
		s.dropP = min(1, s.dropP+*req.DropAfterCommitRatio)
		if req.Seed != 0 {
			s.rng = rand.New(rand.NewPCG(req.Seed, req.Seed^0x5a5a))
		}
	case req.RequestLimitExceeded && req.Seconds > 0:
		s.faults = append(s.faults, &fault{limit: true, timeBound: true, until: s.opts.Now().Add(seconds(req.Seconds))})
	case req.Status >= 400 && req.Status < 600 && req.Count > 0:
		s.faults = append(s.faults, &fault{status: req.Status, count: req.Count})
	case req.Status >= 400 && req.Status < 600 && req.Seconds > 0:
		s.faults = append(s.faults, &fault{status: req.Status, timeBound: true, until: s.opts.Now().Add(seconds(req.Seconds))})
	default:
		http.Error(w, "unsupported fault", http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func (s *Server) clearFaults(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.faults, s.latency, s.dropP = nil, 0, 0
	s.mu.Unlock()
	s.clearRules(w, r)
}

// Stats is what GET /sandbox/v1/stats returns.
type Stats struct {
	// RequestsTotal counts CRM API requests (token and data API), not the
	// /sandbox/v1 endpoints.
	RequestsTotal int64            `json:"requests_total"`
	ByEndpoint    map[string]int64 `json:"by_endpoint"`
	Records       map[string]int   `json:"records"`
}

// Stats returns the request counts and record counts.
func (s *Server) Stats() Stats {
	s.statsMu.Lock()
	by := make(map[string]int64, len(s.byEndpoint))
	for k, v := range s.byEndpoint {
		by[k] = v
	}
	s.statsMu.Unlock()
	total := s.requests.Load()
	s.st.mu.Lock()
	counts := s.st.counts()
	s.st.mu.Unlock()
	return Stats{RequestsTotal: total, ByEndpoint: by, Records: counts}
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

// TenantID is the Dataverse side's tenant.
func (s *Server) TenantID() string { return s.opts.TenantID }

// Records returns all records of an object, in creation order.
func (s *Server) Records(object string) []Record {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return s.st.records(object)
}

// dataverseName reports whether a /sandbox/v1/objects name means a
// Dataverse table (by logical or entity set name) rather than a
// Salesforce object, and returns the table. Salesforce names are written
// with capitals (Account, Task); an all-lower-case name is a Dataverse
// table if one exists by that name, else a Salesforce object if one
// exists, else a new Dataverse table. ?crm=salesforce|dataverse decides.
// The caller holds the store lock.
func (s *Server) dataverseName(r *http.Request, name string, create bool) (*objectStore, bool) {
	return s.dataverseSide(r.URL.Query().Get("crm"), name, create)
}

// dataverseSide is dataverseName with ?crm= given as crm.
func (s *Server) dataverseSide(crm, name string, create bool) (*objectStore, bool) {
	switch crm {
	case "salesforce":
		return nil, false
	case "dataverse":
	default:
		if strings.ToLower(name) != name {
			return nil, false
		}
		if t := s.st.dvLookup(name); t != nil {
			return t, true
		}
		if s.st.object(name, false) != nil {
			return nil, false
		}
	}
	if t := s.st.dvLookup(name); t != nil {
		return t, true
	}
	if !create {
		return nil, true
	}
	if logical := logicalOfSet(name); logical != "" && strings.HasSuffix(name, "s") {
		return s.st.dvTable(logical, true), true
	}
	return s.st.dvTable(strings.ToLower(name), true), true
}

// DataverseRecords returns all rows of a Dataverse table (logical or
// entity set name), in creation order.
func (s *Server) DataverseRecords(table string) []Record {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	t := s.st.dvLookup(table)
	if t == nil {
		return []Record{}
	}
	out := make([]Record, 0, len(t.Order))
	for _, id := range t.Order {
		out = append(out, copyRecord(t.Records[id]))
	}
	return out
}

func (s *Server) dumpObject(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("object")
	s.st.mu.Lock()
	_, dv := s.dataverseName(r, name, false)
	s.st.mu.Unlock()
	if dv {
		writeJSON(w, http.StatusOK, s.DataverseRecords(name))
		return
	}
	writeJSON(w, http.StatusOK, s.Records(name))
}

// userCreate creates a record as a CRM user would, in the UI: no token,
// not counted as an API request. Relationships may be given by external
// id as in the API. It answers {"id": ...}.
func (s *Server) userCreate(w http.ResponseWriter, r *http.Request) {
	rec, apiErr := readRecord(w, r)
	if apiErr != nil {
		writeErrors(w, http.StatusBadRequest, apiErr)
		return
	}
	s.st.mu.Lock()
	if t, dv := s.dataverseName(r, r.PathValue("object"), true); dv {
		id, derr := s.st.dvCreate(t, rec)
		s.st.mu.Unlock()
		if derr != nil {
			writeDVError(w, derr)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]string{"id": id})
		return
	}
	id, apiErr := s.st.create(r.PathValue("object"), rec)
	s.st.mu.Unlock()
	if apiErr != nil {
		writeErrors(w, http.StatusBadRequest, apiErr)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"id": id})
}

// userUpdate edits a record as a CRM user would.
func (s *Server) userUpdate(w http.ResponseWriter, r *http.Request) {
	rec, apiErr := readRecord(w, r)
	if apiErr != nil {
		writeErrors(w, http.StatusBadRequest, apiErr)
		return
	}
	s.st.mu.Lock()
	if t, dv := s.dataverseName(r, r.PathValue("object"), false); dv {
		derr := dverr(http.StatusNotFound, dvNotFound, "no such table")
		if t != nil {
			derr = s.st.dvUpdate(t, strings.ToLower(r.PathValue("id")), rec)
		}
		s.st.mu.Unlock()
		if derr != nil {
			writeDVError(w, derr)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	apiErr = s.st.update(r.PathValue("object"), r.PathValue("id"), rec)
	s.st.mu.Unlock()
	if apiErr != nil {
		writeRecordError(w, apiErr)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Package salesforce is ehrbridge's Salesforce REST client: OAuth (JWT
// bearer, client credentials, refresh token), sObject Collections upserts
// in batches of up to 200, SOQL with paging, error classification, a
// budget governor on the org's daily API allocation, and a cap on
// concurrent requests. It never logs URLs or bodies: both carry patient
// data (external ids are MRNs).
package salesforce

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	retryablehttp "github.com/hashicorp/go-retryablehttp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/jwt"

	"github.com/ehrbridge/ehrbridge/connectors"
)

// Auth selects the OAuth flow. Exactly one of its fields is set.
type Auth struct {
	// JWT bearer: the connected app's certificate key signs an assertion
	// for Username. The recommended flow for a server integration.
	JWTUsername   string
	JWTPrivateKey []byte // PEM, unencrypted
	// ClientCredentials uses the client id and secret (the connected app
	// names its run-as user).
	ClientCredentials bool
	// RefreshToken from an earlier web-server authorization.
	RefreshToken string
}

// Config configures a Client.
type Config struct {
	// LoginURL is where tokens come from: https://login.salesforce.com,
	// https://test.salesforce.com, a My Domain URL, or the sandbox's.
	LoginURL string
	// Audience is the JWT bearer assertion's aud claim. Salesforce accepts
	// only https://login.salesforce.com, https://test.salesforce.com (a
	// sandbox org) or an Experience Cloud site URL, never the My Domain
	// URL that may serve the token endpoint; any other answers invalid_grant
	// "audience is invalid" (https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_jwt_flow.htm).
	// Default: DefaultAudience(LoginURL).
	Audience string
	// APIVersion, default "62.0".
	APIVersion             string
	ClientID, ClientSecret string
	Auth                   Auth
	// MaxConcurrent caps requests in flight; default 4.
	MaxConcurrent int
	// BudgetReserve is the share of the daily API allocation kept free:
	// when used reaches (1 - BudgetReserve) × max, org-wide or for this
	// connected app (Sforce-Limit-Info's per-app-api-usage, whichever is
	// tighter), requests fail with a Throttled error until the usage
	// falls; default 0.1.
	BudgetReserve float64
	// RetryMax is how often one request is retried on a transient failure
	// (network error, 5xx, 429); default 4.
	RetryMax int
	// RetryWaitMin and RetryWaitMax bound the backoff; default 200ms, 10s.
	RetryWaitMin, RetryWaitMax time.Duration
	// ThrottlePause is how long to pause after REQUEST_LIMIT_EXCEEDED when
	// Salesforce gives no Retry-After; default 1m.
	ThrottlePause time.Duration
	// HTTPClient, default a pooled client with a 60s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Error, Kind and KindOf are the connectors package's: every CRM
// connector classifies failures the same way.
type (
	Error = connectors.Error
	Kind  = connectors.Kind
)

// Failure kinds.
const (
	Transient = connectors.Transient
	Permanent = connectors.Permanent
	Throttled = connectors.Throttled
)

// KindOf classifies err (see connectors.KindOf).
func KindOf(err error) Kind { return connectors.KindOf(err) }

// transientCodes are Salesforce errorCodes worth retrying.
var transientCodes = map[string]bool{
	"UNABLE_TO_LOCK_ROW": true, "SERVER_UNAVAILABLE": true, "QUERY_TIMEOUT": true, "REQUEST_RUNNING_TOO_LONG": true,
	"ALL_OR_NONE_OPERATION_ROLLED_BACK": true, "TXN_SECURITY_METERING_ERROR": true,
}

// classify turns an error code into a kind.
func classify(code string, status int) Kind {
	switch {
	case code == "REQUEST_LIMIT_EXCEEDED":
		return Throttled
	case transientCodes[code], status == http.StatusTooManyRequests, status >= 500:
		return Transient
	}
	return Permanent
}

// Client talks to one org. It is safe for concurrent use.
type Client struct {
	cfg  Config
	http *retryablehttp.Client
	log  *slog.Logger
	sem  chan struct{}

	tokMu    sync.Mutex
	base     oauth2.TokenSource
	token    *oauth2.Token
	instance string

	budgetMu sync.Mutex
	limits   LimitInfo // the last Sforce-Limit-Info (or /limits)

	// Requests counts API requests sent (token requests and retries
	// included), for /metrics.
	Requests atomic.Int64
}

// New validates cfg and builds a client; it does not connect yet.
func New(cfg Config) (*Client, error) {
	if cfg.LoginURL == "" || cfg.ClientID == "" {
		return nil, errors.New("salesforce: login URL and client id are required")
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = "62.0"
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 4
	}
	if cfg.BudgetReserve <= 0 {
		cfg.BudgetReserve = 0.1
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 4
	}
	if cfg.RetryWaitMin <= 0 {
		cfg.RetryWaitMin = 200 * time.Millisecond
	}
	if cfg.RetryWaitMax <= 0 {
		cfg.RetryWaitMax = 10 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.ThrottlePause <= 0 {
		cfg.ThrottlePause = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultAudience(cfg.LoginURL)
	}
	if problem := AudienceProblem(cfg.Audience); problem != "" && cfg.Auth.JWTUsername != "" {
		return nil, errors.New("salesforce: " + problem)
	}
	c := &Client{cfg: cfg, log: cfg.Logger.With("crm", "salesforce"), sem: make(chan struct{}, cfg.MaxConcurrent)}
	tokenURL := strings.TrimSuffix(cfg.LoginURL, "/") + "/services/oauth2/token"
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, cfg.HTTPClient)
	a := cfg.Auth
	switch {
	case a.JWTUsername != "":
		if len(a.JWTPrivateKey) == 0 {
			return nil, errors.New("salesforce: the JWT flow needs the connected app's private key")
		}
		j := &jwt.Config{Email: cfg.ClientID, Subject: a.JWTUsername, PrivateKey: a.JWTPrivateKey, TokenURL: tokenURL,
			Audience: strings.TrimSuffix(cfg.Audience, "/"), Expires: 3 * time.Minute}
		c.base = fetcher(func() (*oauth2.Token, error) { return j.TokenSource(ctx).Token() })
	case a.ClientCredentials:
		cc := &clientcredentials.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams}
		c.base = fetcher(func() (*oauth2.Token, error) { return cc.Token(ctx) })
	case a.RefreshToken != "":
		oc := &oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams}}
		c.base = &refresher{cfg: oc, ctx: ctx, refresh: a.RefreshToken}
	default:
		return nil, errors.New("salesforce: choose an OAuth flow: JWT bearer, client credentials or refresh token")
	}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = cfg.HTTPClient
	rc.Logger = nil // its messages carry URLs; ours do not
	rc.RetryMax = cfg.RetryMax
	rc.RetryWaitMin, rc.RetryWaitMax = cfg.RetryWaitMin, cfg.RetryWaitMax
	rc.CheckRetry = c.checkRetry
	rc.Backoff = backoff
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.RequestLogHook = func(_ retryablehttp.Logger, req *http.Request, attempt int) {
		c.Requests.Add(1)
		if attempt > 0 {
			c.log.Warn("salesforce request retried", "method", req.Method, "attempt", attempt)
		}
	}
	c.http = rc
	return c, nil
}

// fetcher gets a new token on every call. The oauth2 package's sources
// cache a token until it expires, and Salesforce's have no expiry: the
// client caches itself and fetches anew after INVALID_SESSION_ID.
type fetcher func() (*oauth2.Token, error)

func (f fetcher) Token() (*oauth2.Token, error) { return f() }

// refresher gets a new access token from the refresh token on every call
// (the caller caches); oauth2's own source would keep an access token
// without expiry forever, as Salesforce sends none.
type refresher struct {
	cfg     *oauth2.Config
	ctx     context.Context
	refresh string
}

func (r *refresher) Token() (*oauth2.Token, error) {
	return r.cfg.TokenSource(r.ctx, &oauth2.Token{RefreshToken: r.refresh, Expiry: time.Unix(1, 0)}).Token()
}

// checkRetry retries network errors, 5xx and 429, not REQUEST_LIMIT_EXCEEDED
// (a pause for the pipeline) nor anything the context ended.
func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if ctx.Value(noRetry{}) != nil {
		return false, nil
	}
	if err != nil {
		return true, nil
	}
	return resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500, nil
}

// backoff is exponential with full jitter, honouring Retry-After.
func backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil {
		if s := resp.Header.Get("Retry-After"); s != "" {
			if secs, err := strconv.Atoi(s); err == nil && secs >= 0 {
				return min(time.Duration(secs)*time.Second, maxWait)
			}
		}
	}
	d := float64(minWait) * math.Pow(2, float64(attempt))
	d = min(d, float64(maxWait))
	return time.Duration(rand.Float64()*d/2 + d/2)
}

// accessToken returns the cached token, fetching one when there is none.
func (c *Client) accessToken(ctx context.Context) (*oauth2.Token, string, error) {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	if c.token != nil {
		return c.token, c.instance, nil
	}
	tok, err := c.base.Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			kind := Permanent
			if re.Response != nil && re.Response.StatusCode >= 500 {
				kind = Transient
			}
			code, desc := re.ErrorCode, re.ErrorDescription
			if code == "" {
				// The jwt package leaves the OAuth error in the body.
				var body struct {
					Error       string `json:"error"`
					Description string `json:"error_description"`
				}
				if json.Unmarshal(re.Body, &body) == nil {
					code, desc = body.Error, body.Description
				}
			}
			return nil, "", &Error{Kind: kind, Code: "AUTH_" + strings.ToUpper(cmp.Or(code, "failed")), Status: statusOf(re.Response),
				Message: c.explainAuth(desc)}
		}
		return nil, "", &Error{Kind: Transient, Code: "AUTH_UNREACHABLE"}
	}
	inst, _ := tok.Extra("instance_url").(string)
	if inst == "" {
		inst = strings.TrimSuffix(c.cfg.LoginURL, "/")
	} else if problem := InstanceURLProblem(inst, c.cfg.LoginURL); problem != "" {
		// The token is not kept: it goes to no such place.
		return nil, "", &Error{Kind: Permanent, Code: "AUTH_BAD_INSTANCE_URL", Message: problem}
	}
	c.token, c.instance = tok, strings.TrimSuffix(inst, "/")
	return c.token, c.instance, nil
}

// InstanceURLProblem says why a token response's instance_url must not be
// sent the token, "" when it may: it must be an https URL of a Salesforce
// domain, or have the login URL's own origin (the sandbox, a test server,
// a Government Cloud My Domain used as login_url). Salesforce's domains are
// taken conservatively as *.salesforce.com: My Domain URLs use the
// my.salesforce.com suffix (sandboxes sandbox.my.salesforce.com) and the
// older instanced URLs look like https://eu55.salesforce.com (Salesforce
// Help, "My Domain", help.salesforce.com/s/articleView?id=xcloud.domain_name_overview.htm,
// and "Set the My Domain Login Policy", id=xcloud.domain_name_setting_login_policy.htm).
// The text names the URL's scheme and host only.
func InstanceURLProblem(instance, loginURL string) string {
	u, err := url.Parse(instance)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "the token response's instance_url is not an http(s) URL; the token was not used"
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return "the token response's instance_url is not a bare origin (it has credentials, a path or a query); the token was not used"
	}
	if l, err := url.Parse(loginURL); err == nil && sameOrigin(u, l) {
		return ""
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if u.Scheme != "https" {
		return "the token response's instance_url " + u.Scheme + "://" + host + " is not https; the token was not sent there"
	}
	if !strings.HasSuffix(host, ".salesforce.com") || (u.Port() != "" && u.Port() != "443") {
		return "the token response's instance_url https://" + u.Host + " is neither on a Salesforce domain (*.salesforce.com) nor login_url's origin; the token was not sent there"
	}
	return ""
}

// sameOrigin compares scheme, host and port (default ports made explicit).
func sameOrigin(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if strings.EqualFold(u.Scheme, "https") {
			return "443"
		}
		return "80"
	}
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(strings.TrimSuffix(a.Hostname(), "."), strings.TrimSuffix(b.Hostname(), ".")) &&
		port(a) == port(b)
}

// explainAuth puts a token endpoint's error description (Salesforce's
// texts carry no patient data) in the admin's terms where it is known.
func (c *Client) explainAuth(desc string) string {
	if len(desc) > 200 {
		desc = desc[:200]
	}
	if strings.Contains(strings.ToLower(desc), "audience is invalid") {
		want := SandboxAudience
		if c.cfg.Audience == SandboxAudience {
			want = ProductionAudience
		}
		return "audience is invalid: set crm.salesforce.audience to " + want + " (now " + c.cfg.Audience + "): " +
			ProductionAudience + " for production, " + SandboxAudience + " for a sandbox org, or the Experience Cloud site URL"
	}
	return desc
}

func statusOf(r *http.Response) int {
	if r == nil {
		return 0
	}
	return r.StatusCode
}

// invalidate drops tok, if it is still the cached one.
func (c *Client) invalidate(tok *oauth2.Token) {
	c.tokMu.Lock()
	if c.token == tok {
		c.token = nil
	}
	c.tokMu.Unlock()
}

// sfError is Salesforce's error body element.
type sfError struct {
	ErrorCode  string   `json:"errorCode"`
	StatusCode string   `json:"statusCode"`
	Message    string   `json:"message"`
	Fields     []string `json:"fields"`
}

// do sends one API request (path relative to /services/data/vXX.X, or
// absolute starting with /services/) with a JSON body, re-authenticating
// once on INVALID_SESSION_ID, and decodes a 2xx JSON answer into out.
func (c *Client) do(ctx context.Context, method, path string, body, out any) (int, error) {
	if err := c.checkBudget(); err != nil {
		return 0, err
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-c.sem }()
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return 0, &Error{Kind: Permanent, Code: "ENCODING", Message: err.Error()}
		}
	}
	for attempt := 0; ; attempt++ {
		tok, instance, err := c.accessToken(ctx)
		if err != nil {
			return 0, err
		}
		full := instance + path
		if !strings.HasPrefix(path, "/services/") {
			full = instance + "/services/data/v" + c.cfg.APIVersion + path
		}
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := retryablehttp.NewRequestWithContext(ctx, method, full, rd)
		if err != nil {
			return 0, &Error{Kind: Permanent, Code: "BAD_REQUEST"}
		}
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Accept", "application/json")
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			// The request may or may not have been applied: the caller's
			// writes are upserts by external key, safe to repeat.
			return 0, &Error{Kind: Transient, Code: "NETWORK"}
		}
		c.noteUsage(resp.Header.Get("Sforce-Limit-Info"))
		data, readErr := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if readErr != nil {
			return resp.StatusCode, &Error{Kind: Transient, Code: "NETWORK", Status: resp.StatusCode}
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			if out != nil && len(data) > 0 {
				if err := json.Unmarshal(data, out); err != nil {
					return resp.StatusCode, &Error{Kind: Transient, Code: "BAD_RESPONSE", Status: resp.StatusCode}
				}
			}
			return resp.StatusCode, nil
		}
		apiErr := parseError(resp, data, c.cfg.ThrottlePause)
		if apiErr.Code == "INVALID_SESSION_ID" && attempt == 0 {
			c.invalidate(tok)
			continue
		}
		return resp.StatusCode, apiErr
	}
}

// parseError reads a REST error body ([{"errorCode","message"}]).
func parseError(resp *http.Response, data []byte, throttlePause time.Duration) *Error {
	e := &Error{Status: resp.StatusCode, Code: "HTTP_" + strconv.Itoa(resp.StatusCode)}
	var errs []sfError
	if json.Unmarshal(data, &errs) == nil && len(errs) > 0 {
		e.Code, e.Message, e.Fields = cmp.Or(errs[0].ErrorCode, errs[0].StatusCode), errs[0].Message, errs[0].Fields
	}
	e.Kind = classify(e.Code, resp.StatusCode)
	if e.Code == "INVALID_SESSION_ID" {
		e.Kind = Transient
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if secs, err := strconv.Atoi(s); err == nil {
			e.RetryAfter = time.Duration(secs) * time.Second
		}
	}
	if e.Kind == Throttled && e.RetryAfter == 0 {
		e.RetryAfter = throttlePause
	}
	return e
}

// noteUsage reads Sforce-Limit-Info. Its documented form is parts
// separated by ";", each "name=used/max", the per-app part followed by
// the app's name: "api-usage=25/5000; per-app-api-usage=17/250(appName=sample-app)"
// or "api-usage=10018/100000; api-bursts=1/750"
// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_api_usage.htm).
// Unknown parts are ignored; a header without api-usage changes nothing.
func (c *Client) noteUsage(h string) {
	u, ok := ParseLimitInfo(h)
	if !ok {
		return
	}
	c.budgetMu.Lock()
	c.limits = u
	c.budgetMu.Unlock()
}

// LimitInfo is what a Sforce-Limit-Info header says: the org's daily API
// usage and, when the connected app has its own allocation, the app's.
type LimitInfo struct {
	Used, Max       int
	AppUsed, AppMax int // 0, 0 without a per-app-api-usage part
	AppName         string
}

// ParseLimitInfo parses a Sforce-Limit-Info header; ok is false when it
// has no usable api-usage part.
func ParseLimitInfo(h string) (info LimitInfo, ok bool) {
	for part := range strings.SplitSeq(h, ";") {
		name, val, found := strings.Cut(strings.TrimSpace(part), "=")
		if !found {
			continue
		}
		app := ""
		if i := strings.IndexByte(val, '('); i >= 0 {
			inner := strings.TrimSuffix(val[i+1:], ")")
			app, _ = strings.CutPrefix(inner, "appName=")
			val = val[:i]
		}
		u, m, found := strings.Cut(strings.TrimSpace(val), "/")
		if !found {
			continue
		}
		used, err1 := strconv.Atoi(strings.TrimSpace(u))
		maxN, err2 := strconv.Atoi(strings.TrimSpace(m))
		if err1 != nil || err2 != nil || used < 0 || maxN <= 0 {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "api-usage":
			info.Used, info.Max, ok = used, maxN, true
		case "per-app-api-usage":
			info.AppUsed, info.AppMax, info.AppName = used, maxN, app
		}
	}
	return info, ok
}

// Usage returns the last known API usage and allocation (0, 0 before the
// first answer).
func (c *Client) Usage() (used, max int) {
	c.budgetMu.Lock()
	defer c.budgetMu.Unlock()
	return c.limits.Used, c.limits.Max
}

// AppUsage returns the connected app's last known usage and allocation
// (per-app-api-usage; 0, 0 when Salesforce sends none).
func (c *Client) AppUsage() (used, max int) {
	c.budgetMu.Lock()
	defer c.budgetMu.Unlock()
	return c.limits.AppUsed, c.limits.AppMax
}

// checkBudget refuses a request once usage reaches the reserve, org-wide
// or for the connected app, whichever comes first, so that the org's
// other integrations and users keep their share and the app is not cut
// off by its own allocation.
func (c *Client) checkBudget() error {
	c.budgetMu.Lock()
	defer c.budgetMu.Unlock()
	l := c.limits
	for _, b := range []struct {
		used, max int
		whose     string
	}{{l.Used, l.Max, ""}, {l.AppUsed, l.AppMax, "the connected app's "}} {
		if b.max > 0 && float64(b.used) >= float64(b.max)*(1-c.cfg.BudgetReserve) {
			return &Error{Kind: Throttled, Code: "BUDGET_RESERVED", RetryAfter: 10 * time.Minute,
				Message: fmt.Sprintf("%d of %s%d daily API requests used; the last %.0f%% are kept in reserve", b.used, b.whose, b.max, c.cfg.BudgetReserve*100)}
		}
	}
	return nil
}

// Audiences Salesforce accepts in a JWT bearer assertion besides an
// Experience Cloud site URL.
const (
	ProductionAudience = "https://login.salesforce.com"
	SandboxAudience    = "https://test.salesforce.com"
)

// DefaultAudience is the JWT aud for a login URL: test.salesforce.com for
// a sandbox org (login URL https://test.salesforce.com or a sandbox My
// Domain, *.sandbox.my.salesforce.com), login.salesforce.com otherwise.
func DefaultAudience(loginURL string) string {
	u, err := url.Parse(loginURL)
	if err != nil {
		return ProductionAudience
	}
	h := strings.ToLower(u.Hostname())
	if h == "test.salesforce.com" || strings.HasSuffix(h, ".sandbox.my.salesforce.com") {
		return SandboxAudience
	}
	return ProductionAudience
}

// AudienceProblem says what is wrong with a JWT audience, "" when nothing
// obvious is. A site URL cannot be known in advance, so only what is
// certainly wrong is refused: not an https URL, a path or query, or a
// Salesforce host that is neither login nor test (a My Domain such as
// hospital.my.salesforce.com, a Lightning or Setup domain), which
// Salesforce answers with "audience is invalid".
func AudienceProblem(aud string) string {
	u, err := url.Parse(aud)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "the JWT audience must be https://login.salesforce.com, https://test.salesforce.com (a sandbox org) or an Experience Cloud site URL"
	}
	h := strings.ToLower(u.Hostname())
	if h == "login.salesforce.com" || h == "test.salesforce.com" {
		if strings.Trim(u.Path, "/") != "" {
			return "the JWT audience is the login server alone, without a path: https://" + h
		}
		return ""
	}
	for _, suffix := range []string{".salesforce.com", ".lightning.force.com", ".salesforce-setup.com"} {
		if strings.HasSuffix(h, suffix) {
			if strings.HasSuffix(h, ".sandbox.my.salesforce.com") {
				return "audience is invalid: the JWT audience is not the My Domain URL; for a sandbox org set audience to " + SandboxAudience
			}
			return "audience is invalid: the JWT audience is not the My Domain URL; set audience to " + ProductionAudience + " (" + SandboxAudience + " for a sandbox org) or an Experience Cloud site URL"
		}
	}
	return ""
}

// noRetry marks the context of a request not to be retried (a probe).
type noRetry struct{}

// Probe sends one GET /limits request, not retried: the pipeline's
// breaker asks with it whether Salesforce answers again after transient
// failures. It is the smallest read that needs no object permission, and
// like every REST request but the Versions resource it counts as one
// request against the org's daily allocation ("Limit Info Header", REST
// API Developer Guide: the Sforce-Limit-Info header is "returned in each
// request to REST API (except for calls to the Versions URI, /, which do
// not count towards your org's limit)"); its answer refreshes the usage
// the governor keeps. The Versions resource costs nothing but is served
// outside the data API, so it would say "up" while the data API fails.
func (c *Client) Probe(ctx context.Context) error {
	return c.RefreshUsage(context.WithValue(ctx, noRetry{}, true))
}

// RefreshUsage reads /limits, as after a restart before any request.
func (c *Client) RefreshUsage(ctx context.Context) error {
	var out map[string]struct {
		Max, Remaining int
	}
	if _, err := c.do(ctx, http.MethodGet, "/limits", nil, &out); err != nil {
		return err
	}
	if d, ok := out["DailyApiRequests"]; ok && d.Max > 0 {
		c.budgetMu.Lock()
		c.limits.Used, c.limits.Max = d.Max-d.Remaining, d.Max
		c.budgetMu.Unlock()
	}
	return nil
}

// pathValue escapes an external id value for a URL path: "/", "#", "?"
// and spaces included, which jsforce and others leave raw.
func pathValue(s string) string { return url.PathEscape(s) }

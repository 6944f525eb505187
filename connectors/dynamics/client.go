// Package dynamics is the Microsoft Dynamics 365 / Dataverse connector: a
// Web API client on plain net/http with tokens from azidentity (client
// secret, certificate, managed identity, workload identity), and a sink
// that applies mapped ops as upserts by alternate key, sent in $batch
// requests with Prefer: odata.continue-on-error so that one bad record
// fails alone.
//
// Its logs name statuses, counts and Dataverse error codes, never URLs
// (they hold key values: MRNs) or bodies.
package dynamics

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/ehrbridge/ehrbridge/connectors"
)

// Config configures a Client.
type Config struct {
	// URL is the environment's root, like https://org.crm.dynamics.com.
	// The token scope is URL + "/.default".
	URL string
	// APIVersion of the Web API; default 9.2.
	APIVersion string
	// Credential gets tokens (see NewCredential).
	Credential azcore.TokenCredential
	// HTTPClient sends the requests; default one with a 60 s timeout.
	HTTPClient *http.Client
	// BatchSize is how many ops go in one $batch request. Microsoft
	// advises batches of 100 or fewer, with more concurrency rather than
	// bigger batches; default 50, at most 1000.
	BatchSize int
	// MaxConcurrent bounds the requests in flight; default 4, at most 32
	// (Dataverse allows 52 per user).
	MaxConcurrent int
	// EntitySets names the entity set of tables whose set name is not
	// their logical name in the plural (logical name → set name).
	EntitySets map[string]string
	// RetryMax is how often a request that failed transiently (5xx, no
	// answer) is retried at once; default 2, negative for none. Throttling
	// is not retried here: the pipeline pauses.
	RetryMax int
	Logger   *slog.Logger
}

// Client talks to one Dataverse environment.
type Client struct {
	cfg    Config
	base   string // URL + /api/data/vX/
	sem    chan struct{}
	paused atomic.Int64 // unix nanos: no request before this (429 Retry-After)

	// Requests counts HTTP requests sent (for benchmarks and /metrics).
	Requests atomic.Int64
}

// New makes a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("dynamics: url must be https://<org>.crm.dynamics.com (or the sandbox's https address)")
	}
	if cfg.Credential == nil {
		return nil, errors.New("dynamics: no credential")
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = "9.2"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 50
	}
	cfg.BatchSize = min(cfg.BatchSize, 1000)
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 4
	}
	cfg.MaxConcurrent = min(cfg.MaxConcurrent, 32)
	switch {
	case cfg.RetryMax == 0:
		cfg.RetryMax = 2
	case cfg.RetryMax < 0:
		cfg.RetryMax = 0 // no retries
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	root := strings.TrimSuffix(cfg.URL, "/")
	return &Client{cfg: cfg, base: root + "/api/data/v" + cfg.APIVersion + "/", sem: make(chan struct{}, cfg.MaxConcurrent)}, nil
}

// EntitySet is a table's entity set name: configured, or the logical name
// in the plural as Dataverse makes it.
func (c *Client) EntitySet(logical string) string {
	if s, ok := c.cfg.EntitySets[logical]; ok {
		return s
	}
	return Plural(strings.ToLower(logical))
}

// Plural is Dataverse's default entity set name of a logical name.
func Plural(logical string) string {
	n := len(logical)
	switch {
	case n > 1 && logical[n-1] == 'y' && !strings.ContainsRune("aeiou", rune(logical[n-2])):
		return logical[:n-1] + "ies"
	case strings.HasSuffix(logical, "s"), strings.HasSuffix(logical, "x"), strings.HasSuffix(logical, "ch"), strings.HasSuffix(logical, "sh"):
		return logical + "es"
	}
	return logical + "s"
}

// KeyPredicate is the URL form of an alternate key: (col='value') with the
// quote doubled and the value percent-encoded, so that "/", "#", "?" or
// "%" in a key cannot change the URL.
func KeyPredicate(col, value string) string {
	return "(" + col + "='" + url.PathEscape(strings.ReplaceAll(value, "'", "''")) + "')"
}

// PausedUntil is when a 429's Retry-After ends (zero when not paused).
func (c *Client) PausedUntil() time.Time {
	n := c.paused.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// maxPauseWait is the longest Retry-After a request waits out itself;
// a longer pause is returned as a throttled error, for the pipeline to
// pause on.
const maxPauseWait = 2 * time.Second

// throttled waits out a short pause of the client, or returns the error
// for a request not sent during a long one.
func (c *Client) throttled(ctx context.Context) error {
	left := time.Until(c.PausedUntil())
	if left <= 0 {
		return nil
	}
	if left > maxPauseWait {
		return &connectors.Error{Kind: connectors.Throttled, Code: "429", Status: http.StatusTooManyRequests, RetryAfter: left}
	}
	select {
	case <-time.After(left):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pause records a Retry-After for every worker.
func (c *Client) pause(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		cur := c.paused.Load()
		if cur >= until || c.paused.CompareAndSwap(cur, until) {
			return
		}
	}
}

// token gets a bearer token for the environment.
func (c *Client) token(ctx context.Context) (string, error) {
	tok, err := c.cfg.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{strings.TrimSuffix(c.cfg.URL, "/") + "/.default"}})
	if err != nil {
		// azidentity's error text holds the identity platform's answer,
		// no patient data: keep its AADSTS code and description, short.
		e := &connectors.Error{Kind: connectors.Transient, Code: "TOKEN", Message: firstLine(err.Error())}
		if m := aadstsRe.FindString(err.Error()); m != "" {
			// The AADSTS code names the problem (7000215: wrong secret) in
			// logs and reasons; it carries no patient data.
			e.Code, e.Message, _ = strings.Cut(m, ":")
			e.Message = firstLine(strings.TrimSpace(e.Message))
		}
		return "", e
	}
	return tok.Token, nil
}

var aadstsRe = regexp.MustCompile(`AADSTS\d+:?[^\n"]*`)

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

// response is an answered request.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request (path below the API root) and returns its answer.
// Transient failures are retried RetryMax times; a 429 pauses the client.
func (c *Client) do(ctx context.Context, method, path string, header http.Header, body []byte) (*response, error) {
	return c.doRetrying(ctx, method, path, header, body, c.cfg.RetryMax)
}

// doRetrying is do with retryMax retries.
func (c *Client) doRetrying(ctx context.Context, method, path string, header http.Header, body []byte, retryMax int) (*response, error) {
	if err := c.throttled(ctx); err != nil {
		return nil, err
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sem }()
	var lastErr error
	for attempt := 0; attempt <= retryMax; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt*attempt) * 200 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if err := c.throttled(ctx); err != nil {
			return nil, err
		}
		resp, err := c.send(ctx, method, path, header, body)
		if err != nil {
			lastErr = err
			if connectors.KindOf(err) == connectors.Transient && ctx.Err() == nil {
				continue
			}
			return nil, err
		}
		if resp.status == http.StatusTooManyRequests {
			d := retryAfter(resp.header)
			c.pause(d)
			c.cfg.Logger.Warn("Dataverse service protection limit reached; pausing", "retry_after", d.String(), "code", dvCode(resp.body))
			return nil, &connectors.Error{Kind: connectors.Throttled, Code: cmp.Or(dvCode(resp.body), "429"), Status: 429, RetryAfter: d}
		}
		if resp.status >= 500 {
			lastErr = &connectors.Error{Kind: connectors.Transient, Code: cmp.Or(dvCode(resp.body), strconv.Itoa(resp.status)), Status: resp.status, Message: dvMessage(resp.body)}
			continue
		}
		return resp, nil
	}
	return nil, lastErr
}

func (c *Client) send(ctx context.Context, method, path string, header http.Header, body []byte) (*response, error) {
	tok, err := c.token(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, &connectors.Error{Kind: connectors.Permanent, Code: "BAD_REQUEST_URL"}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-MaxVersion", "4.0")
	req.Header.Set("OData-Version", "4.0")
	if len(body) > 0 && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	c.Requests.Add(1)
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		// The error text of net/http quotes the URL: keep it out.
		return nil, &connectors.Error{Kind: connectors.Transient, Code: "NO_ANSWER"}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, &connectors.Error{Kind: connectors.Transient, Code: "NO_ANSWER"}
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, &connectors.Error{Kind: connectors.Transient, Code: cmp.Or(dvCode(data), "401"), Status: 401, Message: dvMessage(data)}
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// retryAfter reads Retry-After (seconds); default 5 s.
func retryAfter(h http.Header) time.Duration {
	if n, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After"))); err == nil && n >= 0 {
		return max(time.Duration(n)*time.Second, 100*time.Millisecond)
	}
	return 5 * time.Second
}

// dvError is Dataverse's error body.
type dvError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func dvCode(body []byte) string {
	var e dvError
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

func dvMessage(body []byte) string {
	var e dvError
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Error.Message
}

// classify turns a non-2xx answer to one write into an error.
func classify(status int, body []byte) error {
	e := &connectors.Error{Kind: connectors.Permanent, Code: cmp.Or(dvCode(body), strconv.Itoa(status)), Status: status, Message: dvMessage(body)}
	switch {
	case status == http.StatusTooManyRequests:
		e.Kind = connectors.Throttled
	case status >= 500, status == http.StatusRequestTimeout, status == http.StatusUnauthorized:
		e.Kind = connectors.Transient
	}
	return e
}

// entityID reads the GUID from an OData-EntityId URL.
func entityID(u string) string {
	i := strings.LastIndexByte(u, '(')
	if i < 0 || !strings.HasSuffix(u, ")") {
		return ""
	}
	return u[i+1 : len(u)-1]
}

// WhoAmI checks the connection and the credential.
func (c *Client) WhoAmI(ctx context.Context) (string, error) {
	resp, err := c.do(ctx, http.MethodGet, "WhoAmI", nil, nil)
	if err != nil {
		return "", err
	}
	if resp.status != http.StatusOK {
		return "", classify(resp.status, resp.body)
	}
	var out struct {
		UserID string `json:"UserId"`
	}
	_ = json.Unmarshal(resp.body, &out)
	return out.UserID, nil
}

// Probe sends one WhoAmI request, not retried: the pipeline's breaker
// asks with it whether Dataverse answers again after transient failures.
// WhoAmI is the Web API's smallest read (a function of no table, no
// data); like every external request it counts against the service
// protection limits ("Service protection API limits", Microsoft Learn,
// power-apps/developer/data-platform/api-limits), one request a probe.
func (c *Client) Probe(ctx context.Context) error {
	resp, err := c.doRetrying(ctx, http.MethodGet, "WhoAmI", nil, nil, 0)
	if err != nil {
		return err
	}
	if resp.status != http.StatusOK {
		return classify(resp.status, resp.body)
	}
	return nil
}

// Query reads rows of a table (a GET of set?query), following
// @odata.nextLink, up to maxRows rows (0: all). A query for 1 to 5,000
// rows must carry $top=maxRows: it is answered in one page.
func (c *Client) Query(ctx context.Context, logical, query string, maxRows int) ([]map[string]any, error) {
	path := c.EntitySet(logical) + "?" + query
	var out []map[string]any
	// A query for at most 5,000 rows carries $top and gets them in one
	// answer; Dataverse ignores $top when odata.maxpagesize is asked for
	// (Page results using OData, learn.microsoft.com/power-apps/developer/
	// data-platform/webapi/query/page-results).
	hdr := http.Header{}
	if maxRows <= 0 || maxRows > 5000 {
		hdr.Set("Prefer", "odata.maxpagesize=500")
	}
	for path != "" {
		resp, err := c.do(ctx, http.MethodGet, path, hdr, nil)
		if err != nil {
			return nil, err
		}
		if resp.status != http.StatusOK {
			return nil, classify(resp.status, resp.body)
		}
		var page struct {
			Value    []map[string]any `json:"value"`
			NextLink string           `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(resp.body, &page); err != nil {
			return nil, &connectors.Error{Kind: connectors.Transient, Code: "BAD_ANSWER"}
		}
		out = append(out, page.Value...)
		if maxRows > 0 && len(out) >= maxRows {
			return out[:maxRows], nil
		}
		path = strings.TrimPrefix(page.NextLink, c.base)
		if page.NextLink != "" && path == page.NextLink {
			return nil, &connectors.Error{Kind: connectors.Permanent, Code: "FOREIGN_NEXT_LINK"}
		}
	}
	return out, nil
}

// Update changes the row with id; a missing row is an error.
func (c *Client) Update(ctx context.Context, logical, id string, fields map[string]any) error {
	body, err := json.Marshal(fields)
	if err != nil {
		return &connectors.Error{Kind: connectors.Permanent, Code: "BAD_FIELDS"}
	}
	resp, err := c.do(ctx, http.MethodPatch, c.EntitySet(logical)+"("+url.PathEscape(id)+")", http.Header{"If-Match": {"*"}}, body)
	if err != nil {
		return err
	}
	if resp.status/100 != 2 {
		return classify(resp.status, resp.body)
	}
	return nil
}

// errorf is a permanent error with a code of ehrbridge's own.
func errorf(code, format string, args ...any) error {
	return &connectors.Error{Kind: connectors.Permanent, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Package fhirhttp is the HTTP side of talking to an EHR's FHIR R4 server,
// shared by write-back (DocumentReference) and the FHIR source (search,
// paging): requests with a bearer token, static or by SMART Backend
// Services, and how answers are classified. The token goes to the base
// URL's origin only (origin.go). Its errors never quote the server's
// bodies nor a URL's path or query (a refused URL's host may be named).
package fhirhttp

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
)

// TokenSource returns a bearer token.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a bearer token from the configuration.
type StaticToken string

// Token implements TokenSource.
func (s StaticToken) Token(context.Context) (string, error) { return string(s), nil }

// Client sends requests to one FHIR server.
type Client struct {
	// Base is the server's base URL, like https://ehr.example/fhir/R4.
	Base string
	// Auth gives the bearer token; nil sends none.
	Auth TokenSource
	HTTP *http.Client
}

// Do sends a request to path (our own path below Base, like
// "/Patient?...", or an absolute URL on Base's origin; a URL the server
// supplied goes through Resolve first) and returns the status and body.
// body, if not nil, is sent as JSON. Network failures are transient
// errors.
func (c *Client) Do(ctx context.Context, method, path string, body any, headers map[string]string) (int, []byte, error) {
	status, _, b, err := c.DoHeader(ctx, method, path, body, headers)
	return status, b, err
}

// DoHeader is Do that also returns the answer's headers (a Bulk Data
// kick-off's Content-Location, a status poll's Retry-After).
func (c *Client) DoHeader(ctx context.Context, method, path string, body any, headers map[string]string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(b)
		h := map[string]string{"Content-Type": "application/fhir+json"}
		for k, v := range headers {
			h[k] = v
		}
		headers = h
	}
	resp, err := c.send(ctx, method, path, rd, headers, true, false)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, resp.Header, nil, &connectors.Error{Kind: connectors.Transient, Code: "EHR_UNREACHABLE"}
	}
	return resp.StatusCode, resp.Header, b, nil
}

// StatusError is the error for an unexpected answer: code_STATUS, transient
// or permanent as Transient says, with the OperationOutcome's text as the
// Message (for a dead letter's reason, never for logs).
func StatusError(code string, status int, body []byte) *connectors.Error {
	kind := connectors.Permanent
	if Transient(status) {
		kind = connectors.Transient
	}
	return &connectors.Error{Kind: kind, Code: fmt.Sprintf("%s_%d", code, status), Status: status, Message: Outcome(status, body)}
}

// Open sends a GET like Do and returns the response with its body unread
// (the caller closes it), for downloads too large to hold. With auth
// false no token is sent, and the URL may be on another origin if it is
// https (a Bulk Data file in object storage, see ResolveAny); with auth
// true it must be on Base's origin (see ResolveOrigin).
func (c *Client) Open(ctx context.Context, path string, headers map[string]string, auth bool) (*http.Response, error) {
	return c.send(ctx, http.MethodGet, path, nil, headers, auth, true)
}

func (c *Client) send(ctx context.Context, method, path string, body io.Reader, headers map[string]string, auth, stream bool) (*http.Response, error) {
	target, err := c.target(path, auth)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, &connectors.Error{Kind: connectors.Permanent, Code: "FHIR_BAD_URL"}
	}
	req.Header.Set("Accept", "application/fhir+json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if auth && c.Auth != nil {
		tok, err := c.Auth.Token(ctx)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	client := c.HTTP
	switch {
	case client != nil:
	case stream:
		// A download: no deadline on the whole body (it may take long);
		// the caller's context ends it.
		client = streamClient
	default:
		client = defaultClient
	}
	resp, err := guarded(client).Do(req)
	if err != nil {
		if errors.Is(err, errRedirect) {
			return nil, &connectors.Error{Kind: connectors.Permanent, Code: "FHIR_REDIRECT_REFUSED", Message: "the server redirected to plain http on another origin"}
		}
		return nil, &connectors.Error{Kind: connectors.Transient, Code: "EHR_UNREACHABLE"}
	}
	return resp, nil
}

// target is the URL a request goes to: our own path below the base
// ("/Patient?...", "" for the base itself: a transaction), or an absolute
// URL, which must be on the base's exact origin when the token goes along
// (callers hold a server's URL to the base path with Resolve, or to the
// origin with ResolveOrigin, first: their errors name the kind of URL),
// and https otherwise (see ResolveAny). Anything else (a server's relative
// reference not resolved yet) is refused.
func (c *Client) target(p string, auth bool) (string, error) {
	base, err := c.baseURL()
	if err != nil {
		return "", err
	}
	const what = "a request URL"
	switch {
	case p == "" || strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "//"):
		u, err := url.Parse(strings.TrimSuffix(c.Base, "/") + p)
		if err != nil {
			return "", &connectors.Error{Kind: connectors.Permanent, Code: "FHIR_BAD_URL"}
		}
		if err := checkOrigin(base, u, what); err != nil {
			return "", err
		}
		return u.String(), nil
	case strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://"):
		if auth {
			return c.ResolveOrigin(p, what)
		}
		return c.ResolveAny(p, what)
	}
	return "", &connectors.Error{Kind: connectors.Permanent, Code: "FHIR_BAD_URL", Message: "a relative URL was not resolved against the base"}
}

// defaultClient sends API requests.
var defaultClient = &http.Client{Timeout: 30 * time.Second}

// streamClient downloads: a deadline for the answer's headers, none for
// its body.
var streamClient = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment,
	ResponseHeaderTimeout: time.Minute, TLSHandshakeTimeout: 15 * time.Second}}

// Transient reports the answers worth retrying: 5xx and 429; 401 and 403,
// a configuration problem that may be fixed.
func Transient(status int) bool {
	return status >= 500 || status == http.StatusTooManyRequests || status == http.StatusUnauthorized || status == http.StatusForbidden
}

// Outcome is the text of an OperationOutcome body (its first issue), or
// the status.
func Outcome(status int, body []byte) string {
	var oo struct {
		Issue []struct {
			Diagnostics string `json:"diagnostics"`
			Details     struct {
				Text string `json:"text"`
			} `json:"details"`
		} `json:"issue"`
	}
	text := fmt.Sprintf("HTTP %d", status)
	if json.Unmarshal(body, &oo) == nil && len(oo.Issue) > 0 {
		t := oo.Issue[0].Details.Text
		if t == "" {
			t = oo.Issue[0].Diagnostics
		}
		text += ": " + t
	}
	return text
}

// BackendServices gets bearer tokens by SMART Backend Services: a client
// credentials grant authenticated with a JWT assertion signed (RS384) by
// the client's private key. Tokens are cached until a minute before they
// expire.
type BackendServices struct {
	TokenURL, ClientID string
	Key                *rsa.PrivateKey
	KeyID              string
	Scope              string // default "system/DocumentReference.write system/Patient.read system/Encounter.read"
	HTTP               *http.Client

	mu      sync.Mutex
	token   string
	expires time.Time
}

// ParseRSAKey reads an unencrypted PEM RSA private key (PKCS#1 or #8).
func ParseRSAKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block in the key file")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("the key file holds no RSA private key")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("the key is not RSA")
	}
	return rk, nil
}

// Token implements TokenSource.
func (b *BackendServices) Token(ctx context.Context) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.token != "" && time.Now().Before(b.expires) {
		return b.token, nil
	}
	assertion, err := b.assertion()
	if err != nil {
		return "", err
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {cmp.Or(b.Scope, "system/DocumentReference.write system/Patient.read system/Encounter.read")},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", &connectors.Error{Kind: connectors.Permanent, Code: "FHIR_AUTH_URL"}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	client := b.HTTP
	if client == nil {
		client = defaultClient
	}
	// A redirect elsewhere would carry the signed assertion along (307/308
	// resend the form): the same rule as for the token.
	resp, err := guarded(client).Do(req)
	if err != nil {
		return "", &connectors.Error{Kind: connectors.Transient, Code: "FHIR_AUTH_UNREACHABLE"}
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil || out.AccessToken == "" {
		return "", &connectors.Error{Kind: connectors.Transient, Code: fmt.Sprintf("FHIR_AUTH_HTTP_%d", resp.StatusCode)}
	}
	b.token = out.AccessToken
	b.expires = time.Now().Add(time.Duration(max(out.ExpiresIn, 120)-60) * time.Second)
	return b.token, nil
}

// assertion is the signed client authentication JWT.
func (b *BackendServices) assertion() (string, error) {
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	header := map[string]string{"alg": "RS384", "typ": "JWT"}
	if b.KeyID != "" {
		header["kid"] = b.KeyID
	}
	claims := map[string]any{"iss": b.ClientID, "sub": b.ClientID, "aud": b.TokenURL, "jti": hex.EncodeToString(jti[:]),
		"exp": time.Now().Add(4 * time.Minute).Unix()}
	enc := func(v any) string {
		j, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(j)
	}
	signing := enc(header) + "." + enc(claims)
	digest := sha512.Sum384([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, b.Key, crypto.SHA384, digest[:])
	if err != nil {
		return "", err
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

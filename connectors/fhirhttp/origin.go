package fhirhttp

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/ehrbridge/ehrbridge/connectors"
)

// The bearer token goes to the FHIR server's own origin only. A URL the
// server supplies (a link[next], a Bulk Data status or file URL, a
// notification's fullUrl, a Content-Location) is resolved as a URL
// against the base (RFC 3986 §5, never concatenated as text: after a base
// without a path, "@host:port/x" would otherwise name another host) and
// then must have the base's scheme, host and port (default ports made
// explicit) and a path at or below the base path, compared segment by
// segment after dot segments are removed (/fhir holds /fhir/x, not
// /fhir-evil nor /fhir/../x). Redirects that leave the origin lose the
// token (and the Referer, which may carry a search's query) or, when they
// go to plain http, are refused.

// URLError is a refused server-supplied URL. It names the kind of URL and
// what is wrong with it, never the URL's path or query (a search's query
// carries patient identifiers); it unwraps to a permanent
// connectors.Error coded FHIR_FOREIGN_URL.
type URLError struct {
	// What is the kind of URL, like "the server's next-page link".
	What string
	// Problem is what is wrong, like "is on another host (evil.example:443)".
	Problem string
}

func (e *URLError) Error() string {
	return e.What + " " + e.Problem + "; refused: the FHIR token goes to the configured base URL's origin and path only"
}

// Unwrap gives the classification.
func (e *URLError) Unwrap() error {
	return &connectors.Error{Kind: connectors.Permanent, Code: "FHIR_FOREIGN_URL", Message: e.What + " " + e.Problem}
}

// origin is a URL's scheme, host and port, lower-cased, with the
// scheme's default port made explicit.
type origin struct{ scheme, host, port string }

func originOf(u *url.URL) origin {
	o := origin{scheme: strings.ToLower(u.Scheme), host: strings.ToLower(strings.TrimSuffix(u.Hostname(), ".")), port: u.Port()}
	if o.port == "" {
		switch o.scheme {
		case "https":
			o.port = "443"
		case "http":
			o.port = "80"
		}
	}
	return o
}

func (o origin) String() string { return o.scheme + "://" + net.JoinHostPort(o.host, o.port) }

// basePath is a base URL's path cleaned, without a trailing slash ("" for
// the root).
func basePath(u *url.URL) string {
	p := path.Clean("/" + u.Path)
	return strings.TrimSuffix(p, "/")
}

// under reports whether p (a URL's decoded path) is the base path bp or
// below it, segment-wise, once dot segments are removed.
func under(p, bp string) bool {
	c := path.Clean("/" + p)
	return bp == "" || c == bp || strings.HasPrefix(c, bp+"/")
}

// Resolve resolves ref, a URL the server supplied, against the base and
// returns it absolute if the token may go there: the base's exact origin
// and a path at or below the base path. A relative ref is relative to the
// base as a directory ("Patient/1" is Base/Patient/1, FHIR's reading of a
// relative reference). what names the kind of URL in the error.
func (c *Client) Resolve(ref, what string) (string, error) {
	base, u, err := c.resolveRef(ref, what)
	if err != nil {
		return "", err
	}
	if err := checkOrigin(base, u, what); err != nil {
		return "", err
	}
	return u.String(), nil
}

// ResolveOrigin is Resolve without the base path: the exact origin only.
// It is for the Bulk Data files of a manifest whose requiresAccessToken is
// true, which the Bulk Data Access IG places anywhere on the server (its
// manifest examples list https://example.org/output/patient_file_1.ndjson).
func (c *Client) ResolveOrigin(ref, what string) (string, error) {
	base, u, err := c.resolveRef(ref, what)
	if err != nil {
		return "", err
	}
	root := *base
	root.Path, root.RawPath = "/", ""
	if err := checkOrigin(&root, u, what); err != nil {
		return "", err
	}
	return u.String(), nil
}

// ResolveAny resolves ref against the base like Resolve but does not hold
// it to the origin: for a URL read without the token (a Bulk Data file
// when the manifest's requiresAccessToken is false). It must be https;
// plain http only on a loopback host while the base itself is plain http
// on a loopback host (a test server), never for a real host.
func (c *Client) ResolveAny(ref, what string) (string, error) {
	base, u, err := c.resolveRef(ref, what)
	if err != nil {
		return "", err
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && base.Scheme == "http" && loopbackHost(u.Hostname()) && loopbackHost(base.Hostname()):
	default:
		return "", &URLError{What: what, Problem: "is not https (" + u.Scheme + ")"}
	}
	return u.String(), nil
}

// resolveRef resolves ref against the base (see resolve), returning both.
func (c *Client) resolveRef(ref, what string) (*url.URL, *url.URL, error) {
	base, err := c.baseURL()
	if err != nil {
		return nil, nil, err
	}
	u, err := resolve(base, ref, what)
	return base, u, err
}

func (c *Client) baseURL() (*url.URL, error) {
	b, err := url.Parse(c.Base)
	if err != nil || (b.Scheme != "https" && b.Scheme != "http") || b.Host == "" {
		return nil, &connectors.Error{Kind: connectors.Permanent, Code: "FHIR_BAD_URL", Message: "the FHIR base URL is not an http(s) URL"}
	}
	if !strings.HasSuffix(b.Path, "/") {
		b.Path += "/"
		b.RawPath = ""
	}
	b.RawQuery, b.Fragment = "", ""
	return b, nil
}

func resolve(base *url.URL, ref, what string) (*url.URL, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return nil, &URLError{What: what, Problem: "is empty"}
	}
	r, err := url.Parse(ref)
	if err != nil {
		return nil, &URLError{What: what, Problem: "is not a URL"}
	}
	u := base.ResolveReference(r)
	u.Fragment, u.RawFragment = "", ""
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, &URLError{What: what, Problem: "is not an http(s) URL"}
	case u.User != nil:
		return nil, &URLError{What: what, Problem: "carries credentials"}
	case u.Host == "":
		return nil, &URLError{What: what, Problem: "names no host"}
	}
	return u, nil
}

// checkOrigin holds u to base's origin and path.
func checkOrigin(base, u *url.URL, what string) error {
	bo, uo := originOf(base), originOf(u)
	switch {
	case uo.scheme != bo.scheme:
		return &URLError{What: what, Problem: "uses another scheme (" + uo.scheme + ", the base is " + bo.scheme + ")"}
	case uo.host != bo.host:
		return &URLError{What: what, Problem: "is on another host (" + net.JoinHostPort(uo.host, uo.port) + ")"}
	case uo.port != bo.port:
		return &URLError{What: what, Problem: "is on another port (" + uo.port + ", the base's is " + bo.port + ")"}
	case u.User != nil:
		return &URLError{What: what, Problem: "carries credentials"}
	case !under(u.Path, basePath(base)):
		return &URLError{What: what, Problem: "has a path outside the base path " + basePath(base) + "/"}
	}
	return nil
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// errRedirect is a refused redirect.
var errRedirect = errors.New("redirect refused")

// checkRedirect is the redirect rule of every token-bearing client: at
// most 10 redirects; within the first request's origin the request is
// followed as is; to another origin only over https, and without the
// Authorization, Cookie and Referer headers (Go itself keeps
// Authorization on a redirect to the same host name on another port or
// from https to http, and to a subdomain, and sends a Referer that holds
// the search's query). A redirect to plain http on another origin is
// refused: the answer would cross the network in clear.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return fmt.Errorf("%w: more than 10 redirects", errRedirect)
	}
	first := via[0].URL
	if originOf(req.URL) == originOf(first) {
		return nil
	}
	if req.URL.Scheme != "https" {
		return fmt.Errorf("%w: a redirect from %s to plain %s on another origin", errRedirect, originOf(first).scheme, req.URL.Scheme)
	}
	req.Header.Del("Authorization")
	req.Header.Del("Cookie")
	req.Header.Del("Referer")
	return nil
}

// guarded returns a copy of client whose redirects follow checkRedirect
// (then the client's own CheckRedirect, if it has one).
func guarded(client *http.Client) *http.Client {
	cl := *client
	own := client.CheckRedirect
	cl.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := checkRedirect(req, via); err != nil {
			return err
		}
		if own != nil {
			return own(req, via)
		}
		return nil
	}
	return &cl
}

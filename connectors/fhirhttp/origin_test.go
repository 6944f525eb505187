package fhirhttp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ehrbridge/ehrbridge/connectors"
)

// Resolve: a server's URL is resolved as a URL against the base, then
// held to the base's exact origin (default ports made explicit) and to
// the base path, segment-wise; the error names the kind of URL and never
// the query.
func TestResolve(t *testing.T) {
	for _, c := range []struct {
		base, ref, want, problem string
	}{
		// The text concatenation of old: "https://ehr.example" + "@evil..."
		// named evil.example as the host. As a URL it is a relative path
		// (refused when its first segment holds a colon, RFC 3986 §4.2).
		{"https://ehr.example", "@evil.example:8443/x", "", "not a URL"},
		{"https://ehr.example/", "@evil.example:8443/x", "", "not a URL"},
		{"https://ehr.example", "@evil.example/x", "https://ehr.example/@evil.example/x", ""},
		{"https://ehr.example/fhir", "@evil.example/x", "https://ehr.example/fhir/@evil.example/x", ""},
		{"https://ehr.example/fhir", "Patient?page=2", "https://ehr.example/fhir/Patient?page=2", ""},
		{"https://ehr.example/fhir/", "/fhir/Patient?page=2", "https://ehr.example/fhir/Patient?page=2", ""},
		{"https://ehr.example/fhir", "https://EHR.example:443/fhir/Patient?page=2", "https://EHR.example:443/fhir/Patient?page=2", ""},
		{"https://ehr.example:443/fhir", "https://ehr.example/fhir", "https://ehr.example/fhir", ""},
		{"https://ehr.example/fhir", "https://ehr.example/fhir/a/../b#frag", "https://ehr.example/fhir/b", ""},
		{"https://ehr.example/fhir", "//evil.example/fhir/Patient", "", "another host"},
		{"https://ehr.example/fhir", "https://evil.example/fhir/Patient?identifier=MRN123", "", "another host"},
		{"https://ehr.example/fhir", "https://ehr.example.evil.example/fhir", "", "another host"},
		{"https://ehr.example/fhir", "https://ehr.example:8443/fhir/Patient", "", "another port"},
		{"https://ehr.example/fhir", "http://ehr.example/fhir/Patient", "", "another scheme"},
		{"https://ehr.example/fhir", "https://ehr.example/fhir-evil/Patient", "", "outside the base path"},
		{"https://ehr.example/fhir", "/fhir-evil/Patient", "", "outside the base path"},
		{"https://ehr.example/fhir", "/admin", "", "outside the base path"},
		{"https://ehr.example/fhir", "../admin", "", "outside the base path"},
		{"https://ehr.example/fhir", "https://ehr.example/fhir/%2e%2e/admin", "", "outside the base path"},
		{"https://ehr.example/fhir", "https://ehr.example/fhir%2F..%2Fadmin", "", "outside the base path"},
		{"https://ehr.example/fhir", "https://user:pw@ehr.example/fhir/Patient", "", "credentials"},
		{"https://ehr.example/fhir", "urn:uuid:5c1d", "", "not an http(s) URL"},
		{"https://ehr.example/fhir", "", "", "empty"},
	} {
		got, err := (&Client{Base: c.base}).Resolve(c.ref, "the server's next-page link")
		if c.problem == "" {
			if err != nil || got != c.want {
				t.Errorf("Resolve(%q, %q) = %q, %v; want %q", c.base, c.ref, got, err, c.want)
			}
			continue
		}
		var ue *URLError
		var ce *connectors.Error
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.problem) || !errors.As(err, &ce) || ce.Code != "FHIR_FOREIGN_URL" {
			t.Errorf("Resolve(%q, %q) = %q, %v; want a URLError %q", c.base, c.ref, got, err, c.problem)
			continue
		}
		if !strings.HasPrefix(err.Error(), "the server's next-page link ") || strings.Contains(err.Error(), "MRN123") || strings.Contains(err.Error(), "pw") {
			t.Errorf("error %q: must name the kind of URL and never its query or credentials", err)
		}
	}
}

// ResolveOrigin holds a URL to the base's exact origin, not its path.
func TestResolveOrigin(t *testing.T) {
	for _, c := range []struct {
		ref string
		ok  bool
	}{
		{"https://ehr.example/output/Patient_1.ndjson", true},
		{"/output/Patient_1.ndjson", true},
		{"https://ehr.example:443/output/Patient_1.ndjson", true},
		{"https://ehr.example:8443/output/Patient_1.ndjson", false},
		{"http://ehr.example/output/Patient_1.ndjson", false},
		{"https://storage.example/output/Patient_1.ndjson", false},
		{"//storage.example/output/Patient_1.ndjson", false},
	} {
		_, err := (&Client{Base: "https://ehr.example/fhir/R4"}).ResolveOrigin(c.ref, "a bulk export file URL")
		if (err == nil) != c.ok {
			t.Errorf("ResolveOrigin(%q): %v, want ok=%v", c.ref, err, c.ok)
		}
	}
}

// ResolveAny (a URL read without the token): https anywhere; plain http
// only on loopback while the base is a loopback http test server.
func TestResolveAny(t *testing.T) {
	for _, c := range []struct {
		base, ref string
		ok        bool
	}{
		{"https://ehr.example/fhir", "https://bucket.storage.example/f.ndjson", true},
		{"https://ehr.example/fhir", "http://bucket.storage.example/f.ndjson", false},
		{"https://ehr.example/fhir", "http://127.0.0.1:9000/f.ndjson", false},
		{"http://127.0.0.1:8000/fhir", "http://127.0.0.1:9000/f.ndjson", true},
		{"http://127.0.0.1:8000/fhir", "http://storage.example/f.ndjson", false},
		{"http://ehr.example/fhir", "http://127.0.0.1:9000/f.ndjson", false},
		{"https://ehr.example/fhir", "ftp://storage.example/f.ndjson", false},
	} {
		_, err := (&Client{Base: c.base}).ResolveAny(c.ref, "a bulk export file URL")
		if (err == nil) != c.ok {
			t.Errorf("ResolveAny(%q, %q): %v, want ok=%v", c.base, c.ref, err, c.ok)
		}
	}
}

// recorder is a hostile server's log of the Authorization and Referer
// headers it was sent.
type recorder struct {
	mu    sync.Mutex
	calls int
	auth  []string
	refer []string
}

func (r *recorder) handler(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.calls++
	r.auth = append(r.auth, req.Header.Get("Authorization"))
	r.refer = append(r.refer, req.Header.Get("Referer"))
	r.mu.Unlock()
	io.WriteString(w, `{"resourceType":"Bundle","type":"searchset"}`)
}

func (r *recorder) sawToken() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.auth {
		if a != "" {
			return true
		}
	}
	return false
}

// Redirects: Go keeps the Authorization header on a redirect to the same
// host name on another port, or from https to http (it compares host
// names only); the client refuses a redirect to plain http on another
// origin and follows one to https elsewhere without the token and without
// the Referer (which holds the search's query).
func TestRedirectsKeepTheTokenHome(t *testing.T) {
	ctx := context.Background()
	redirector := func(to *string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer tok" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, *to+"/stolen", http.StatusTemporaryRedirect)
		}
	}

	t.Run("http to another port", func(t *testing.T) {
		var hostile recorder
		evil := httptest.NewServer(http.HandlerFunc(hostile.handler))
		defer evil.Close()
		to := evil.URL
		ehr := httptest.NewServer(redirector(&to))
		defer ehr.Close()
		c := &Client{Base: ehr.URL + "/fhir", Auth: StaticToken("tok")}
		_, _, err := c.Do(ctx, http.MethodGet, "/Patient?identifier=sys|MRN123", nil, nil)
		var ce *connectors.Error
		if !errors.As(err, &ce) || ce.Code != "FHIR_REDIRECT_REFUSED" {
			t.Errorf("err %v, want FHIR_REDIRECT_REFUSED", err)
		}
		if hostile.calls != 0 {
			t.Errorf("the other port was called %d times (Authorization %q)", hostile.calls, hostile.auth)
		}
	})

	t.Run("https to http on the same host", func(t *testing.T) {
		var hostile recorder
		plain := httptest.NewServer(http.HandlerFunc(hostile.handler))
		defer plain.Close()
		to := plain.URL
		ehr := httptest.NewTLSServer(redirector(&to))
		defer ehr.Close()
		c := &Client{Base: ehr.URL + "/fhir", Auth: StaticToken("tok"), HTTP: ehr.Client()}
		_, _, err := c.Do(ctx, http.MethodGet, "/Patient?identifier=sys|MRN123", nil, nil)
		var ce *connectors.Error
		if !errors.As(err, &ce) || ce.Code != "FHIR_REDIRECT_REFUSED" {
			t.Errorf("err %v, want FHIR_REDIRECT_REFUSED", err)
		}
		if hostile.calls != 0 || hostile.sawToken() {
			t.Errorf("the downgrade was followed: %d calls, Authorization %q", hostile.calls, hostile.auth)
		}
	})

	t.Run("https to another https origin", func(t *testing.T) {
		var hostile recorder
		evil := httptest.NewTLSServer(http.HandlerFunc(hostile.handler))
		defer evil.Close()
		to := evil.URL
		ehr := httptest.NewTLSServer(redirector(&to))
		defer ehr.Close()
		// Both test servers share one certificate: one client trusts both.
		c := &Client{Base: ehr.URL + "/fhir", Auth: StaticToken("tok"), HTTP: ehr.Client()}
		status, _, err := c.Do(ctx, http.MethodGet, "/Patient?identifier=sys|MRN123", nil, nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("status %d err %v, want the redirect followed", status, err)
		}
		if hostile.calls != 1 || hostile.sawToken() {
			t.Errorf("the other origin: %d calls, Authorization %q; want 1 call without the token", hostile.calls, hostile.auth)
		}
		for _, r := range hostile.refer {
			if strings.Contains(r, "MRN123") {
				t.Errorf("the Referer carried the search's query to the other origin: %q", r)
			}
		}
	})

	t.Run("within the origin", func(t *testing.T) {
		mux := http.NewServeMux()
		var got string
		mux.HandleFunc("/fhir/old", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/fhir/new", http.StatusFound) })
		mux.HandleFunc("/fhir/new", func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("Authorization") })
		ehr := httptest.NewServer(mux)
		defer ehr.Close()
		c := &Client{Base: ehr.URL + "/fhir", Auth: StaticToken("tok")}
		if status, _, err := c.Do(ctx, http.MethodGet, "/old", nil, nil); err != nil || status != 200 || got != "Bearer tok" {
			t.Errorf("status %d err %v Authorization %q, want the redirect followed with the token", status, err, got)
		}
	})

	t.Run("SMART token endpoint", func(t *testing.T) {
		var hostile recorder
		evil := httptest.NewServer(http.HandlerFunc(hostile.handler))
		defer evil.Close()
		auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, evil.URL+"/token", http.StatusTemporaryRedirect)
		}))
		defer auth.Close()
		bs := &BackendServices{TokenURL: auth.URL + "/token", ClientID: "c", Key: testKey(t)}
		if _, err := bs.Token(ctx); err == nil {
			t.Error("a token came from a redirect elsewhere")
		}
		if hostile.calls != 0 {
			t.Errorf("the client assertion was sent to another origin (%d calls)", hostile.calls)
		}
	})
}

func testKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

package fhirhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/connectors"
)

// TestTokenStaysOnOrigin: the bearer token goes to the server's own
// origin only; a URL elsewhere is refused when it would carry the token
// and read without it otherwise (a Bulk Data file in object storage).
func TestTokenStaysOnOrigin(t *testing.T) {
	seen := map[string]string{}
	handler := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			seen[name] = r.Header.Get("Authorization")
			io.WriteString(w, `{"resourceType":"Patient","id":"1"}`)
		}
	}
	fhir := httptest.NewServer(handler("fhir"))
	defer fhir.Close()
	store := httptest.NewServer(handler("store"))
	defer store.Close()

	c := &Client{Base: fhir.URL + "/R4", Auth: StaticToken("tok")}
	ctx := context.Background()

	status, _, err := c.Do(ctx, http.MethodGet, "/Patient/1", nil, nil)
	if err != nil || status != 200 || seen["fhir"] != "Bearer tok" {
		t.Fatalf("own server: status %d err %v auth %q", status, err, seen["fhir"])
	}
	_, _, err = c.Do(ctx, http.MethodGet, store.URL+"/Patient/1", nil, nil)
	var ce *connectors.Error
	if !errors.As(err, &ce) || ce.Code != "FHIR_FOREIGN_URL" {
		t.Fatalf("a foreign URL with the token: err %v, want FHIR_FOREIGN_URL", err)
	}
	if _, ok := seen["store"]; ok {
		t.Fatal("the foreign server was called")
	}
	resp, err := c.Open(ctx, store.URL+"/file.ndjson", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if a, ok := seen["store"]; !ok || a != "" {
		t.Fatalf("foreign file read without the token: called %v, Authorization %q", ok, a)
	}
	resp, err = c.Open(ctx, fhir.URL+"/R4/file.ndjson", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if seen["fhir"] != "Bearer tok" {
		t.Fatalf("own file: Authorization %q", seen["fhir"])
	}
}

func TestStatusError(t *testing.T) {
	e := StatusError("FHIR_HTTP", 503, nil)
	if e.Kind != connectors.Transient || e.Code != "FHIR_HTTP_503" || e.Status != 503 {
		t.Errorf("503: %+v", e)
	}
	e = StatusError("FHIR_BULK_KICKOFF", 400, []byte(`{"resourceType":"OperationOutcome","issue":[{"diagnostics":"_type not supported"}]}`))
	if e.Kind != connectors.Permanent || e.Code != "FHIR_BULK_KICKOFF_400" || e.Message != "HTTP 400: _type not supported" {
		t.Errorf("400: %+v", e)
	}
	if strings.Contains(e.Error(), "_type") {
		t.Errorf("the server's text reached Error(), which is logged: %q", e.Error())
	}
}

package ehr

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
)

// Write-back to a FHIR server follows the FHIR source's redirect rule: the
// patient search (its query holds the MRN) redirected to plain http
// elsewhere is refused; to https elsewhere it goes without the token and
// without a Referer that would carry the MRN.
func TestFHIRWritebackRedirectKeepsToken(t *testing.T) {
	type seen struct{ auth, referer, query string }
	var mu sync.Mutex
	var hostile []seen
	record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hostile = append(hostile, seen{r.Header.Get("Authorization"), r.Header.Get("Referer"), r.URL.RawQuery})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Bundle","type":"searchset"}`)
	})
	doc := &connectors.Document{Note: &connectors.Note{ID: "t1", Version: "v1", Text: "x"}, ID: "EHRB-t1", Authority: "GENHOSP", MRN: "MRN4711"}
	for _, c := range []struct {
		name       string
		tls        bool
		wantCalled bool
	}{
		{"to plain http on another port", false, false},
		{"to https on another port", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			hostile = nil
			var evil, ehrSrv *httptest.Server
			if c.tls {
				evil = httptest.NewTLSServer(record)
			} else {
				evil = httptest.NewServer(record)
			}
			defer evil.Close()
			redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, evil.URL+"/fhir/Patient?"+r.URL.RawQuery, http.StatusTemporaryRedirect)
			})
			if c.tls {
				ehrSrv = httptest.NewTLSServer(redirect)
			} else {
				ehrSrv = httptest.NewServer(redirect)
			}
			defer ehrSrv.Close()
			target := &FHIRTarget{Base: ehrSrv.URL + "/fhir", Auth: fhirhttp.StaticToken("tok"), HTTP: ehrSrv.Client()}
			err := target.File(context.Background(), doc)
			if err == nil {
				t.Fatal("filing through a foreign redirect succeeded")
			}
			mu.Lock()
			defer mu.Unlock()
			if called := len(hostile) > 0; called != c.wantCalled {
				t.Errorf("the other origin called: %v, want %v (err %v)", called, c.wantCalled, err)
			}
			for _, h := range hostile {
				if h.auth != "" || strings.Contains(h.referer, "MRN4711") {
					t.Errorf("the other origin got Authorization %q, Referer %q", h.auth, h.referer)
				}
			}
		})
	}
}

package salesforce

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// The token response's instance_url is where every API request, with
// the token, goes: it must be https on a Salesforce domain or the login
// URL's own origin. A hostile one fails the login and is never sent the
// token.
func TestInstanceURLHeldToSalesforce(t *testing.T) {
	var mu sync.Mutex
	var stolen []string
	hostile := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		stolen = append(stolen, r.Header.Get("Authorization"))
		mu.Unlock()
		io.WriteString(w, `{}`)
	}))
	defer hostile.Close()
	var instance string
	login := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"SECRET-TOKEN","token_type":"Bearer","instance_url":"`+instance+`"}`)
	}))
	defer login.Close()
	for _, inst := range []string{hostile.URL, "https://evil.example", "http://x.my.salesforce.com",
		"https://x.my.salesforce.com.evil.example", "https://x.my.salesforce.com@evil.example", "https://x.my.salesforce.com:8443",
		"https://x.my.salesforce.com/services?x=1", "ftp://x.my.salesforce.com"} {
		instance = inst
		// The hostile server's client trusts its test certificate: only the
		// rule keeps the token away from it.
		c, err := New(Config{LoginURL: login.URL, ClientID: "x", ClientSecret: "y", Auth: Auth{ClientCredentials: true},
			HTTPClient: hostile.Client(), RetryMax: -1})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Probe(context.Background())
		var e *Error
		if !errors.As(err, &e) || e.Code != "AUTH_BAD_INSTANCE_URL" || e.Kind != Permanent {
			t.Errorf("instance_url %s: err %v, want AUTH_BAD_INSTANCE_URL", inst, err)
			continue
		}
		if strings.Contains(e.Message, "SECRET") || !strings.Contains(e.Message, "instance_url") {
			t.Errorf("instance_url %s: message %q", inst, e.Message)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stolen) > 0 {
		t.Errorf("the hostile instance was sent %d requests (Authorization %q)", len(stolen), stolen)
	}
}

func TestInstanceURLProblem(t *testing.T) {
	for _, c := range []struct {
		inst, login string
		ok          bool
	}{
		{"https://hospital.my.salesforce.com", "https://login.salesforce.com", true},
		{"https://hospital--uat.sandbox.my.salesforce.com/", "https://test.salesforce.com", true},
		{"https://eu55.salesforce.com", "https://login.salesforce.com", true},
		{"https://HOSPITAL.MY.SALESFORCE.COM:443", "https://login.salesforce.com", true},
		{"https://hospital.my.salesforce.mil", "https://hospital.my.salesforce.mil", true},
		{"http://127.0.0.1:8201", "http://127.0.0.1:8201/", true},
		{"http://127.0.0.1:8202", "http://127.0.0.1:8201", false},
		{"https://evil.example", "https://login.salesforce.com", false},
		{"https://salesforce.com.evil.example", "https://login.salesforce.com", false},
		{"https://evilsalesforce.com", "https://login.salesforce.com", false},
		{"http://x.my.salesforce.com", "https://login.salesforce.com", false},
		{"https://hospital.my.salesforce.mil", "https://login.salesforce.com", false},
		{"", "https://login.salesforce.com", false},
	} {
		if got := InstanceURLProblem(c.inst, c.login); (got == "") != c.ok {
			t.Errorf("InstanceURLProblem(%q, %q) = %q, want ok=%v", c.inst, c.login, got, c.ok)
		}
	}
}

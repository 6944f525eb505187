package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pa55w0rd@ehr.example/fhir":            "https://[redacted]@ehr.example/fhir",
		"https://tok3n@ehr.example/fhir":                    "https://[redacted]@ehr.example/fhir",
		`Get "http://u:p%40ss@127.0.0.1:1/x": refused`:      `Get "http://[redacted]@127.0.0.1:1/x": refused`,
		"https://ehr.example/fhir?who=a@b":                  "https://ehr.example/fhir?who=a@b",
		"no url, mail@example.org":                          "no url, mail@example.org",
		"a https://a:b@h/x and HTTPS://c:d@h2 in one error": "a https://[redacted]@h/x and HTTPS://[redacted]@h2 in one error",
	} {
		if got := redactURLs(in); got != want {
			t.Errorf("redactURLs(%q) = %q, want %q", in, got, want)
		}
	}
	if got := redactURL("https://user:pa55w0rd@ehr.example/fhir"); strings.Contains(got, "pa55w0rd") || strings.Contains(got, "user") {
		t.Errorf("redactURL = %q", got)
	}
}

// A FHIR base_url with credentials in it is shown on /status and the
// page without them, and so is the poll error that quotes it.
func TestStatusHidesURLCredentials(t *testing.T) {
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer fhir.Close()
	base := strings.Replace(fhir.URL, "http://", "http://ehruser:pa55w0rdZZ@", 1) + "/fhir"
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := l.Addr().String()
	l.Close()
	t.Setenv(viewerTokenEnv, viewerToken)
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, "data_dir: %s\nadmin:\n  listen: %s\n  socket: \"off\"\n"+viewerAccount+"sources:\n  fhir:\n    - name: ehrfhir\n      base_url: %s\n      types: [Patient]\n      schedule: \"@every 1h\"\n",
		dir, adminAddr, base), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	d, err := Start(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	var status, page string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		status, page = getBody(t, "http://"+adminAddr+"/status"), getBody(t, "http://"+adminAddr+"/")
		if strings.Contains(status, `"last_error"`) {
			break
		}
	}
	if !strings.Contains(status, `"base_url": "http://[redacted]@127.0.0.1`) {
		t.Errorf("/status base_url:\n%s", status)
	}
	for what, text := range map[string]string{"/status": status, "/": page, "the daemon's log": logs.String()} {
		if strings.Contains(text, "pa55w0rdZZ") || strings.Contains(text, "ehruser") {
			t.Errorf("%s shows the URL's credentials:\n%s", what, text)
		}
	}
}

// A viewer account for tests that read /status over TCP: loopback TCP
// callers are named by the OS on Linux only, so a test that must also run
// on Windows signs in.
const (
	viewerTokenEnv = "TEST_VIEWER_TOKEN"
	viewerToken    = "viewer-token-0123456789"
	viewerAccount  = "  accounts:\n    - {name: viewer, role: viewer, token_env: " + viewerTokenEnv + "}\n"
)

// getBody GETs url as the viewer account (viewerAccount, viewerTokenEnv set).
func getBody(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("viewer", viewerToken)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

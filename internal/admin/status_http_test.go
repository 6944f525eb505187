package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/daemon"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

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
	d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(logs, nil)))
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

// A started daemon with an opt-out warns once at start and lists it under
// insecure_settings on /status; one without lists none.
func TestStatusListsInsecureSettings(t *testing.T) {
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	for _, optOut := range []bool{true, false} {
		dir := t.TempDir()
		target := "    mllp: 192.0.2.1:6661\n    insecure_plaintext: true\n" // TEST-NET-1: never reached, no note is flagged
		if !optOut {
			target = "    mllp: 127.0.0.1:6661\n"
		}
		t.Setenv(viewerTokenEnv, viewerToken)
		cfg, err := config.Parse(filepath.Join(dir, "t.yaml"), []byte("data_dir: "+dir+"\nadmin:\n  listen: "+free()+"\n"+viewerAccount+
			"crm:\n  sandbox:\n    embed: true\n    listen: "+free()+"\nwriteback:\n  target:\n"+target), os.LookupEnv)
		if err != nil {
			t.Fatal(err)
		}
		logs := &syncbuf.Buffer{}
		d, err := daemon.Start(cfg, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		body := getBody(t, "http://"+d.AdminAddr().String()+"/status")
		d.Shutdown(context.Background())
		var st struct {
			Insecure []config.InsecureSetting `json:"insecure_settings"`
		}
		err = json.Unmarshal([]byte(body), &st)
		if err != nil {
			t.Fatal(err)
		}
		warnings := strings.Count(logs.String(), "plaintext connection allowed by the configuration")
		want := []config.InsecureSetting{{Key: "writeback.target.insecure_plaintext", Excuses: "writeback.target.mllp"}}
		if !optOut {
			want = nil
		}
		if !reflect.DeepEqual(st.Insecure, want) || warnings != len(want) {
			t.Errorf("opt-out %v: /status insecure_settings = %v, %d warnings; want %v", optOut, st.Insecure, warnings, want)
		}
		if strings.Contains(logs.String(), "192.0.2.1") {
			t.Errorf("a log line shows the address:\n%s", logs.String())
		}
	}
}

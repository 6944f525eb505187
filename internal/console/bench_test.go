package console

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/checkpointtest"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// benchLogs are the bulk logs the page benchmarks build, once per size and
// run (removed by the benchmark's cleanup of its temp dir is not possible
// across sub-benchmarks, so they live in one dir removed at exit).
var benchLogs = struct {
	sync.Mutex
	dir   string
	paths map[int]string
}{paths: map[int]string{}}

func benchLog(b *testing.B, n int) string {
	benchLogs.Lock()
	defer benchLogs.Unlock()
	if p, ok := benchLogs.paths[n]; ok {
		return p
	}
	if benchLogs.dir == "" {
		d, err := os.MkdirTemp("", "ehrbridge-console-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchLogs.dir = d
	}
	dir := filepath.Join(benchLogs.dir, fmt.Sprint(n))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(dir, checkpoint.FileName)
	start := time.Now()
	checkpointtest.Bulk(b, p, n)
	b.Logf("built a log of %d records in %v", n, time.Since(start).Round(time.Second))
	benchLogs.paths[n] = p
	return p
}

// BenchmarkMessagesPage times one page of the message browser, as a
// signed-in viewer gets it (filter, Find, rendering the HTML), on a log of
// ten thousand records (the baseline) and of a million: unfiltered, by
// state, by patient (authority and MRN), by message type and by control
// id. Run: go test -run '^$' -bench MessagesPage -benchtime 20x ./internal/console
func BenchmarkMessagesPage(b *testing.B) {
	defer func() {
		if benchLogs.dir != "" && b.Name() == "BenchmarkMessagesPage" {
			os.RemoveAll(benchLogs.dir)
			benchLogs.dir, benchLogs.paths = "", map[int]string{}
		}
	}()
	for _, n := range []int{10_000, 1_000_000} {
		path := benchLog(b, n)
		l, err := checkpoint.Open(path, checkpoint.Options{ReadOnly: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		dir := b.TempDir()
		access := &logadmin.Access{Audit: logadmin.NewAudit(dir)}
		access.Audit.System = nil
		acc, _ := logadmin.NewAccount("vera", "viewer", viewerToken)
		access.Accounts = []logadmin.Account{acc}
		con, err := New(Options{Log: l, Access: access})
		if err != nil {
			b.Fatal(err)
		}
		id, _ := con.sessions.start(logadmin.Caller{Name: "vera", Via: "console", Perm: logadmin.PermView})
		patient := strings.Split(checkpointtest.BulkLane(n/2), "|")
		for _, f := range []struct{ name, query string }{
			{"newest", ""},
			{"dead", "state=dead"},
			{"patient", url.Values{"authority": {patient[0]}, "mrn": {patient[1]}}.Encode()},
			{"type", "type=SIU%5ES12"},
			{"control_id", fmt.Sprintf("control_id=C%08d", n/3)},
			{"dead_SIU", "state=dead&type=SIU%5ES12"},
		} {
			b.Run(fmt.Sprintf("records=%d/%s", n, f.name), func(b *testing.B) {
				req := httptest.NewRequest(http.MethodGet, Prefix+"messages?"+f.query, nil)
				req.AddCookie(&http.Cookie{Name: cookieName, Value: id})
				rows := 0
				for b.Loop() {
					w := httptest.NewRecorder()
					con.ServeHTTP(w, req)
					if w.Code != 200 {
						b.Fatalf("%d: %s", w.Code, w.Body)
					}
					rows = strings.Count(w.Body.String(), `<td><a href="/ui/records/`)
				}
				if rows == 0 {
					b.Fatalf("%s: no record on the page", f.name)
				}
				b.ReportMetric(float64(rows), "rows/page")
			})
		}
		l.Close()
	}
}

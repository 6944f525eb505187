package admin_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/daemon"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

var updateSeries = flag.Bool("update-series", false, "rewrite testdata/metrics-series.golden from this run's /metrics")

// The patient in the message metricsDaemon sends: none of it may reach
// /metrics.
var metricsPHI = []string{"ZZMETRICSPATIENT", "MRN-77123", "Quimby", "19610203"}

// metricsDaemon starts a daemon with every part /metrics reports on (an
// MLLP source, a FHIR source, the embedded Salesforce sandbox with its
// breaker and API usage), sends it one patient, and returns /metrics
// once that patient is in the CRM.
func metricsDaemon(t *testing.T) string {
	t.Helper()
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		fmt.Fprint(w, `{"resourceType":"Bundle","type":"searchset","entry":[]}`)
	}))
	t.Cleanup(fhir.Close)
	mllpAddr, adminAddr, sbAddr := freePort(t), freePort(t), freePort(t)
	t.Setenv(viewerTokenEnv, viewerToken)
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, `data_dir: %s
admin:
  listen: %s
  socket: "off"
%smappings:
  paths: [%s]
  timezone: UTC
crm:
  sandbox:
    embed: true
    listen: %s
  pipeline:
    linger: 10ms
sources:
  mllp:
    - name: ehr
      listen: %s
  fhir:
    - name: ehrfhir
      base_url: %s
      types: [Patient]
      schedule: "@every 1h"
`, t.TempDir(), adminAddr, viewerAccount, filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud"), sbAddr, mllpAddr, fhir.URL),
		os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	})
	c := &mllp.Client{Addr: mllpAddr, AckTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	defer c.Close()
	msg := "MSH|^~\\&|ADT|HOSP|EHRBRIDGE|CRM|20260105101500||ADT^A01|MET1|P|2.5.1\rEVN|A01|20260105101500\r" +
		"PID|1||MRN-77123^^^HOSP^MR||Quimby^ZZMETRICSPATIENT||19610203|F\r"
	if resp, err := c.Send(context.Background(), []byte(msg)); err != nil || !resp.Accepted() {
		t.Fatalf("sending the patient: %v %+v", err, resp)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		body := getBody(t, "http://"+adminAddr+"/metrics")
		if strings.Contains(body, `ehrbridge_records{state="done"} 1`) && strings.Contains(body, "ehrbridge_crm_api_requests_limit ") &&
			strings.Contains(body, `ehrbridge_fhir_polls_total{`) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("the patient did not reach the CRM within 10 s:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// seriesOf is an exposition's metric families and series, values left
// out and label pairs sorted (a series is the same whatever order its
// labels are written in): "# TYPE name type" and "name{a="x",b="y"}" lines.
func seriesOf(exposition string) []string {
	var out []string
	for line := range strings.Lines(exposition) {
		line = strings.TrimSpace(line)
		switch {
		case line == "", strings.HasPrefix(line, "# HELP "):
			continue
		case strings.HasPrefix(line, "# TYPE "):
			out = append(out, line)
			continue
		case strings.HasPrefix(line, "#"):
			continue
		}
		series := line[:strings.LastIndexByte(line, ' ')]
		if i := strings.IndexByte(series, '{'); i >= 0 {
			// Label values here are names and numbers without commas.
			labels := strings.Split(strings.TrimSuffix(series[i+1:], "}"), ",")
			slices.Sort(labels)
			series = series[:i] + "{" + strings.Join(labels, ",") + "}"
		}
		out = append(out, series)
	}
	return out
}

// /metrics keeps every metric family (name and type) and every series
// (name and label set) the hand-written exposition had: the golden was
// taken from it (go test -run TestMetricsKeepSeries -update-series, on
// the commit before client_golang), and it adds the Go runtime and
// process collectors. No patient data reaches it.
func TestMetricsKeepSeries(t *testing.T) {
	body := metricsDaemon(t)
	for _, phi := range metricsPHI {
		if strings.Contains(body, phi) {
			t.Errorf("/metrics carries patient data %q", phi)
		}
	}
	got := seriesOf(body)
	golden := filepath.Join("testdata", "metrics-series.golden")
	if *updateSeries {
		var keep []string
		for _, s := range got {
			if !strings.HasPrefix(strings.TrimPrefix(s, "# TYPE "), "ehrbridge_") {
				continue
			}
			keep = append(keep, s)
		}
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(strings.Join(keep, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, s := range got {
		have[s] = true
	}
	for line := range strings.Lines(string(b)) {
		if want := strings.TrimSpace(line); want != "" && !have[want] {
			t.Errorf("/metrics lost %s", want)
		}
	}
	// The runtime and process collectors: heap, goroutines, GC, and (where
	// the platform reports them) file descriptors and resident memory.
	wantRuntime := []string{"# TYPE go_memstats_heap_inuse_bytes gauge", "# TYPE go_goroutines gauge", "# TYPE go_gc_duration_seconds summary"}
	if runtime.GOOS == "linux" {
		wantRuntime = append(wantRuntime, "# TYPE process_open_fds gauge", "# TYPE process_resident_memory_bytes gauge")
	}
	for _, want := range wantRuntime {
		if !have[want] {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

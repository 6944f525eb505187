package admin

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ehrbridge/ehrbridge/internal/pipeline"
)

// /status and /metrics show the CRM breaker: its state, since when, how
// often it opened and the probes sent, with the reason as a CRM error
// kind and code.
func TestBreakerStatusAndMetrics(t *testing.T) {
	since := time.Date(2026, 12, 7, 17, 0, 0, 0, time.UTC)
	b := pipeline.BreakerStatus{Enabled: true, State: pipeline.BreakerOpen, Since: since, Opened: 2, Probes: 5,
		Next: since.Add(8 * time.Second), Interval: 8 * time.Second, Reason: "crm transient error SERVER_UNAVAILABLE (HTTP 503)"}
	js, err := json.Marshal(breakerStatusOf(b))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"state":"open","since":"2026-12-07T17:00:00Z","opened":2,"probes":5,"next_probe":"2026-12-07T17:00:08Z","probe_interval":"8s","reason":"crm transient error SERVER_UNAVAILABLE (HTTP 503)"}`
	if string(js) != want {
		t.Errorf("/status breaker\n got %s\nwant %s", js, want)
	}
	text := exposition(t, func(ch chan<- prometheus.Metric) { breakerMetrics(ch, b) })
	for _, want := range []string{
		"ehrbridge_crm_breaker_state{state=\"closed\"} 0\n",
		"ehrbridge_crm_breaker_state{state=\"open\"} 1\n",
		"ehrbridge_crm_breaker_state{state=\"probing\"} 0\n",
		"ehrbridge_crm_breaker_opened_total 2\n",
		"ehrbridge_crm_breaker_probes_total 5\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	if v := seriesValue(t, text, "ehrbridge_crm_breaker_state_since_timestamp_seconds"); v != 1796662800 {
		t.Errorf("breaker since %v, want 1796662800", v)
	}
	if off := exposition(t, func(ch chan<- prometheus.Metric) { breakerMetrics(ch, pipeline.BreakerStatus{}) }); off != "" {
		t.Errorf("metrics of a disabled breaker:\n%s", off)
	}
	closed := breakerStatusOf(pipeline.BreakerStatus{Enabled: true, Opened: 2, Probes: 5, Since: since})
	if closed.State != "closed" || closed.NextProbe != nil || closed.ProbeInterval != "" {
		t.Errorf("closed breaker in /status: %+v", closed)
	}
	if off := breakerStatusOf(pipeline.BreakerStatus{}); off.State != "disabled" {
		t.Errorf("no breaker in /status: %+v", off)
	}
}

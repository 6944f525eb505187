package daemon

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

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
	var buf bytes.Buffer
	writeBreakerMetrics(&buf, b)
	for _, want := range []string{
		"ehrbridge_crm_breaker_state{state=\"closed\"} 0\n",
		"ehrbridge_crm_breaker_state{state=\"open\"} 1\n",
		"ehrbridge_crm_breaker_state{state=\"probing\"} 0\n",
		"ehrbridge_crm_breaker_state_since_timestamp_seconds 1796662800\n",
		"ehrbridge_crm_breaker_opened_total 2\n",
		"ehrbridge_crm_breaker_probes_total 5\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, buf.String())
		}
	}
	closed := breakerStatusOf(pipeline.BreakerStatus{Enabled: true, Opened: 2, Probes: 5, Since: since})
	if closed.State != "closed" || closed.NextProbe != nil || closed.ProbeInterval != "" {
		t.Errorf("closed breaker in /status: %+v", closed)
	}
	if off := breakerStatusOf(pipeline.BreakerStatus{}); off.State != "disabled" {
		t.Errorf("no breaker in /status: %+v", off)
	}
}

package admin

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

func TestCommitStatusAndMetrics(t *testing.T) {
	var s checkpoint.CommitStats
	s.Commits, s.Appends, s.Failures, s.Total = 10, 40, 1, 250*time.Millisecond
	// 7 commits within 50 ms, 9 within 100 ms, all 10 within a second.
	for i, b := range checkpoint.CommitBounds {
		switch {
		case b < 100*time.Millisecond:
			s.Buckets[i] = 7
		case b < time.Second:
			s.Buckets[i] = 9
		default:
			s.Buckets[i] = 10
		}
	}
	c := commitStatusOf(s)
	if c.Count != 10 || c.Appends != 40 || c.Failures != 1 || c.MeanBatch != 4 || c.MeanMs != 25 {
		t.Errorf("commitStatusOf = %+v", c)
	}
	if c.Over100ms != 1 || s.Buckets[indexOf(t, 100*time.Millisecond)] != 9 {
		t.Errorf("over_100ms = %d, want 1", c.Over100ms)
	}
	if z := commitStatusOf(checkpoint.CommitStats{}); z != (commitStatus{}) {
		t.Errorf("no commits: %+v", z)
	}

	text := exposition(t, func(ch chan<- prometheus.Metric) { commitMetrics(ch, s) })
	for _, want := range []string{
		`ehrbridge_checkpoint_commit_duration_seconds_bucket{le="0.00025"} 7`,
		`ehrbridge_checkpoint_commit_duration_seconds_bucket{le="0.1"} 9`,
		`ehrbridge_checkpoint_commit_duration_seconds_bucket{le="1"} 10`,
		`ehrbridge_checkpoint_commit_duration_seconds_bucket{le="+Inf"} 10`,
		"ehrbridge_checkpoint_commit_duration_seconds_sum 0.25\n",
		"ehrbridge_checkpoint_commit_duration_seconds_count 10\n",
		"ehrbridge_checkpoint_committed_appends_total 40\n",
		"ehrbridge_checkpoint_commit_failures_total 1\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
}

func indexOf(t *testing.T, d time.Duration) int {
	t.Helper()
	for i, b := range checkpoint.CommitBounds {
		if b == d {
			return i
		}
	}
	t.Fatalf("%v is not a commit bucket bound", d)
	return 0
}

// Per-state counts tell synced (done) from ignored (skipped) in /metrics
// and on the page, with done records that had warnings counted too (by
// the pipeline, since the start: the log keeps no such counter).
func TestSkippedAndWarnedShown(t *testing.T) {
	st := checkpoint.Stats{States: map[checkpoint.State]int64{checkpoint.Done: 7, checkpoint.Skipped: 3, checkpoint.Dead: 1, checkpoint.Received: 2}}
	text := exposition(t, func(ch chan<- prometheus.Metric) { recordMetrics(ch, st) })
	for _, want := range []string{`ehrbridge_records{state="done"} 7`, `ehrbridge_records{state="skipped"} 3`,
		"ehrbridge_backlog 2\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}

	p := &CRM{Done: 5, Skipped: 4, Warned: 2}
	text = exposition(t, func(ch chan<- prometheus.Metric) { pipelineMetrics(ch, p) })
	for _, want := range []string{`ehrbridge_pipeline_records_total{outcome="done"} 5`, `ehrbridge_pipeline_records_total{outcome="skipped"} 4`,
		"ehrbridge_pipeline_records_with_warnings_total 2\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}

	data := pageDataOf(st, p.Warned)
	now := time.Now()
	data.Records = []*checkpoint.Record{
		{ID: 1, State: checkpoint.Skipped, Type: "VXU^V04", Reason: "no mapping for VXU^V04", Received: now},
		{ID: 2, State: checkpoint.Done, Type: "ADT^A08", Reason: checkpoint.WarningsReason([]string{"adt/visit.AdmitDate__c: not a valid timestamp"}), Received: now},
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, data); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"skipped 3", "done 7", "Done with warnings (applied, fields left out): 2", `<td class="skipped">skipped</td>`,
		"no mapping for VXU^V04", `<td class="warned">done, with warnings</td>`, "AdmitDate__c: not a valid timestamp"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("page lacks %q:\n%s", want, buf.String())
		}
	}
}

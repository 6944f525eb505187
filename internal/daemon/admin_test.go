package daemon

import (
	"bytes"
	"strings"
	"testing"
	"time"

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

	var buf bytes.Buffer
	writeCommitMetrics(&buf, s)
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
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, buf.String())
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

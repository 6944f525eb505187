package config

import (
	"strings"
	"testing"
	"time"
)

// writeback.target.mllp_max_backoff defaults to 30s with an MLLP target and
// reads a duration; a bare number is refused like every duration.
func TestWritebackMLLPMaxBackoff(t *testing.T) {
	base := "data_dir: /var/lib/ehrbridge\ncrm:\n  sandbox:\n    embed: true\nwriteback:\n  target:\n    mllp: 127.0.0.1:6661\n"
	for _, tc := range []struct {
		extra string
		want  time.Duration
	}{{"", 30 * time.Second}, {"    mllp_max_backoff: 5m\n", 5 * time.Minute}} {
		c, err := Parse("wb.yaml", []byte(base+tc.extra), lookupTestEnv)
		if err != nil {
			t.Fatalf("%q: %v", tc.extra, err)
		}
		if got := c.Writeback.Target.MLLPMaxBackoff.Std(); got != tc.want {
			t.Errorf("%q: mllp_max_backoff = %v, want %v", tc.extra, got, tc.want)
		}
	}
	if _, err := Parse("wb.yaml", []byte(base+"    mllp_max_backoff: 30\n"), lookupTestEnv); err == nil {
		t.Error("a bare number was accepted as mllp_max_backoff")
	}
}

// writeback.target.ae_max_attempts defaults to 10 with an MLLP target,
// is bounded, and applies to MLLP only.
func TestWritebackAEMaxAttempts(t *testing.T) {
	base := "data_dir: /var/lib/ehrbridge\ncrm:\n  sandbox:\n    embed: true\nwriteback:\n  target:\n"
	for _, tc := range []struct {
		extra string
		want  int
		err   string
	}{
		{"    mllp: 127.0.0.1:6661\n", 10, ""},
		{"    mllp: 127.0.0.1:6661\n    ae_max_attempts: 3\n", 3, ""},
		{"    mllp: 127.0.0.1:6661\n    ae_max_attempts: 5000\n", 0, "writeback.target.ae_max_attempts: must be between 1 and 1000"},
		{"    dir: /tmp/outbox\n    ae_max_attempts: 3\n", 0, "writeback.target.ae_max_attempts: applies to writeback.target.mllp only"},
	} {
		c, err := Parse("wb.yaml", []byte(base+tc.extra), lookupTestEnv)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.extra, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.extra, err)
		case c.Writeback.Target.AEMaxAttempts != tc.want:
			t.Errorf("%q: ae_max_attempts = %d, want %d", tc.extra, c.Writeback.Target.AEMaxAttempts, tc.want)
		}
	}
}

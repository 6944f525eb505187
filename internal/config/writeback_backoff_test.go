package config

import (
	"testing"
	"time"
)

// writeback.target.mllp_max_backoff defaults to 30s with an MLLP target and
// reads a duration; a bare number is refused like every duration.
func TestWritebackMLLPMaxBackoff(t *testing.T) {
	base := "data_dir: /var/lib/ehrbridge\ncrm:\n  sandbox:\n    embed: true\nwriteback:\n  target:\n    mllp: ehr.example:6661\n"
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

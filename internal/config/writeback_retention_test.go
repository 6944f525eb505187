package config

import (
	"strings"
	"testing"
	"time"
)

// writeback.target.retention reads a duration of at least 1h, applies to
// a file drop (the default outbox too) and is off by default.
func TestWritebackRetention(t *testing.T) {
	base := "data_dir: /var/lib/ehrbridge\ncrm:\n  sandbox:\n    embed: true\nwriteback:\n  target:\n"
	for _, tc := range []struct {
		extra string
		want  time.Duration
		err   string
	}{
		{"    dir: /tmp/outbox\n", 0, ""},
		{"    dir: /tmp/outbox\n    retention: 168h\n", 168 * time.Hour, ""},
		{"    retention: 48h\n", 48 * time.Hour, ""},
		{"    dir: /tmp/outbox\n    retention: 10m\n", 0, "writeback.target.retention: must be at least 1h"},
		{"    mllp: 127.0.0.1:6661\n    retention: 48h\n", 0, "writeback.target.retention: applies to writeback.target.dir (the file drop) only"},
	} {
		c, err := Parse("wb.yaml", []byte(base+tc.extra), lookupTestEnv)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.extra, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.extra, err)
		case c.Writeback.Target.Retention.Std() != tc.want:
			t.Errorf("%q: retention = %v, want %v", tc.extra, c.Writeback.Target.Retention.Std(), tc.want)
		}
	}
}

package problems

import "testing"

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"PID", "PID", 0}, {"PDI", "PID", 1}, {"PDI", "PD1", 1}, {"ZZZ", "PID", 3}, {"OBZ", "OBX", 1}, {"PV", "PV1", 1},
		{"listen", "lsiten", 1}, {"batch_size", "batchsize", 1}, {"abc", "", 3}, {"", "ab", 2},
	} {
		if got := EditDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

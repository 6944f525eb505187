package admin

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// collectFunc is a collector of the daemon's families made of one
// function, for tests of a part of daemonCollector.
type collectFunc func(chan<- prometheus.Metric)

func (f collectFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range daemonDescs {
		ch <- d
	}
}

func (f collectFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

// exposition is what collect reports, in the text format /metrics serves,
// gathered by a pedantic registry (which checks every metric against its
// description).
func exposition(t *testing.T, collect func(chan<- prometheus.Metric)) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectFunc(collect))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

// seriesValue is the value of series in an exposition (the exposition
// writes numbers as Go's shortest %g: 1.7966628e+09 for a timestamp).
func seriesValue(t *testing.T, exposition, series string) float64 {
	t.Helper()
	for line := range strings.Lines(exposition) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return v
		}
	}
	t.Fatalf("no %s in:\n%s", series, exposition)
	return 0
}

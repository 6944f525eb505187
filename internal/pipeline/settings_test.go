package pipeline

import (
	"reflect"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// TestSettingsValidate checks the defaults crm.pipeline gets, also for a
// value written as 0, and the ranges it is held to.
func TestSettingsValidate(t *testing.T) {
	var s Settings
	var got configvalue.Problems
	s.Validate(&got)
	if len(got) != 0 || s.DrainTimeout != DefaultDrainTimeout || s.ProbeMax != DefaultProbeMax || s.BatchSize != 0 || s.Linger != 0 {
		t.Errorf("empty section: %+v, problems %q; want the drain and probe defaults, batch size and linger left to New", s, got)
	}
	s = Settings{BatchSize: 2001, Linger: configvalue.Duration(-time.Second), DrainTimeout: configvalue.Duration(11 * time.Minute), ProbeMax: configvalue.Duration(time.Millisecond)}
	got = nil
	s.Validate(&got)
	want := configvalue.Problems{"batch_size: must be between 1 and 2000", "linger: must be between 0s and 1m",
		"drain_timeout: must be between 0s and 10m", "probe_max: must be between 1s and 10m"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%q\nwant\n%q", got, want)
	}
}

// TestSettingsApply checks that crm.pipeline's values reach the options
// as written (the daemon used to copy them one by one, converting each)
// and that Apply leaves the options it does not tune alone.
func TestSettingsApply(t *testing.T) {
	o := Options{EchoPrefix: "EHRB-", ProbeMin: 2 * time.Second}
	Settings{BatchSize: 50, Linger: configvalue.Duration(3 * time.Second), DrainTimeout: configvalue.Duration(time.Minute),
		ProbeMax: configvalue.Duration(time.Minute)}.Apply(&o)
	if o.BatchSize != 50 || o.Linger != 3*time.Second || o.ProbeMax != time.Minute || o.EchoPrefix != "EHRB-" || o.ProbeMin != 2*time.Second {
		t.Errorf("options = %+v, want batch 50, linger 3s, probe max 1m and the rest kept", o)
	}
}

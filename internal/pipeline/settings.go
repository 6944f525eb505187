package pipeline

import (
	"time"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// Settings tunes the pipeline as the config file's crm.pipeline section
// gives it: declared once, here (internal/config uses it as its
// PipelineConfig), with its defaults and its checks. [Settings.Apply]
// hands it to [Options].
type Settings struct {
	// BatchSize is how many records one round sends together; default 200.
	BatchSize int `yaml:"batch_size"`
	// Linger is how long a round waits after an idle spell for more
	// records, so that a trickle shares requests; default 1s.
	Linger configvalue.Duration `yaml:"linger"`
	// DrainTimeout is how long, on stop, the pipeline goes on sending the
	// records already ready after intake has closed; default 10s. What is
	// left stays in the log for the next start. The daemon, which stops
	// intake, applies it.
	DrainTimeout configvalue.Duration `yaml:"drain_timeout"`
	// ProbeMax caps the interval of the probes the pipeline sends while
	// the CRM fails transiently (no batch is sent until one is answered;
	// the interval starts at 1s and doubles); default 30s.
	ProbeMax configvalue.Duration `yaml:"probe_max"`
}

// Defaults of the settings that Validate fills in (BatchSize and Linger
// left at 0 take [New]'s defaults).
const (
	DefaultDrainTimeout = configvalue.Duration(10 * time.Second)
	DefaultProbeMax     = configvalue.Duration(30 * time.Second)
)

// Validate fills in the defaults of DrainTimeout and ProbeMax (also when
// written as 0) and reports the settings out of range; keys are relative
// to the crm.pipeline section.
func (s *Settings) Validate(r configvalue.Reporter) {
	if s.BatchSize < 0 || s.BatchSize > 2000 {
		r.Add("batch_size", "must be between 1 and 2000")
	}
	if s.Linger < 0 || s.Linger > configvalue.Duration(time.Minute) {
		r.Add("linger", "must be between 0s and 1m")
	}
	if s.DrainTimeout == 0 {
		s.DrainTimeout = DefaultDrainTimeout
	} else if s.DrainTimeout < 0 || s.DrainTimeout > configvalue.Duration(10*time.Minute) {
		r.Add("drain_timeout", "must be between 0s and 10m")
	}
	if s.ProbeMax == 0 {
		s.ProbeMax = DefaultProbeMax
	} else if s.ProbeMax < configvalue.Duration(time.Second) || s.ProbeMax > configvalue.Duration(10*time.Minute) {
		r.Add("probe_max", "must be between 1s and 10m")
	}
}

// Apply sets the options the settings tune (BatchSize, Linger, ProbeMax);
// DrainTimeout is the caller's, which drains on stop.
func (s Settings) Apply(o *Options) {
	o.BatchSize = s.BatchSize
	o.Linger = s.Linger.Std()
	o.ProbeMax = s.ProbeMax.Std()
}

package pipeline

import (
	"sync"
	"sync/atomic"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// Settled is what the pipeline settled for one source's records since it
// started: the admin console's per-source counts.
type Settled struct {
	Done, Retried, Dead, Skipped int64
}

// noteSource is the source of the write-back's note records
// (internal/writeback appends them as "crm").
const noteSource = "crm"

// sourceCounts counts settlements by the records' source.
type sourceCounts struct {
	m sync.Map // source name → *settledCounters
}

type settledCounters struct {
	done, retried, dead, skipped atomic.Int64
}

func (s *sourceCounts) add(source string, st checkpoint.State) {
	v, ok := s.m.Load(source)
	if !ok {
		v, _ = s.m.LoadOrStore(source, &settledCounters{})
	}
	c := v.(*settledCounters)
	switch st {
	case checkpoint.Done:
		c.done.Add(1)
	case checkpoint.Retrying:
		c.retried.Add(1)
	case checkpoint.Dead:
		c.dead.Add(1)
	case checkpoint.Skipped:
		c.skipped.Add(1)
	}
}

// BySource returns what was settled since start for each source's records
// (sources named as in the log: an MLLP or FHIR source's name, "crm" for
// notes).
func (p *Pipeline) BySource() map[string]Settled {
	out := map[string]Settled{}
	p.bySource.m.Range(func(k, v any) bool {
		c := v.(*settledCounters)
		out[k.(string)] = Settled{Done: c.done.Load(), Retried: c.retried.Load(), Dead: c.dead.Load(), Skipped: c.skipped.Load()}
		return true
	})
	return out
}

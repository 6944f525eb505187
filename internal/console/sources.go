package console

import (
	"sync"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
)

// maxSourceScan bounds the records the dashboard reads to count each
// source's unfinished and dead records: a backlog beyond it is shown as
// "at least".
const maxSourceScan = 50000

// sourceCache keeps the last count for a few seconds: every open
// dashboard refreshes, and the count reads records.
type sourceCache struct {
	mu   sync.Mutex
	at   time.Time
	data map[string]*sourceLog
}

// sourceLog is one source's unfinished and dead records in the log.
type sourceLog struct {
	Waiting, InProgress, Retrying, Held, Dead int64
	// AtLeast: the count stopped at maxSourceScan records.
	AtLeast   bool
	OldestAge string // of its oldest unfinished record
	oldest    time.Time
}

var sourceCacheTTL = 5 * time.Second

// sourceStates counts, per source, the records still to finish (waiting,
// in progress, retrying, held) and the dead ones, from the log's pending
// and dead indexes: what each source has outstanding. Done and skipped
// are counted for the whole log (their indexes can hold millions).
func (c *Console) sourceStates() map[string]*sourceLog {
	c.srcCache.mu.Lock()
	defer c.srcCache.mu.Unlock()
	now := c.opts.Now()
	if c.srcCache.data != nil && now.Sub(c.srcCache.at) < sourceCacheTTL {
		return c.srcCache.data
	}
	by := map[string]*sourceLog{}
	scanned, capped := 0, false
	for _, st := range []checkpoint.State{checkpoint.Received, checkpoint.Dead} {
		// List(Received) walks the pending index: received, in progress
		// and retrying alike.
		for after := uint64(0); !capped; {
			rs, err := c.opts.Log.List(st, after, 1000)
			if err != nil || len(rs) == 0 {
				break
			}
			for _, r := range rs {
				after = r.ID
				scanned++
				n := by[r.Source]
				if n == nil {
					n = &sourceLog{}
					by[r.Source] = n
				}
				switch {
				case r.State == checkpoint.Dead:
					n.Dead++
				case r.State == checkpoint.InProgress:
					n.InProgress++
				case r.State == checkpoint.Retrying && connectors.HeldReason(r.Reason):
					n.Held++
				case r.State == checkpoint.Retrying:
					n.Retrying++
				default:
					n.Waiting++
				}
				if r.State != checkpoint.Dead && (n.oldest.IsZero() || r.Received.Before(n.oldest)) {
					n.oldest = r.Received
				}
			}
			capped = scanned >= maxSourceScan
		}
	}
	out := map[string]*sourceLog{}
	for src, n := range by {
		n.AtLeast = capped
		if !n.oldest.IsZero() {
			n.OldestAge = shortDuration(now.Sub(n.oldest))
		}
		out[src] = n
	}
	c.srcCache.at, c.srcCache.data = now, out
	return out
}

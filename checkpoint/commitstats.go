package checkpoint

import (
	"sync/atomic"
	"time"
)

// CommitBounds are the upper bounds of CommitStats.Buckets, from a fast
// SSD's fsync to a failing disk's.
var CommitBounds = [...]time.Duration{
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
}

// CommitStats describes the group commits that made appends durable since
// the log was opened: the fsynced transactions every acknowledgment waits
// for. Other writes (claims, state changes, retention) are not counted.
type CommitStats struct {
	// Commits is the number of commits, failed ones included.
	Commits uint64
	// Appends is the number of appends they carried, retransmits and
	// conflicts included; Appends ÷ Commits is the mean batch.
	Appends uint64
	// Failures counts commits that failed: none of their appends was
	// made durable and each appender got the error.
	Failures uint64
	// Total is the time all commits took together.
	Total time.Duration
	// Buckets[i] counts the commits that took at most CommitBounds[i]
	// (cumulative, as Prometheus histograms count); Commits counts all.
	Buckets [len(CommitBounds)]uint64
}

// commitCounters are kept with atomics: the committing goroutine writes
// them once per commit, readers (metrics) never block it.
type commitCounters struct {
	commits, appends, failures, nanos atomic.Uint64
	buckets                           [len(CommitBounds)]atomic.Uint64 // not cumulative
}

func (c *commitCounters) observe(batch int, d time.Duration, failed bool) {
	c.commits.Add(1)
	c.appends.Add(uint64(batch))
	if failed {
		c.failures.Add(1)
	}
	c.nanos.Add(uint64(max(d, 0)))
	for i, b := range CommitBounds {
		if d <= b {
			c.buckets[i].Add(1)
			break
		}
	}
}

// CommitStats returns the commit counters since Open. It does not touch
// the file and is safe to call at any rate, also on a closed log.
func (l *Log) CommitStats() CommitStats {
	c := &l.commitStats
	var s CommitStats
	var cum uint64
	for i := range c.buckets {
		cum += c.buckets[i].Load()
		s.Buckets[i] = cum
	}
	// The buckets are read first: observe counts a commit in commits
	// before its bucket, so Commits, read after them, is never below the
	// last bucket, as Prometheus requires of the +Inf bucket.
	s.Failures = c.failures.Load()
	s.Appends = c.appends.Load()
	s.Total = time.Duration(c.nanos.Load())
	s.Commits = c.commits.Load()
	return s
}

// Over returns how many commits took longer than d, counted to the first
// of CommitBounds at or above d (exactly d when d is one of them); with d
// above every bound, the commits over the last one.
func (s CommitStats) Over(d time.Duration) uint64 {
	i := 0
	for i < len(CommitBounds)-1 && CommitBounds[i] < d {
		i++
	}
	return s.Commits - s.Buckets[i]
}

package checkpoint

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// CommitStats and OnCommit count every group commit of appends, what it
// carried, and the failed ones; the histogram is cumulative and ends at
// Commits.
func TestCommitStats(t *testing.T) {
	var mu sync.Mutex
	var seen []int
	var took time.Duration
	l, _ := openTest(t, Options{OnCommit: func(n int, d time.Duration) {
		mu.Lock()
		seen = append(seen, n)
		took += d
		mu.Unlock()
	}})
	if s := l.CommitStats(); s != (CommitStats{}) {
		t.Fatalf("stats of a new log = %+v, want zero", s)
	}
	mustAppend(t, l, entry("a", "A", "one"))
	mustAppend(t, l, entry("a", "A", "one")) // a retransmit is a commit too
	mustAppend(t, l, entry("a", "A", "two")) // and so is a conflict
	s := l.CommitStats()
	if s.Commits != 3 || s.Appends != 3 || s.Failures != 0 {
		t.Errorf("after 3 appends: %+v", s)
	}

	failNext = func(e *Entry) bool { return e.Key == "poison" }
	_, err := l.Append(context.Background(), entry("poison", "B", "x"))
	failNext = nil
	if err == nil {
		t.Fatal("the poisoned append succeeded")
	}

	// Concurrent appends share commits: fewer commits than appends. A
	// commit is counted before its appenders have their answers.
	var wg sync.WaitGroup
	var answered atomic.Uint64
	for i := range 64 {
		wg.Go(func() {
			mustAppend(t, l, entry(fmt.Sprintf("c%d", i), "C", "p"))
			n := answered.Add(1)
			if got := l.CommitStats().Appends; got < 4+n {
				t.Errorf("%d appends answered, CommitStats counts %d", 4+n, got)
			}
		})
	}
	wg.Wait()

	s = l.CommitStats()
	mu.Lock()
	defer mu.Unlock()
	if s.Failures != 1 {
		t.Errorf("failures = %d, want 1", s.Failures)
	}
	if s.Appends != 3+1+64 {
		t.Errorf("appends = %d, want %d", s.Appends, 3+1+64)
	}
	if s.Commits != uint64(len(seen)) || s.Commits < 5 || s.Commits > 4+64 {
		t.Errorf("commits = %d, OnCommit calls %d", s.Commits, len(seen))
	}
	sum := 0
	for _, n := range seen {
		if n < 1 {
			t.Errorf("OnCommit with %d appends", n)
		}
		sum += n
	}
	if uint64(sum) != s.Appends {
		t.Errorf("OnCommit saw %d appends, CommitStats %d", sum, s.Appends)
	}
	if s.Total != took || s.Total <= 0 {
		t.Errorf("total %v, OnCommit durations add up to %v", s.Total, took)
	}
	for i := 1; i < len(s.Buckets); i++ {
		if s.Buckets[i] < s.Buckets[i-1] {
			t.Fatalf("buckets not cumulative: %v", s.Buckets)
		}
	}
	if last := s.Buckets[len(s.Buckets)-1]; last > s.Commits {
		t.Errorf("last bucket %d above commits %d", last, s.Commits)
	}
}

func TestCommitCountersBuckets(t *testing.T) {
	var l Log
	for _, d := range []time.Duration{0, 250 * time.Microsecond, 251 * time.Microsecond, 3 * time.Millisecond, 2 * time.Second} {
		l.commitStats.observe(2, d, false)
	}
	s := l.CommitStats()
	want := [len(CommitBounds)]uint64{2, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4}
	if s.Buckets != want || s.Commits != 5 || s.Appends != 10 {
		t.Errorf("stats = %+v, want buckets %v, 5 commits, 10 appends", s, want)
	}
}

func TestCommitStatsOver(t *testing.T) {
	var l Log
	for _, d := range []time.Duration{100 * time.Microsecond, 3 * time.Millisecond, 100 * time.Millisecond, 101 * time.Millisecond, 2 * time.Second} {
		l.commitStats.observe(1, d, false)
	}
	s := l.CommitStats()
	for _, c := range []struct {
		d    time.Duration
		want uint64
	}{
		{0, 4}, // counted to the first bound, 250 µs: one commit within it
		{250 * time.Microsecond, 4},
		{2 * time.Millisecond, 4},
		{3 * time.Millisecond, 3}, // counted to 5 ms
		{100 * time.Millisecond, 2},
		{time.Second, 1},
		{time.Hour, 1}, // over the last bound
	} {
		if got := s.Over(c.d); got != c.want {
			t.Errorf("Over(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}

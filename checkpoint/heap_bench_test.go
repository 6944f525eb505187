package checkpoint

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkHeapQueued measures the Go heap a log with a backlog costs: 10
// thousand and a million records appended and not yet done (an outage of
// the CRM), each log reopened (a restart with the backlog) and read as the
// daemon reads it at start: Stats (/metrics, /status) and a first Claim
// of a batch, which puts the first new records in their lanes. It reports
// the heap in use after a GC with each log open, and their ratio (goal:
// at most 1.5); appended-* are the same right after the appends, the log
// not reopened. Those grow with the pages written since the open, not
// with the queue as such: bbolt's free list remembers which transaction
// allocated each page (freelist allocs, a map entry per page until the
// page is freed), some 18-23 bytes a 4 KB page; a reopen starts it
// empty. The records are in the file, which bbolt maps; no index of
// them is kept on the heap.
//
// Filling the million takes a while (no fsync): run it alone, once:
//
//	go test -run '^$' -bench HeapQueued -benchtime 1x ./checkpoint
func BenchmarkHeapQueued(b *testing.B) {
	dir := b.TempDir()
	sizes := []int{10_000, 1_000_000}
	paths := map[int]string{}
	appended := map[int]uint64{}
	for _, n := range sizes {
		paths[n] = filepath.Join(dir, fmt.Sprint(n), FileName)
		appended[n] = fillQueued(b, paths[n], n)
	}
	heap := map[int]uint64{}
	for b.Loop() {
		for _, n := range sizes {
			heap[n] = queuedHeap(b, paths[n], n)
		}
	}
	b.ReportMetric(float64(heap[10_000])/(1<<20), "heap-MB-10k")
	b.ReportMetric(float64(heap[1_000_000])/(1<<20), "heap-MB-1M")
	b.ReportMetric(float64(heap[1_000_000])/float64(heap[10_000]), "ratio-1M/10k")
	b.ReportMetric(float64(appended[10_000])/(1<<20), "appended-heap-MB-10k")
	b.ReportMetric(float64(appended[1_000_000])/(1<<20), "appended-heap-MB-1M")
	b.ReportMetric(float64(appended[1_000_000])/float64(appended[10_000]), "appended-ratio")
}

// fillQueued appends n records to a new log at path, from 64 writers (as
// 64 connections would), in 50,000 lanes (patients), without fsync, and
// returns the heap in use after a GC with the log still open (what the
// appends left behind, before a restart).
func fillQueued(b *testing.B, path string, n int) uint64 {
	b.Helper()
	l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler), UnsafeNoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	appendQueued(b, l, n)
	return heapInUse(l)
}

// appendQueued appends n records to l from 64 writers.
func appendQueued(tb testing.TB, l *Log, n int) {
	tb.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				key := fmt.Sprintf("bench|APP|FAC|%d", i)
				e := Entry{Key: key, Source: "bench", Kind: "hl7v2", Type: "ADT^A01", Hash: sha256.Sum256([]byte(key)),
					Lane: fmt.Sprintf("MRN%d^HOSP", i%50000), Payload: benchPayload, Ack: make([]byte, 160)}
				if _, err := l.Append(context.Background(), e); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
}

// heapInUse is the heap in use after a GC, l kept alive through it.
func heapInUse(l *Log) uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(l)
	return ms.HeapInuse
}

// queuedHeap opens the log at path, reads it as a starting daemon does,
// and returns the heap in use after a GC with the log open.
func queuedHeap(b *testing.B, path string, n int) uint64 {
	b.Helper()
	l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler), UnsafeNoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	st, err := l.Stats()
	if err != nil {
		b.Fatal(err)
	}
	if q := st.States[Received] + st.States[InProgress]; q != int64(n) {
		b.Fatalf("%d records queued, want %d", q, n)
	}
	claimed, err := l.Claim(200)
	if err != nil || len(claimed) == 0 {
		b.Fatalf("claim: %d records, %v", len(claimed), err)
	}
	claimed = nil
	return heapInUse(l)
}

package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// GoalOpen is the most time from start to a ready checkpoint log, on a
// cold page cache, for a log of DefaultOpenSize.
const GoalOpen = 2 * time.Second

// DefaultOpenSize is the log size OpenBench builds: a hospital at 1M
// messages a day with 7 days' retention holds several GB.
const DefaultOpenSize = 2 << 30

// OpenOptions configure OpenBench.
type OpenOptions struct {
	// Size is how large a log to build; default DefaultOpenSize.
	Size int64
	// Dir is where the log is built (and removed again); default the
	// system temp directory.
	Dir string
	// Runs is how many cold opens each layout gets; default 3.
	Runs int
}

// OpenResult holds the figures OpenBench prints.
type OpenResult struct {
	Size    int64
	Records int
	// Rebuild is the median cold open of the log as written before issue
	// 27 (no free list in the file: bbolt walks every page at open).
	Rebuild time.Duration
	// Kept is the median cold open with the free list kept in the file,
	// as checkpoint.Open now writes it.
	Kept time.Duration
	// Cold reports whether the page cache was dropped before each open.
	Cold bool
}

// OpenBench builds a checkpoint log of opts.Size, then measures the time
// from checkpoint.Open to a ready log (its counts read, as the daemon does
// before it listens) on a cold page cache: first in the layout earlier
// releases wrote (no free list in the file), then in today's.
func OpenBench(ctx context.Context, opts OpenOptions, out io.Writer) (OpenResult, error) {
	if opts.Size <= 0 {
		opts.Size = DefaultOpenSize
	}
	if opts.Runs <= 0 {
		opts.Runs = 3
	}
	dir, err := os.MkdirTemp(opts.Dir, "ehrbridge-bench-open-")
	if err != nil {
		return OpenResult{}, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, checkpoint.FileName)
	res := OpenResult{Cold: true}
	start := time.Now()
	if res.Records, err = buildLog(ctx, path, opts.Size); err != nil {
		return res, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return res, err
	}
	res.Size = fi.Size()
	fmt.Fprintf(out, "built a log of %.2f GB, %d records, in %s\n", float64(res.Size)/1e9, res.Records, time.Since(start).Round(time.Second))

	var rebuild, kept []time.Duration
	for i := 0; i < opts.Runs; i++ {
		// The layout before issue 27: a commit with NoFreelistSync drops
		// the free list from the file.
		if err := dropFreelist(path); err != nil {
			return res, err
		}
		d, cold, err := timeOpen(path)
		if err != nil {
			return res, err
		}
		res.Cold = res.Cold && cold
		rebuild = append(rebuild, d)
		// That open committed: the free list is in the file again.
		d, cold, err = timeOpen(path)
		if err != nil {
			return res, err
		}
		res.Cold = res.Cold && cold
		kept = append(kept, d)
		fmt.Fprintf(out, "run %d: free list rebuilt %s, kept %s\n", i+1, rebuild[i].Round(time.Millisecond), kept[i].Round(time.Millisecond))
	}
	res.Rebuild, res.Kept = median(rebuild), median(kept)
	cache := "cold page cache"
	if !res.Cold {
		cache = "WARM page cache (could not drop it)"
	}
	fmt.Fprintf(out, "open to ready, %.2f GB log, %s, median of %d:\n", float64(res.Size)/1e9, cache, opts.Runs)
	fmt.Fprintf(out, "  free list rebuilt at open (before): %s\n", res.Rebuild.Round(time.Millisecond))
	fmt.Fprintf(out, "  free list kept in the file (now):   %s  (%.4f of before)\n", res.Kept.Round(time.Millisecond), float64(res.Kept)/float64(max(res.Rebuild, 1)))
	verdict := "PASS"
	if res.Kept > GoalOpen {
		verdict = "MISS"
	}
	fmt.Fprintf(out, "  goal: ready within %s: %s\n", GoalOpen, verdict)
	return res, nil
}

// buildLog appends ADT-sized records from 32 writers until the file
// reaches size.
func buildLog(ctx context.Context, path string, size int64) (int, error) {
	l, err := checkpoint.Open(path, checkpoint.Options{UnsafeNoSync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return 0, err
	}
	defer l.Close()
	payload := make([]byte, 2048)
	for i := range payload {
		payload[i] = byte('A' + rand.IntN(26))
	}
	var (
		mu    sync.Mutex
		n     int
		next  uint64
		first error
	)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := append([]byte(nil), payload...)
			for ctx.Err() == nil {
				mu.Lock()
				if first != nil || n%4096 == 0 && n > 0 && fileSize(path) >= size {
					mu.Unlock()
					return
				}
				next++
				id := next
				n++
				mu.Unlock()
				binary.BigEndian.PutUint64(p, id)
				e := checkpoint.Entry{Key: fmt.Sprintf("bench|HOSP|%d", id), Source: "bench", Kind: checkpoint.KindHL7v2, Type: "ADT^A08",
					Hash: sha256.Sum256(p), Lane: fmt.Sprintf("HOSP|%d", id%50000), Payload: p, Ack: []byte("MSH|^~\\&|ACK")}
				if _, err := l.Append(ctx, e); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return n, first
	}
	return n, ctx.Err()
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// dropFreelist commits once with NoFreelistSync, which leaves the file
// without a free list: the layout checkpoint logs had before issue 27.
func dropFreelist(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType, Timeout: time.Second})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("bench-open"))
		if err != nil {
			return err
		}
		return b.Put([]byte("at"), []byte(time.Now().String()))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// timeOpen drops the file from the page cache and times checkpoint.Open
// and the counts the daemon reads before it reports ready.
func timeOpen(path string) (time.Duration, bool, error) {
	cold := evictCache(path) == nil
	start := time.Now()
	l, err := checkpoint.Open(path, checkpoint.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return 0, cold, err
	}
	if _, err := l.Stats(); err != nil {
		l.Close()
		return 0, cold, err
	}
	d := time.Since(start)
	return d, cold, l.Close()
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

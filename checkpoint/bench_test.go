package checkpoint

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"
)

var benchPayload = make([]byte, 1780)

// BenchmarkAppend is durable appends from one goroutine (one commit each)
// and from 64 (group commit); BenchmarkBoltBaseline is bbolt with the same
// options, putting the same payload, one Update per record and 64-way
// group committed. Compare the two in one run: the disk's speed drifts.
func BenchmarkAppend(b *testing.B) {
	for _, g := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", g), func(b *testing.B) {
			l, err := Open(filepath.Join(b.TempDir(), FileName), Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			var n atomic.Int64
			run := func() {
				i := n.Add(1)
				key := fmt.Sprintf("bench|APP|FAC|%d", i)
				e := Entry{Key: key, Source: "bench", Kind: "hl7v2", Type: "ADT^A01", Hash: sha256.Sum256([]byte(key)),
					Lane: fmt.Sprintf("MRN%d^HOSP", i%50000), Payload: benchPayload, Ack: make([]byte, 160)}
				if _, err := l.Append(context.Background(), e); err != nil {
					b.Fatal(err)
				}
			}
			parallel(b, g, run)
		})
	}
}

func BenchmarkBoltBaseline(b *testing.B) {
	for _, g := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", g), func(b *testing.B) {
			db, err := bolt.Open(filepath.Join(b.TempDir(), "b.db"), 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
			if g == 1 {
				var i uint64
				for b.Loop() {
					i++
					if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put(itob(i), benchPayload) }); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			type op struct{ done chan struct{} }
			ch := make(chan op, 4096)
			stop := make(chan struct{})
			var seq uint64
			go func() {
				for {
					var first op
					select {
					case first = <-ch:
					case <-stop:
						return
					}
					batch := []op{first}
				fill:
					for len(batch) < 1024 {
						select {
						case o := <-ch:
							batch = append(batch, o)
						default:
							break fill
						}
					}
					db.Update(func(tx *bolt.Tx) error {
						for range batch {
							seq++
							tx.Bucket([]byte("b")).Put(itob(seq), benchPayload)
						}
						return nil
					})
					for _, o := range batch {
						close(o.done)
					}
				}
			}()
			parallel(b, g, func() {
				o := op{done: make(chan struct{})}
				ch <- o
				<-o.done
			})
			close(stop)
		})
	}
}

// parallel runs fn b.N times spread over g goroutines.
func parallel(b *testing.B, g int, fn func()) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range g {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				fn()
			}
		})
	}
	wg.Wait()
}

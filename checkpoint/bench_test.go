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

// benchPayload is an ADT^A01 of 1.8 KB. It is text, not zeros, so that it
// compresses as real messages do (S2: about two thirds of its size).
var benchPayload = func() []byte {
	var b []byte
	b = fmt.Appendf(b, "MSH|^~\\&|EPIC|GENHOSP|EHRBRIDGE|CRM|20260105083000||ADT^A01^ADT_A01|M000123456|P|2.5.1\r")
	b = fmt.Appendf(b, "EVN|A01|20260105083000|||U0042^NURSE^ANNA^^^^^^GENHOSP\r")
	for i := 0; len(b) < 1780; i++ {
		x := uint64(i)*2654435761 + 97
		b = fmt.Appendf(b, "OBX|%d|NM|%d-%d^Obs %x^LN||%d.%d|u%x|%d-%d|N|||F|||202601%02d%06d\r",
			i+1, x%99999, x%7, x%4096, x%300, x%10, x%256, x%50, 50+x%100, 1+x%28, x%1000000)
	}
	return b[:1780]
}()

// BenchmarkAppend is durable appends from one goroutine (one commit each)
// and from 64 (group commit); BenchmarkBoltBaseline is bbolt with the same
// options, putting the same payload, one Update per record and 64-way
// group committed. Compare the two in one run: the disk's speed drifts.
//
// freelist=kept is the log as it is opened now, bbolt's free list written
// with each commit; freelist=rebuilt as before issue 27 (rebuilt by a walk
// of every page at each open): their ratio is what keeping it costs.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		g       int
		rebuild bool
	}{{1, false}, {1, true}, {64, false}, {64, true}} {
		g := bc.g
		name := map[bool]string{false: "kept", true: "rebuilt"}[bc.rebuild]
		b.Run(fmt.Sprintf("writers=%d/freelist=%s", g, name), func(b *testing.B) {
			l, err := Open(filepath.Join(b.TempDir(), FileName), Options{Logger: slog.New(slog.DiscardHandler), rebuildFreelist: bc.rebuild})
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
			reportWritten(b, l.db)
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
				reportWritten(b, db)
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
			reportWritten(b, db)
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

// reportWritten reports the bytes of pages db wrote per operation.
func reportWritten(b *testing.B, db *bolt.DB) {
	st := db.Stats().TxStats
	b.ReportMetric(float64(st.GetPageAlloc())/float64(b.N), "written-B/op")
}

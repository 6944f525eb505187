package checkpointtest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// Bulk shapes: BulkPatients patients ("HOSP|0000042" lane keys, as the
// shipped sets make them) with about n/BulkPatients records each; one
// record in 1000 dead, the newest BulkReceived not yet sent, the others
// done; message types in fixed proportions.
const (
	BulkPatients = 50000
	BulkReceived = 1000
)

var bulkTypes = []string{"ADT^A08", "ORU^R01", "ADT^A01", "ORU^R01", "SIU^S12", "ADT^A08", "ADT^A03", "ORU^R01"}

// BulkLane is the lane key of record i's patient.
func BulkLane(i int) string { return fmt.Sprintf("HOSP|%07d", i%BulkPatients) }

// Bulk writes a log of n made-up records at path through the log's own
// calls (Append, Claim, Settle), without fsync, for benchmarks of what
// reads a large log. It takes about a minute for a million records on a
// 2-core machine.
func Bulk(tb testing.TB, path string, n int) {
	tb.Helper()
	l, err := checkpoint.Open(path, checkpoint.Options{UnsafeNoSync: true, MaxBatch: 4096, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	const workers = 64
	start := time.Now().Add(-time.Duration(n) * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				typ := bulkTypes[i%len(bulkTypes)]
				payload := fmt.Sprintf("MSH|^~\\&|ADT|HOSP|CRM|X|20250101||%s|C%08d|P|2.5.1\rPID|1||%07d^^^HOSP^MR||ZZBULK^PATIENT\r", typ, i, i%BulkPatients)
				_, err := l.Append(context.Background(), checkpoint.Entry{Key: fmt.Sprintf("ehr|ADT|HOSP|C%08d", i), Source: "ehr",
					Kind: checkpoint.KindHL7v2, Type: typ, Hash: sha256.Sum256([]byte(payload)), Lane: BulkLane(i), Payload: []byte(payload),
					Ack: []byte("MSA|AA"), Received: start.Add(time.Duration(i) * time.Second)})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
	// Settle all but the newest BulkReceived: claimed heads of lanes, done
	// (dead one in 1000), until what is left is the newest.
	for {
		recs, err := l.Claim(4096)
		if err != nil {
			tb.Fatal(err)
		}
		var outs []checkpoint.Settlement
		var keep []uint64
		for _, r := range recs {
			if r.ID > uint64(n-BulkReceived) {
				keep = append(keep, r.ID)
				continue
			}
			s := checkpoint.Settlement{ID: r.ID, State: checkpoint.Done, Targets: []string{fmt.Sprintf("001%015d", r.ID)}}
			if r.ID%1000 == 0 {
				s = checkpoint.Settlement{ID: r.ID, State: checkpoint.Dead, Reason: "on Account (op 1: upsert by EHR_Patient_Key__c, mapping adt): REQUIRED_FIELD_MISSING"}
			}
			outs = append(outs, s)
		}
		if len(outs) == 0 {
			// What is left in progress goes back to waiting.
			for _, id := range keep {
				if err := l.Settle([]checkpoint.Settlement{{ID: id, State: checkpoint.Retrying, RetryAt: time.Now(), Reason: "benchmark"}}); err != nil {
					tb.Fatal(err)
				}
			}
			return
		}
		if err := l.Settle(outs); err != nil {
			tb.Fatal(err)
		}
		for _, id := range keep {
			if err := l.Settle([]checkpoint.Settlement{{ID: id, State: checkpoint.Retrying, RetryAt: time.Now().Add(time.Hour), Reason: "benchmark"}}); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

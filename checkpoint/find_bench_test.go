package checkpoint

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// benchLogs caches the logs the Find benchmarks build, one per size, for
// the run (TestMain removes them).
var benchLogs struct {
	sync.Mutex
	dir   string
	paths map[int]string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchLogs.dir != "" {
		os.RemoveAll(benchLogs.dir)
	}
	os.Exit(code)
}

// Shape of the bulk-loaded log: benchPatients patients with about
// n/benchPatients records each, one record in 1000 dead, the newest
// benchReceived not yet claimed, the others done; types and sources in
// fixed proportions, one type rare.
const (
	benchPatients = 50000
	benchReceived = 1000
)

var benchTypes = []string{"ADT^A08", "ORU^R01", "ADT^A01", "ORU^R01", "SIU^S12", "ADT^A08", "ADT^A03", "ORU^R01"}

func benchLane(i int) string { return fmt.Sprintf("HOSP|%07d", i%benchPatients) }

// benchLog returns a closed log of n records, built once per run by
// writing records and indexes directly, as Append and Settle would leave
// them, in large transactions.
func benchLog(b *testing.B, n int) string {
	b.Helper()
	benchLogs.Lock()
	defer benchLogs.Unlock()
	if p, ok := benchLogs.paths[n]; ok {
		return p
	}
	if benchLogs.dir == "" {
		dir, err := os.MkdirTemp("", "ehrbridge-find-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchLogs.dir, benchLogs.paths = dir, map[int]string{}
	}
	path := filepath.Join(benchLogs.dir, fmt.Sprintf("n%d", n), FileName)
	start := time.Now()
	l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler), UnsafeNoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	lanes := make([][16]byte, benchPatients)
	for i := range lanes {
		lanes[i] = l.LaneHash(benchLane(i))
	}
	l.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: false})
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	payload := make([]byte, 400)
	for i := range payload {
		payload[i] = byte('A' + i*7%26)
	}
	counts := map[State]int64{}
	const batch = 50000
	for first := 1; first <= n; first += batch {
		err := db.Update(func(tx *bolt.Tx) error {
			records, keys, patients := tx.Bucket(bRecords), tx.Bucket(bKeys), tx.Bucket(bPatients)
			var pkeys [][]byte
			records.FillPercent, keys.FillPercent = 1, 1
			for id := first; id < first+batch && id <= n; id++ {
				i := id - 1
				recv := t0.Add(time.Duration(i) * 3 * time.Second)
				typ := benchTypes[i%len(benchTypes)]
				if i%10007 == 0 {
					typ = "VXU^V04" // rare
				}
				src := "mllp"
				if i%5 == 0 {
					src = "lab2"
				}
				r := &Record{ID: uint64(id), Key: fmt.Sprintf("%s|EPIC|HOSP|MSG%08d", src, id), Source: src, Kind: KindHL7v2, Type: typ,
					Lane: lanes[i%benchPatients], Received: recv, Updated: recv, ReadyAt: recv, State: Done, DoneAt: recv.Add(time.Second),
					Ack:        []byte("MSH|^~\\&|EHRBRIDGE|HOSP|EPIC|HOSP|20260101||ACK^A01|A1|P|2.5.1\rMSA|AA|MSG1\r"),
					PayloadLen: len(payload), Targets: []string{"001xx000003DGb2AAG"}}
				switch {
				case id > n-benchReceived:
					r.State, r.DoneAt, r.Targets = Received, time.Time{}, nil
				case i%1000 == 7:
					r.State, r.DoneAt, r.Targets, r.Attempts, r.Reason = Dead, time.Time{}, nil, 1, "crm permanent error INVALID_FIELD on Contact"
				}
				v, err := encodeRecord(r, payload)
				if err != nil {
					return err
				}
				if err := records.Put(itob(r.ID), v); err != nil {
					return err
				}
				if err := keys.Put([]byte(r.Key), itob(r.ID)); err != nil {
					return err
				}
				pkeys = append(pkeys, patientKey(r.Lane, r.ID))
				switch r.State {
				case Done:
					err = tx.Bucket(bDone).Put(timeKey(r.DoneAt, r.ID), nil)
				case Dead:
					err = tx.Bucket(bDead).Put(itob(r.ID), nil)
				}
				if err != nil {
					return err
				}
				counts[r.State]++
			}
			// In key order: see rebuildPatients.
			slices.SortFunc(pkeys, bytes.Compare)
			for _, k := range pkeys {
				if err := patients.Put(k, nil); err != nil {
					return err
				}
			}
			return records.SetSequence(uint64(min(first+batch-1, n)))
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for s, c := range counts {
			if err := addCount(tx, s, c); err != nil {
				return err
			}
		}
		return tx.Bucket(bMeta).Put(metaLaneCursor, itob(uint64(n-benchReceived)))
	})
	if err == nil {
		err = db.Sync()
	}
	db.Close()
	if err != nil {
		b.Fatal(err)
	}
	fi, _ := os.Stat(path)
	b.Logf("built a log of %d records (%d MB) in %v", n, fi.Size()>>20, time.Since(start).Round(time.Millisecond))
	benchLogs.paths[n] = path
	return path
}

// BenchmarkFind times a page of 50 from Find on a log of a million
// records and on one of 10,000 (the baseline), for each kind of filter.
// A page must come back in well under a second.
func BenchmarkFind(b *testing.B) {
	for _, n := range []int{10000, 1000000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			path := benchLog(b, n)
			l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			patient := n / 2 % benchPatients
			lanes, err := l.PatientLanes(benchLane(patient), fmt.Sprintf("%07d^HOSP", patient))
			if err != nil {
				b.Fatal(err)
			}
			mid := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n/2) * 3 * time.Second)
			for _, c := range []struct {
				name string
				q    Query
			}{
				{"unfiltered", Query{}},
				{"state=dead", Query{States: []State{Dead}}},
				{"state=received", Query{States: []State{Received}}},
				{"patient", Query{Lanes: lanes}},
				{"type=ORU^R01", Query{Type: "ORU^R01"}},
				{"type=ADT", Query{Type: "ADT"}},
				{"control_id", Query{ControlID: fmt.Sprintf("MSG%08d", n/3)}},
				{"time_range_1h", Query{From: mid, To: mid.Add(time.Hour)}},
				{"rare=dead+SIU+lab2", Query{States: []State{Dead}, Type: "SIU^S12", Source: "lab2"}},
				{"rare=VXU+lab2", Query{Type: "VXU^V04", Source: "lab2"}},
				{"patient+dead", Query{Lanes: lanes, States: []State{Dead}}},
			} {
				b.Run(c.name, func(b *testing.B) {
					var p Page
					for b.Loop() {
						q := c.q
						q.Limit = 50
						if p, err = l.Find(q); err != nil {
							b.Fatal(err)
						}
					}
					partial := 0.0
					if p.Partial {
						partial = 1
					}
					b.ReportMetric(float64(len(p.Records)), "records/page")
					b.ReportMetric(float64(p.Examined), "examined/page")
					b.ReportMetric(partial, "partial")
				})
			}
		})
	}
}

// BenchmarkMigratePatientIndex times the 3 → 4 migration (the patient
// index built from the records) of a log of a million records: the first
// start of an ehrbridge with schema 4 on it. The log is built apart from
// BenchmarkFind's (the migration changes it).
func BenchmarkMigratePatientIndex(b *testing.B) {
	n := migrateBenchRecords // its own cached log (see benchLogs)
	path := benchLog(b, n)
	quiet := slog.New(slog.DiscardHandler)
	for b.Loop() {
		b.StopTimer()
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			b.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			for _, name := range [][]byte{bPatients, bHistory} {
				if err := tx.DeleteBucket(name); err != nil {
					return err
				}
			}
			return tx.Bucket(bMeta).Put(metaSchema, itob(3))
		})
		db.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		l, err := Open(path, Options{Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
}

// migrateBenchRecords is the size of BenchmarkMigratePatientIndex's log:
// a million, and one, so that it is not BenchmarkFind's.
var migrateBenchRecords = 1000001

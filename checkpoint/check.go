package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Check verifies the file (bbolt's own page checks) and the log's
// invariants: every record decodes, keys and indexes point at records in
// the right state, counters match, and no lane has more than one record
// claimable or in progress. It returns every problem found.
func (l *Log) Check() ([]string, error) {
	var problems []string
	add := func(format string, args ...any) {
		if len(problems) < 100 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	err := l.view(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			add("bbolt: %v", err)
		}
		cursor := laneCursor(tx)
		counts := map[State]int64{}
		active := map[[16]byte]int{}
		// bSkipped is missing from a log last written by an ehrbridge
		// without the skipped state, opened read-only.
		inSkipped := func(k []byte) bool {
			b := tx.Bucket(bSkipped)
			return b != nil && b.Get(k) != nil
		}
		err := tx.Bucket(bRecords).ForEach(func(k, v []byte) error {
			id := btoi(k)
			r, _, err := decodeRecord(id, v)
			if err != nil {
				add("%v", err)
				return nil
			}
			counts[r.State]++
			if kv := tx.Bucket(bKeys).Get([]byte(r.Key)); kv == nil || btoi(kv) != id {
				add("record %d: key index does not point at it", id)
			}
			if patients := tx.Bucket(bPatients); patients != nil && id <= cursor && patients.Get(patientKey(r.Lane, id)) == nil {
				add("record %d: missing from the patient index", id)
			}
			pending := tx.Bucket(bPending).Get(k) != nil
			inLane := tx.Bucket(bLanes).Get(laneKey(r.Lane, id)) != nil
			switch r.State {
			case Received, InProgress, Retrying:
				// Records after the lane cursor are not yet in their lanes
				// (the next Claim puts them there) and, from schema 3, are
				// pending by position, out of the pending index.
				indexed := id <= cursor
				if pending != (indexed || !l.pendingByPosition()) || inLane != indexed {
					add("record %d (%s): pending or lane index disagrees (lane cursor %d)", id, r.State, cursor)
				}
			default:
				if pending || inLane {
					add("record %d (%s): still in the pending or lane index", id, r.State)
				}
			}
			if (tx.Bucket(bInflight).Get(k) != nil) != (r.State == InProgress) {
				add("record %d (%s): in-progress index disagrees", id, r.State)
			}
			if (tx.Bucket(bDead).Get(k) != nil) != (r.State == Dead) {
				add("record %d (%s): dead index disagrees", id, r.State)
			}
			if r.State == Done && tx.Bucket(bDone).Get(timeKey(r.DoneAt, id)) == nil {
				add("record %d: missing from the done index", id)
			}
			if r.State == Skipped && !inSkipped(timeKey(r.DoneAt, id)) {
				add("record %d: missing from the skipped index", id)
			}
			if _, known := stateNames[r.State]; !known {
				add("record %d: unknown state %d", id, r.State)
			}
			readyNow := tx.Bucket(bReady).Get(timeKey(r.ReadyAt, id)) != nil
			if readyNow && r.State != Received && r.State != Retrying {
				add("record %d (%s): claimable but not waiting", id, r.State)
			}
			if readyNow || r.State == InProgress {
				active[r.Lane]++
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, s := range States {
			if got := counter(tx, countKey(s)); got != counts[s] {
				add("counter %s is %d, records say %d", s, got, counts[s])
			}
		}
		// Every entry of a finished index names a record of its state,
		// finished at the entry's time.
		for _, ix := range finishedIndexes {
			b := tx.Bucket(ix.bucket)
			if b == nil {
				continue
			}
			err := b.ForEach(func(k, _ []byte) error {
				if len(k) != 16 {
					add("%s index: malformed entry", ix.state)
					return nil
				}
				id := btoi(k[8:])
				r, _, err := getRecord(tx, id)
				switch {
				case errors.Is(err, ErrNotFound):
					add("%s index: record %d does not exist", ix.state, id)
				case err != nil:
					// Reported by the pass over the records.
				case r.State != ix.state || !bytes.Equal(timeKey(r.DoneAt, id), k):
					add("%s index: record %d is %s (finished %v), not %s then", ix.state, id, r.State, r.DoneAt, ix.state)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		// Every patient index entry names a record of that lane; every
		// history belongs to a record.
		if b := tx.Bucket(bPatients); b != nil {
			err := b.ForEach(func(k, _ []byte) error {
				if len(k) != 24 {
					add("patient index: malformed entry")
					return nil
				}
				id := btoi(k[16:])
				r, _, err := getRecord(tx, id)
				switch {
				case errors.Is(err, ErrNotFound):
					add("patient index: record %d does not exist", id)
				case err == nil && string(r.Lane[:]) != string(k[:16]):
					add("patient index: record %d is under another lane", id)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if b := tx.Bucket(bHistory); b != nil {
			err := b.ForEach(func(k, v []byte) error {
				if len(k) != 8 {
					add("history: malformed entry")
					return nil
				}
				if _, err := decodeHistory(v); err != nil {
					add("history of record %d: %v", btoi(k), err)
				}
				if tx.Bucket(bRecords).Get(k) == nil {
					add("history: record %d does not exist", btoi(k))
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		for lane, n := range active {
			if n > 1 {
				add("lane %x: %d records claimable or in progress at once", lane[:4], n)
			}
		}
		// Every detail (the CRM's message) belongs to a record that has a
		// reason for it: dead, retrying or in progress again.
		if b := tx.Bucket(bDetails); b != nil {
			err := b.ForEach(func(k, v []byte) error {
				if len(k) != 8 || len(v) == 0 || v[0] > detailSealed {
					add("details: malformed entry")
					return nil
				}
				id := btoi(k)
				r, _, err := getRecord(tx, id)
				switch {
				case errors.Is(err, ErrNotFound):
					add("details: record %d does not exist", id)
				case err == nil && r.State != Dead && r.State != Retrying && r.State != InProgress && !r.Closed():
					add("details: record %d is %s and keeps a detail", id, r.State)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if n := int64(tx.Bucket(bConflicts).Stats().KeyN); n != counter(tx, countConflicts) {
			add("conflict counter is %d, entries say %d", counter(tx, countConflicts), n)
		}
		return nil
	})
	return problems, err
}

// syncDir fsyncs the directory holding path so that a rename is durable.
func syncDir(path string) {
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

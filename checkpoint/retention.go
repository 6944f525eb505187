package checkpoint

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// SweepResult counts what a Sweep removed.
type SweepResult struct {
	PayloadsDropped int // done and skipped records whose payload was dropped
	RecordsDeleted  int // done and skipped records (and their keys) past the dedupe window
	ConflictsPurged int // conflict entries past the dedupe window
}

// sweepBatch bounds the records one sweep transaction touches, so that
// appends never wait long behind it.
const sweepBatch = 500

// finishedIndexes are the indexes of finished records that retention
// sweeps, by time: done and skipped records follow the same rules, each
// index with its own payload sweep cursor.
var finishedIndexes = []struct {
	bucket, cursor []byte
	state          State
}{{bDone, metaSweepCursor, Done}, {bSkipped, metaSweepSkipped, Skipped}}

// Sweep applies retention: payloads of records done or skipped longer
// than PayloadRetention ago are dropped (metadata, hash and ACK stay for
// dedupe), and records done or skipped longer than DedupeWindow ago are
// deleted with their keys. Conflicts older than DedupeWindow go too.
// Unfinished and dead records are never touched. Work is split into short
// transactions.
func (l *Log) Sweep() (SweepResult, error) {
	var res SweepResult
	now := l.opts.Now()
	dropBefore := now.Add(-l.opts.PayloadRetention)
	deleteBefore := now.Add(-l.opts.DedupeWindow)
	for _, ix := range finishedIndexes {
		for {
			n, err := l.sweepDeletes(ix.bucket, ix.state, deleteBefore)
			res.RecordsDeleted += n
			if err != nil {
				return res, err
			}
			if n < sweepBatch {
				break
			}
		}
		for {
			n, more, err := l.sweepPayloads(ix.bucket, ix.cursor, dropBefore)
			res.PayloadsDropped += n
			if err != nil {
				return res, err
			}
			if !more {
				break
			}
		}
	}
	for {
		n, err := l.sweepConflicts(deleteBefore)
		res.ConflictsPurged += n
		if err != nil || n < sweepBatch {
			return res, err
		}
	}
}

// sweepDeletes deletes up to sweepBatch records of a finished index (in
// state) finished before t.
func (l *Log) sweepDeletes(bucket []byte, state State, t time.Time) (int, error) {
	n := 0
	err := l.update(func(tx *bolt.Tx) error {
		n = 0
		done := tx.Bucket(bucket)
		keys, err := oldest(done, func(k, _ []byte) (bool, error) { return int64(btoi(k[:8])) < t.UnixNano(), nil })
		if err != nil {
			return err
		}
		for _, k := range keys {
			id := btoi(k[8:])
			r, _, err := getRecord(tx, id)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bKeys).Delete([]byte(r.Key)); err != nil {
				return err
			}
			if err := tx.Bucket(bRecords).Delete(itob(id)); err != nil {
				return err
			}
			if err := deleteDetail(tx, id); err != nil {
				return err
			}
			if err := tx.Bucket(bPatients).Delete(patientKey(r.Lane, id)); err != nil {
				return err
			}
			if err := tx.Bucket(bHistory).Delete(itob(id)); err != nil {
				return err
			}
			if err := done.Delete(k); err != nil {
				return err
			}
			if err := addCount(tx, state, -1); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// sweepPayloads drops the payloads of up to sweepBatch records of a
// finished index finished before t, resuming from where the last sweep
// of that index stopped (its cursor in meta).
func (l *Log) sweepPayloads(bucket, cursor []byte, t time.Time) (n int, more bool, err error) {
	err = l.update(func(tx *bolt.Tx) error {
		n, more = 0, false
		meta := tx.Bucket(bMeta)
		c := tx.Bucket(bucket).Cursor()
		var k []byte
		if cur := meta.Get(cursor); cur != nil {
			k, _ = c.Seek(cur)
			if k != nil && string(k) == string(cur) {
				k, _ = c.Next()
			}
		} else {
			k, _ = c.First()
		}
		var last []byte
		visited := 0
		for ; k != nil; k, _ = c.Next() {
			if int64(btoi(k[:8])) >= t.UnixNano() {
				break
			}
			if visited == sweepBatch {
				more = true
				break
			}
			visited++
			last = append(last[:0], k...)
			id := btoi(k[8:])
			r, _, err := getRecord(tx, id)
			if err != nil {
				return err
			}
			if r.PayloadDropped {
				continue
			}
			r.PayloadDropped = true
			if err := putRecord(tx, r, nil); err != nil {
				return err
			}
			n++
		}
		if last == nil {
			return nil
		}
		return meta.Put(cursor, last)
	})
	return n, more, err
}

func (l *Log) sweepConflicts(t time.Time) (int, error) {
	n := 0
	err := l.update(func(tx *bolt.Tx) error {
		n = 0
		b := tx.Bucket(bConflicts)
		ids, err := oldest(b, func(k, v []byte) (bool, error) {
			e, _, err := decodeConflict(btoi(k), v)
			return err == nil && e.Received.Before(t), err
		})
		if err != nil {
			return err
		}
		for _, k := range ids {
			if err := b.Delete(k); err != nil {
				return err
			}
			if err := addCounter(tx, countConflicts, -1); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// oldest returns copies of up to sweepBatch keys from the start of b for
// which old holds, stopping at the first for which it does not (b's keys
// are in time order). Keys are collected before anything is deleted: a
// bbolt cursor may skip entries after a delete under it.
func oldest(b *bolt.Bucket, old func(k, v []byte) (bool, error)) ([][]byte, error) {
	var keys [][]byte
	c := b.Cursor()
	for k, v := c.First(); k != nil && len(keys) < sweepBatch; k, v = c.Next() {
		ok, err := old(k, v)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		keys = append(keys, append([]byte(nil), k...))
	}
	return keys, nil
}

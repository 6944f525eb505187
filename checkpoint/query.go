package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Get returns a record's metadata, without its payload.
func (l *Log) Get(id uint64) (*Record, error) {
	var r *Record
	err := l.view(func(tx *bolt.Tx) error {
		var err error
		r, _, err = getRecord(tx, id)
		return err
	})
	return r, err
}

// Reveal returns a record with its payload and its detail decrypted. Callers that show it
// to a person must audit that (see the CLI's `log show --reveal`).
func (l *Log) Reveal(id uint64) (*Record, error) {
	var r *Record
	err := l.view(func(tx *bolt.Tx) error {
		var payload []byte
		var err error
		r, payload, err = getRecord(tx, id)
		if err != nil {
			return err
		}
		r.Payload = append([]byte(nil), payload...)
		r.Detail, err = l.detail(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, l.openPayload(r)
}

// Stats summarise the log for admins and metrics.
type Stats struct {
	States map[State]int64
	// OldestPending is when the oldest record not yet finished (done,
	// dead or skipped) was received; zero when there is none.
	OldestPending time.Time
	Conflicts     int64
	FileSize      int64
	Encrypted     bool
	// Schema is the log's layout version; WrittenBy the program that last
	// opened it for writing.
	Schema    int
	WrittenBy string
	// Seal counts what is not under the active key (see SealStats), as of
	// at most a minute ago; SealCounted says it was counted (it is not
	// for a log never encrypted, nor when the count failed).
	Seal        SealStats
	SealCounted bool
}

// Stats returns the counters kept with the log; it reads a handful of
// keys, whatever the log's size.
func (l *Log) Stats() (Stats, error) {
	st := Stats{States: map[State]int64{}}
	err := l.view(func(tx *bolt.Tx) error {
		st.Encrypted = l.encrypted || l.opts.Keyring != nil
		for _, s := range States {
			st.States[s] = counter(tx, countKey(s))
		}
		st.Conflicts = counter(tx, countConflicts)
		// Indexed pending records are older than any after the lane
		// cursor, which are pending by position.
		k, _ := tx.Bucket(bPending).Cursor().First()
		if k == nil {
			k, _ = tx.Bucket(bRecords).Cursor().Seek(itob(laneCursor(tx) + 1))
		}
		if k != nil {
			r, _, err := getRecord(tx, btoi(k))
			if err != nil {
				return err
			}
			st.OldestPending = r.Received
		}
		st.FileSize = tx.Size()
		meta := tx.Bucket(bMeta)
		if v := meta.Get(metaSchema); len(v) == 8 {
			st.Schema = int(btoi(v))
		}
		st.WrittenBy = string(meta.Get(metaWrittenBy))
		return nil
	})
	if err == nil {
		st.Seal, st.SealCounted = l.cachedSealStats()
	}
	return st, err
}

// List returns up to limit records in a state, oldest first, starting
// after the record id after (0 for the start). Payloads are not loaded.
func (l *Log) List(state State, after uint64, limit int) ([]*Record, error) {
	var out []*Record
	err := l.view(func(tx *bolt.Tx) error {
		var b *bolt.Bucket
		switch state {
		case Received, InProgress, Retrying:
			b = tx.Bucket(bPending)
		case Dead:
			b = tx.Bucket(bDead)
		case Done:
			return listFinished(tx.Bucket(bDone), after, limit, &out)
		case Skipped:
			return listFinished(tx.Bucket(bSkipped), after, limit, &out)
		default:
			return fmt.Errorf("checkpoint: cannot list state %s", state)
		}
		c := b.Cursor()
		k, _ := c.Seek(itob(after + 1))
		for ; k != nil && len(out) < limit; k, _ = c.Next() {
			r, _, err := getRecord(tx, btoi(k))
			if err != nil {
				return err
			}
			if r.State == state {
				out = append(out, r)
			}
		}
		if state != Received || !l.pendingByPosition() {
			return nil
		}
		// New records after the lane cursor are received and not yet in
		// the pending index.
		c = tx.Bucket(bRecords).Cursor()
		k, v := c.Seek(itob(max(after, laneCursor(tx)) + 1))
		for ; k != nil && len(out) < limit; k, v = c.Next() {
			r, _, err := decodeRecord(btoi(k), v)
			if err != nil {
				return err
			}
			if r.State == Received {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// listFinished lists the records of a finished index (done or skipped),
// in the order they finished. b is nil in a log that never had skipped
// records and was last written by an ehrbridge without them.
func listFinished(b *bolt.Bucket, after uint64, limit int, out *[]*Record) error {
	if b == nil {
		return nil
	}
	tx := b.Tx()
	c := b.Cursor()
	for k, _ := c.First(); k != nil && len(*out) < limit; k, _ = c.Next() {
		id := btoi(k[8:])
		if id <= after {
			continue
		}
		r, _, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		*out = append(*out, r)
	}
	return nil
}

// All calls fn for every record in id order, without payloads, until fn
// returns false. It reads in batches so that no read transaction is held
// while fn runs.
func (l *Log) All(fn func(*Record) bool) error { return l.AllAfter(0, fn) }

// AllAfter is All from the first record after id after: a page of a
// listing starts where the last one ended, not at the first record.
func (l *Log) AllAfter(after uint64, fn func(*Record) bool) error {
	for {
		var batch []*Record
		err := l.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bRecords).Cursor()
			for k, v := c.Seek(itob(after + 1)); k != nil && len(batch) < 1000; k, v = c.Next() {
				r, _, err := decodeRecord(btoi(k), v)
				if err != nil {
					return err
				}
				batch = append(batch, r)
			}
			return nil
		})
		if err != nil || len(batch) == 0 {
			return err
		}
		for _, r := range batch {
			if !fn(r) {
				return nil
			}
		}
		after = batch[len(batch)-1].ID
	}
}

// Conflicts returns up to limit conflict entries after the given id.
func (l *Log) Conflicts(after uint64, limit int) ([]*ConflictEntry, error) {
	var out []*ConflictEntry
	err := l.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bConflicts).Cursor()
		for k, v := c.Seek(itob(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			e, _, err := decodeConflict(btoi(k), v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// RevealConflict returns a conflict entry and the conflicting payload.
func (l *Log) RevealConflict(id uint64) (*ConflictEntry, []byte, error) {
	var e *ConflictEntry
	var payload []byte
	err := l.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bConflicts).Get(itob(id))
		if v == nil {
			return fmt.Errorf("%w: conflict %d", ErrNotFound, id)
		}
		var err error
		e, payload, err = decodeConflict(id, v)
		return err
	})
	if err != nil || !e.sealed {
		return e, payload, err
	}
	if l.opts.Keyring == nil {
		return nil, nil, ErrEncrypted
	}
	plain, err := l.opts.Keyring.open(payload, conflictAAD(id))
	return e, plain, err
}

// Recent returns the newest records, up to limit, newest first, without
// payloads.
func (l *Log) Recent(limit int) ([]*Record, error) {
	var out []*Record
	err := l.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bRecords).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			r, _, err := decodeRecord(btoi(k), v)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// LaneOfPrefix returns the lane of the newest record whose key starts
// with prefix, and whether there is one (its key may have left the
// dedupe window). A FHIR delete takes the lane of the resource's own
// records this way, so that it is applied after them.
func (l *Log) LaneOfPrefix(prefix string) ([16]byte, bool, error) {
	var lane [16]byte
	var newest uint64
	err := l.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bKeys).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if id := btoi(v); id > newest {
				newest = id
			}
		}
		if newest == 0 {
			return nil
		}
		r, _, err := getRecord(tx, newest)
		if errors.Is(err, ErrNotFound) {
			newest = 0 // the key outlived its record: no lane to follow
			return nil
		}
		if err != nil {
			return err
		}
		lane = r.Lane
		return nil
	})
	return lane, newest != 0, err
}

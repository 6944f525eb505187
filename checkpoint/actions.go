package checkpoint

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Admin actions on records. Each takes the actor (the signed-in admin's
// name) and records it in the record's history (history.go), in the same
// transaction as the change.

// ClosedPrefix starts the reason of a dead record an admin closed (CloseRecord).
const ClosedPrefix = "closed by "

// Closed says whether a record is a dead record an admin closed: skipped,
// with the reason ClosedPrefix and the admin's name.
func (r *Record) Closed() bool {
	return r.State == Skipped && strings.HasPrefix(r.Reason, ClosedPrefix)
}

// CloseRecord ends a dead record that will not be retried: it becomes skipped,
// its reason "closed by ACTOR", and note (the admin's words, which may
// name the patient) is kept as its detail, sealed like the CRM's messages
// and shown only by Reveal. Retention then treats it as it treats skipped
// records; until then it can be requeued like them.
func (l *Log) CloseRecord(id uint64, actor, note string) error {
	if strings.TrimSpace(actor) == "" {
		return errors.New("checkpoint: closing a record needs the admin's name")
	}
	now := l.opts.Now()
	return l.update(func(tx *bolt.Tx) error {
		err := transitionTx(tx, id, Dead, now, func(r *Record) error {
			r.State, r.DoneAt, r.Reason = Skipped, now, ClosedPrefix+actor
			if err := tx.Bucket(bDead).Delete(itob(id)); err != nil {
				return err
			}
			return tx.Bucket(bSkipped).Put(timeKey(now, id), nil)
		})
		if err != nil {
			return err
		}
		if err := addHistory(tx, id, Event{At: now, Kind: EventClosed, State: Skipped, Reason: ClosedPrefix + actor, Actor: actor}); err != nil {
			return err
		}
		return l.putDetail(tx, id, note)
	})
}

// RequeueSelection requeues the dead and skipped records among ids on
// behalf of actor, a batch per transaction, and returns those it
// requeued. Others (in another state, unknown, or skipped with their
// payloads dropped by retention) are left as they are.
func (l *Log) RequeueSelection(actor string, ids []uint64) ([]uint64, error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var done []uint64
	for len(ids) > 0 {
		batch := ids[:min(len(ids), sweepBatch)]
		ids = ids[len(batch):]
		now := l.opts.Now()
		var got []uint64
		err := l.update(func(tx *bolt.Tx) error {
			got = got[:0]
			for _, id := range batch {
				r, _, err := getRecord(tx, id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if r.State != Dead && (r.State != Skipped || r.PayloadDropped) {
					continue
				}
				if err := requeueTx(tx, id, now, actor); err != nil {
					return err
				}
				got = append(got, id)
			}
			return nil
		})
		if err != nil {
			return done, err
		}
		done = append(done, got...)
	}
	return done, nil
}

// Release makes a retrying record (a held note, or a record waiting out
// its backoff) ready now, on behalf of actor.
func (l *Log) Release(id uint64, actor string) error {
	now := l.opts.Now()
	return l.update(func(tx *bolt.Tx) error {
		r, payload, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		ready := tx.Bucket(bReady)
		if r.State != Retrying || ready.Get(timeKey(r.ReadyAt, id)) == nil {
			return fmt.Errorf("%w: record %d is %s, not waiting to be retried", ErrTransition, id, r.State)
		}
		if err := ready.Delete(timeKey(r.ReadyAt, id)); err != nil {
			return err
		}
		r.ReadyAt, r.Updated = now, now
		if err := putRecord(tx, r, payload); err != nil {
			return err
		}
		if err := ready.Put(timeKey(now, id), nil); err != nil {
			return err
		}
		return addHistory(tx, id, Event{At: now, Kind: EventHastened, State: Retrying, Reason: r.Reason, Actor: actor})
	})
}

// ResolveConflict settles conflict entry conflictID on behalf of actor.
// Keeping (accept false) dismisses the entry: the stored message stands.
// Accepting replaces the record's payload, content hash and type with the
// conflicting message's and puts the record back in its lane as received
// (a finished record is requeued; a pending one keeps its place), then
// dismisses the entry. Accepting is refused (ErrTransition) while the
// record is in progress, and needs the key when the conflict's payload is
// sealed. The record keeps its ACK: a retransmit of the accepted message
// is answered with it.
func (l *Log) ResolveConflict(conflictID uint64, actor string, accept bool) error {
	now := l.opts.Now()
	return l.update(func(tx *bolt.Tx) error {
		cb := tx.Bucket(bConflicts)
		v := cb.Get(itob(conflictID))
		if v == nil {
			return fmt.Errorf("%w: conflict %d", ErrNotFound, conflictID)
		}
		c, payload, err := decodeConflict(conflictID, v)
		if err != nil {
			return err
		}
		ev := Event{At: now, Kind: EventConflictKept, Actor: actor, Conflict: conflictID}
		r, _, rerr := getRecord(tx, c.RecordID)
		switch {
		case accept && rerr != nil:
			return rerr // the record was swept: nothing to put the message in
		case accept:
			if err := l.acceptConflictTx(tx, r, c, payload, now); err != nil {
				return err
			}
			ev.Kind, ev.State = EventConflictAccepted, Received
		case rerr == nil:
			ev.State = r.State
		}
		if err := cb.Delete(itob(conflictID)); err != nil {
			return err
		}
		if err := addCounter(tx, countConflicts, -1); err != nil {
			return err
		}
		if rerr != nil {
			return nil
		}
		return addHistory(tx, c.RecordID, ev)
	})
}

// acceptConflictTx puts a conflict's payload into its record and requeues
// the record (see ResolveConflict).
func (l *Log) acceptConflictTx(tx *bolt.Tx, r *Record, c *ConflictEntry, stored []byte, now time.Time) error {
	if r.State == InProgress {
		return fmt.Errorf("%w: record %d is in progress; resolve the conflict once it has settled", ErrTransition, r.ID)
	}
	plain := stored
	if c.sealed {
		if l.opts.Keyring == nil {
			return ErrEncrypted
		}
		var err error
		if plain, err = l.opts.Keyring.open(stored, conflictAAD(c.ID)); err != nil {
			return fmt.Errorf("conflict %d: %w", c.ID, err)
		}
	}
	body, compressed := compressTo(nil, plain)
	if !compressed {
		body = plain
	}
	if l.opts.Keyring != nil {
		body = l.opts.Keyring.seal(body, []byte(r.Key))
	}
	from := r.State
	r.Hash, r.hashKeyed, r.Type = c.Hash, c.keyed, c.Type
	r.PayloadLen, r.PayloadDropped, r.sealed, r.compressed = len(plain), false, l.opts.Keyring != nil, compressed
	r.Updated = now
	finished := from.Finished()
	if finished {
		var index []byte
		var key []byte
		switch from {
		case Done:
			index, key = bDone, timeKey(r.DoneAt, r.ID)
		case Skipped:
			index, key = bSkipped, timeKey(r.DoneAt, r.ID)
		case Dead:
			index, key = bDead, itob(r.ID)
		}
		if err := tx.Bucket(index).Delete(key); err != nil {
			return err
		}
		if err := deleteDetail(tx, r.ID); err != nil {
			return err
		}
		r.State, r.Attempts, r.ReadyAt, r.Reason, r.DoneAt, r.Targets = Received, 0, now, "", time.Time{}, nil
	}
	if err := putRecord(tx, r, body); err != nil {
		return err
	}
	if !finished {
		return nil
	}
	if err := moveCount(tx, from, Received); err != nil {
		return err
	}
	return joinLane(tx, r)
}

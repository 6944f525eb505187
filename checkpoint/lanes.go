package checkpoint

import (
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Claim takes up to limit records that are ready (their lane's oldest
// unfinished record, ready at or before now), marks them in progress and
// returns them with their payloads. At most one record per lane is ever in
// progress.
func (l *Log) Claim(limit int) ([]*Record, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []*Record
	now := l.opts.Now()
	err := l.update(func(tx *bolt.Tx) error {
		out = out[:0]
		if err := indexLanes(tx, indexBatch); err != nil {
			return err
		}
		ready := tx.Bucket(bReady)
		var claimed [][]byte
		c := ready.Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			if int64(btoi(k[:8])) > now.UnixNano() {
				break
			}
			id := btoi(k[8:])
			r, payload, err := getRecord(tx, id)
			if err != nil {
				return err
			}
			from := r.State
			r.State, r.Updated = InProgress, now
			if err := putRecord(tx, r, payload); err != nil {
				return err
			}
			if err := tx.Bucket(bInflight).Put(itob(id), nil); err != nil {
				return err
			}
			if err := moveCount(tx, from, InProgress); err != nil {
				return err
			}
			r.Payload = append([]byte(nil), payload...)
			claimed = append(claimed, append([]byte(nil), k...))
			out = append(out, r)
		}
		for _, k := range claimed {
			if err := ready.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range out {
		if err := l.openPayload(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// indexBatch bounds how many new records one Claim puts in their lanes, so
// that a large backlog is indexed over several short transactions.
const indexBatch = 4096

// indexLanes puts records appended since the last call (those after the
// lane cursor) into the pending index and their lanes, in id order (so
// each lane keeps arrival order), and makes a record claimable when its
// lane had nothing pending. It returns once the cursor has caught up or
// max records were indexed.
func indexLanes(tx *bolt.Tx, max int) error {
	meta := tx.Bucket(bMeta)
	cursor := laneCursor(tx)
	c := tx.Bucket(bRecords).Cursor()
	pending := tx.Bucket(bPending)
	pending.FillPercent = 1 // ids only grow here
	last := cursor
	n := 0
	for k, v := c.Seek(itob(cursor + 1)); k != nil && n < max; k, v = c.Next() {
		id := btoi(k)
		r, _, err := decodeRecord(id, v)
		if err != nil {
			return err
		}
		if err := pending.Put(itob(id), nil); err != nil {
			return err
		}
		head := laneHead(tx, r.Lane) == 0
		if err := tx.Bucket(bLanes).Put(laneKey(r.Lane, id), nil); err != nil {
			return err
		}
		if patients := tx.Bucket(bPatients); patients != nil {
			if err := patients.Put(patientKey(r.Lane, id), nil); err != nil {
				return err
			}
		}
		if head && (r.State == Received || r.State == Retrying) {
			if err := tx.Bucket(bReady).Put(timeKey(r.ReadyAt, id), nil); err != nil {
				return err
			}
		}
		last = id
		n++
	}
	if last == cursor {
		return nil
	}
	return meta.Put(metaLaneCursor, itob(last))
}

// laneCursor is the last record id indexed by indexLanes: records after it
// are new, and pending by their position alone.
func laneCursor(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bMeta).Get(metaLaneCursor); len(v) == 8 {
		return btoi(v)
	}
	return 0
}

// MarkDone records that an in-progress record was applied, with the ids it
// has in the target system, and moves its lane on, in one transaction.
func (l *Log) MarkDone(id uint64, targets []string) error {
	return l.Settle([]Settlement{{ID: id, State: Done, Targets: targets}})
}

// MarkRetry records a transient failure: the record becomes ready again at
// at, with its attempt count raised and the reason kept. Its lane waits.
func (l *Log) MarkRetry(id uint64, at time.Time, reason string) error {
	return l.Settle([]Settlement{{ID: id, State: Retrying, RetryAt: at, Reason: reason}})
}

// MarkDead records a permanent failure. The record waits for an admin
// (Requeue) and its lane moves on: later events of the same patient are
// not held back by one that cannot be applied.
func (l *Log) MarkDead(id uint64, reason string) error {
	return l.Settle([]Settlement{{ID: id, State: Dead, Reason: reason}})
}

// Settlement is how an in-progress record ended, for Settle.
type Settlement struct {
	ID    uint64
	State State // Done, Retrying, Dead or Skipped
	// Targets are the record's ids in the target system (Done).
	Targets []string
	// RetryAt is when a Retrying record is ready again.
	RetryAt time.Time
	// Reason is why it is retrying, dead or skipped; free of patient
	// data, or kept only in the (encrypted) log, never in logs.
	Reason string
	// Detail is the prose behind Reason (the CRM's error message), which
	// may quote patient data: stored apart, sealed when a key is
	// configured, and returned only by Reveal (Record.Detail).
	Detail string
	// Warnings are what a Done record was applied without (fields a
	// mapping left out): kept as its reason (WarningsReason). Free of
	// patient data.
	Warnings []string
	// Code is the CRM's error code when it gave one (Salesforce's
	// errorCode, Dataverse's error code), and Op, Object, Action and
	// Mapping the op the failure concerns: its 1-based number among the
	// record's ops, the CRM object ("Contact"), what it did ("upsert by
	// MRN__c") and the mapping that made it. All free of patient data;
	// kept in the record's history (Event).
	Code    string
	Op      int
	Object  string
	Action  string
	Mapping string
}

// Settle records the settlements of in-progress records in one transaction:
// one fsync for a whole batch. Done, dead and skipped records leave their lanes,
// letting the next record of each lane be claimed; retrying ones keep
// their lanes waiting. If any settlement is invalid, none is recorded.
//
// A settlement the file system refused (a StorageError) is kept and
// written before the next write that succeeds (storage.go), so that the
// records of a batch sent while the disk was full do not stay in progress
// until a restart. Settling them again meanwhile is no error.
func (l *Log) Settle(outs []Settlement) error {
	if len(outs) == 0 {
		return nil
	}
	// This call writes them now; a settlement written meanwhile from the
	// owed ones is skipped below.
	owed := l.storage.forget(outs)
	now := l.opts.Now()
	err := l.update(func(tx *bolt.Tx) error {
		for _, o := range outs {
			if owed[o.ID] && !inProgress(tx, o.ID) {
				continue
			}
			if err := l.settleTx(tx, o, now); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, ErrStorage) {
		l.storage.owe(outs)
	}
	return err
}

func inProgress(tx *bolt.Tx, id uint64) bool {
	r, _, err := getRecord(tx, id)
	return err == nil && r.State == InProgress
}

func (l *Log) settleTx(tx *bolt.Tx, o Settlement, now time.Time) error {
	id := o.ID
	err := transitionTx(tx, id, InProgress, now, func(r *Record) error {
		switch o.State {
		case Done:
			r.State, r.DoneAt, r.Targets, r.Reason = Done, now, o.Targets, WarningsReason(o.Warnings)
			if err := tx.Bucket(bDone).Put(timeKey(now, id), nil); err != nil {
				return err
			}
			return leaveLane(tx, r)
		case Skipped:
			// Not a failure: attempts stay as they were.
			r.State, r.DoneAt, r.Targets, r.Reason = Skipped, now, nil, o.Reason
			if err := tx.Bucket(bSkipped).Put(timeKey(now, id), nil); err != nil {
				return err
			}
			return leaveLane(tx, r)
		case Retrying:
			r.State, r.Attempts, r.ReadyAt, r.Reason = Retrying, r.Attempts+1, o.RetryAt, o.Reason
			if err := tx.Bucket(bInflight).Delete(itob(id)); err != nil {
				return err
			}
			return tx.Bucket(bReady).Put(timeKey(o.RetryAt, id), nil)
		case Dead:
			r.State, r.Attempts, r.Reason = Dead, r.Attempts+1, o.Reason
			if err := tx.Bucket(bDead).Put(itob(id), nil); err != nil {
				return err
			}
			return leaveLane(tx, r)
		}
		return fmt.Errorf("%w: record %d cannot end as %s", ErrTransition, id, o.State)
	})
	if err != nil {
		return err
	}
	ev := Event{At: now, Kind: EventSettled, State: o.State, Reason: o.Reason, Code: o.Code, Op: o.Op, Object: o.Object,
		Action: o.Action, Mapping: o.Mapping, Targets: o.Targets}
	switch o.State {
	case Done:
		ev.Reason = WarningsReason(o.Warnings)
	case Retrying:
		ev.RetryAt = o.RetryAt
	}
	if err := addHistory(tx, id, ev); err != nil {
		return err
	}
	// The detail goes with the reason: replaced, or removed with it.
	return l.putDetail(tx, id, o.Detail)
}

// Requeue puts a dead or skipped record back in its lane as received,
// attempts reset. If its lane is idle it is ready at once; otherwise it
// runs as soon as the record now in progress there finishes, ahead of
// newer ones. A skipped record whose payload retention dropped cannot be
// requeued (ErrPayloadGone): there is nothing left to map.
func (l *Log) Requeue(id uint64) error { return l.RequeueBy(id, "") }

// RequeueBy is Requeue on behalf of actor (the admin's name), whom the
// record's history names.
func (l *Log) RequeueBy(id uint64, actor string) error {
	now := l.opts.Now()
	return l.update(func(tx *bolt.Tx) error { return requeueTx(tx, id, now, actor) })
}

// ErrPayloadGone is returned for a skipped record that cannot be requeued
// because retention dropped its payload.
var ErrPayloadGone = errors.New("checkpoint: the record's payload was dropped by retention")

func requeueTx(tx *bolt.Tx, id uint64, now time.Time, actor string) error {
	r, _, err := getRecord(tx, id)
	if err != nil {
		return err
	}
	if r.State == Dead || r.State == Skipped && !r.PayloadDropped {
		if err := addHistory(tx, id, Event{At: now, Kind: EventRequeued, State: Received, Actor: actor}); err != nil {
			return err
		}
	}
	switch r.State {
	case Dead:
		return transitionTx(tx, id, Dead, now, func(r *Record) error {
			r.State, r.Attempts, r.ReadyAt, r.Reason = Received, 0, now, ""
			if err := tx.Bucket(bDead).Delete(itob(id)); err != nil {
				return err
			}
			if err := deleteDetail(tx, id); err != nil {
				return err
			}
			return joinLane(tx, r)
		})
	case Skipped:
		if r.PayloadDropped {
			return fmt.Errorf("%w: skipped record %d cannot be mapped again", ErrPayloadGone, id)
		}
		return transitionTx(tx, id, Skipped, now, func(r *Record) error {
			if err := tx.Bucket(bSkipped).Delete(timeKey(r.DoneAt, id)); err != nil {
				return err
			}
			r.State, r.Attempts, r.ReadyAt, r.Reason, r.DoneAt = Received, 0, now, "", time.Time{}
			if err := deleteDetail(tx, id); err != nil {
				return err
			}
			return joinLane(tx, r)
		})
	}
	return fmt.Errorf("%w: record %d is %s, not dead or skipped", ErrTransition, id, r.State)
}

// RequeueAllDead requeues every dead record and returns how many.
func (l *Log) RequeueAllDead() (int, error) { return l.RequeueAllDeadBy("") }

// RequeueAllDeadBy is RequeueAllDead on behalf of actor.
func (l *Log) RequeueAllDeadBy(actor string) (int, error) {
	n, _, err := l.requeueAll(Dead, nil, actor)
	return n, err
}

// RequeueSkipped requeues the skipped records for which match holds (all
// when match is nil), oldest first, a batch per transaction. It returns
// how many it requeued and how many matched but could not be, their
// payloads dropped by retention.
func (l *Log) RequeueSkipped(match func(*Record) bool) (requeued, gone int, err error) {
	return l.RequeueSkippedBy(match, "")
}

// RequeueSkippedBy is RequeueSkipped on behalf of actor, named in each
// record's history.
func (l *Log) RequeueSkippedBy(match func(*Record) bool, actor string) (requeued, gone int, err error) {
	return l.requeueAll(Skipped, match, actor)
}

// requeueAll requeues the records in state (Dead or Skipped) for which
// match holds (all when match is nil), a batch per transaction; those
// whose payloads retention dropped are counted as gone instead.
func (l *Log) requeueAll(state State, match func(*Record) bool, actor string) (requeued, gone int, err error) {
	var ids []uint64
	err = l.view(func(tx *bolt.Tx) error {
		b, idOf := tx.Bucket(bDead), btoi // id → ∅
		if state == Skipped {
			b, idOf = tx.Bucket(bSkipped), func(k []byte) uint64 { return btoi(k[8:]) } // finished at | id → ∅
		}
		if b == nil {
			return nil // no skipped index: see bSkipped
		}
		return b.ForEach(func(k, _ []byte) error {
			r, _, err := getRecord(tx, idOf(k))
			if err != nil {
				return err
			}
			switch {
			case match != nil && !match(r):
			case r.PayloadDropped:
				gone++
			default:
				ids = append(ids, r.ID)
			}
			return nil
		})
	})
	if err != nil {
		return 0, gone, err
	}
	requeued, err = l.requeueIDs(state, ids, actor)
	return requeued, gone, err
}

// requeueIDs requeues the records of ids still in state, a batch per
// transaction, and says how many it requeued. One requeued meanwhile by
// someone else, or swept, is left alone.
func (l *Log) requeueIDs(state State, ids []uint64, actor string) (requeued int, err error) {
	// Lanes take requeued records in id order whatever order they come
	// back in (joinLane); ids sorted keep the batches' work local.
	slices.Sort(ids)
	for len(ids) > 0 {
		batch := ids[:min(len(ids), sweepBatch)]
		ids = ids[len(batch):]
		now := l.opts.Now()
		n := 0
		err := l.update(func(tx *bolt.Tx) error {
			n = 0
			for _, id := range batch {
				r, _, err := getRecord(tx, id)
				if errors.Is(err, ErrNotFound) || err == nil && (r.State != state || r.PayloadDropped) {
					continue
				}
				if err != nil {
					return err
				}
				if err := requeueTx(tx, id, now, actor); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return requeued, err
		}
		requeued += n
	}
	return requeued, nil
}

// transition loads a record in state from, lets fn change it, and writes
// it back with the state counters moved, in one transaction.
func (l *Log) transition(id uint64, from State, fn func(tx *bolt.Tx, r *Record) error) error {
	now := l.opts.Now()
	return l.update(func(tx *bolt.Tx) error {
		return transitionTx(tx, id, from, now, func(r *Record) error { return fn(tx, r) })
	})
}

// transitionTx is transition within tx.
func transitionTx(tx *bolt.Tx, id uint64, from State, now time.Time, fn func(r *Record) error) error {
	r, payload, err := getRecord(tx, id)
	if err != nil {
		return err
	}
	if r.State != from {
		return fmt.Errorf("%w: record %d is %s, not %s", ErrTransition, id, r.State, from)
	}
	if err := fn(r); err != nil {
		return err
	}
	r.Updated = now
	if err := putRecord(tx, r, payload); err != nil {
		return err
	}
	return moveCount(tx, from, r.State)
}

func moveCount(tx *bolt.Tx, from, to State) error {
	if from == to {
		return nil
	}
	if err := addCount(tx, from, -1); err != nil {
		return err
	}
	return addCount(tx, to, 1)
}

// leaveLane removes a finished record from the pending indexes and makes
// the next record of its lane claimable.
func leaveLane(tx *bolt.Tx, r *Record) error {
	for _, del := range []struct {
		b []byte
		k []byte
	}{{bInflight, itob(r.ID)}, {bPending, itob(r.ID)}, {bLanes, laneKey(r.Lane, r.ID)}} {
		if err := tx.Bucket(del.b).Delete(del.k); err != nil {
			return err
		}
	}
	next := laneHead(tx, r.Lane)
	if next == 0 {
		return nil
	}
	n, _, err := getRecord(tx, next)
	if err != nil {
		return err
	}
	if n.State == InProgress {
		return nil
	}
	return tx.Bucket(bReady).Put(timeKey(n.ReadyAt, next), nil)
}

// joinLane puts a record back among its lane's pending records. It becomes
// claimable if it is now the lane's oldest and the lane has nothing in
// progress; a younger head that was waiting to be claimed steps back.
func joinLane(tx *bolt.Tx, r *Record) error {
	head := laneHead(tx, r.Lane)
	if err := tx.Bucket(bPending).Put(itob(r.ID), nil); err != nil {
		return err
	}
	if err := tx.Bucket(bLanes).Put(laneKey(r.Lane, r.ID), nil); err != nil {
		return err
	}
	if head != 0 {
		h, _, err := getRecord(tx, head)
		if err != nil {
			return err
		}
		if h.State == InProgress || head < r.ID {
			return nil
		}
		if err := tx.Bucket(bReady).Delete(timeKey(h.ReadyAt, head)); err != nil {
			return err
		}
	}
	return tx.Bucket(bReady).Put(timeKey(r.ReadyAt, r.ID), nil)
}

// openPayload decrypts and decompresses a record's payload in place.
func (l *Log) openPayload(r *Record) error {
	if r.PayloadDropped {
		return nil
	}
	if r.sealed {
		if l.opts.Keyring == nil {
			return ErrEncrypted
		}
		plain, err := l.opts.Keyring.open(r.Payload, []byte(r.Key))
		if err != nil {
			return fmt.Errorf("record %d: %w", r.ID, err)
		}
		r.Payload = plain
	}
	if r.compressed {
		plain, err := decompressPayload(r.Payload, r.PayloadLen)
		if err != nil {
			return fmt.Errorf("record %d: %w", r.ID, err)
		}
		r.Payload = plain
	}
	return nil
}

// Hasten makes retrying records that match ready now instead of at their
// retry time, and returns how many it moved. Only records waiting for a
// later time are looked at (a walk of the ready index from now on), so it
// is cheap when few records wait. Write-back uses it to try held notes
// again as soon as new EHR data has been applied.
func (l *Log) Hasten(match func(*Record) bool) (int, error) {
	now := l.opts.Now()
	from := timeKey(now.Add(time.Nanosecond), 0)
	// Look first in a read transaction: most calls find nothing, and
	// then cost no commit (no fsync).
	found := false
	err := l.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bReady).Cursor()
		for k, _ := c.Seek(from); k != nil && !found; k, _ = c.Next() {
			r, _, err := getRecord(tx, btoi(k[8:]))
			if err != nil {
				return err
			}
			found = r.State == Retrying && match(r)
		}
		return nil
	})
	if err != nil || !found {
		return 0, err
	}
	n := 0
	err = l.update(func(tx *bolt.Tx) error {
		n = 0
		ready := tx.Bucket(bReady)
		type move struct {
			key []byte
			r   *Record
			p   []byte
		}
		var moves []move
		c := ready.Cursor()
		for k, _ := c.Seek(from); k != nil; k, _ = c.Next() {
			r, payload, err := getRecord(tx, btoi(k[8:]))
			if err != nil {
				return err
			}
			if r.State == Retrying && match(r) {
				moves = append(moves, move{append([]byte(nil), k...), r, payload})
			}
		}
		for _, m := range moves {
			if err := ready.Delete(m.key); err != nil {
				return err
			}
			m.r.ReadyAt, m.r.Updated = now, now
			if err := putRecord(tx, m.r, m.p); err != nil {
				return err
			}
			if err := addHistory(tx, m.r.ID, Event{At: now, Kind: EventHastened, State: Retrying, Reason: m.r.Reason}); err != nil {
				return err
			}
			if err := ready.Put(timeKey(now, m.r.ID), nil); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

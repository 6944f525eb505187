package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Entry is what a source appends.
type Entry struct {
	Key    string // the sender's identity for the message; at most MaxKeyLen bytes
	Source string
	Kind   RecordKind
	Type   string
	Hash   [32]byte // content hash; equal hashes under one key make a retransmit
	// Lane is the patient identity that orders records; empty gives the
	// record a lane of its own.
	Lane string
	// LaneHash, when set, is the lane itself (as LaneOfPrefix gives it),
	// in place of Lane: an entry that must follow earlier records whose
	// lane key it cannot compute.
	LaneHash *[16]byte
	Payload  []byte
	Ack      []byte // the acknowledgment to store and send
	Received time.Time
	// LegacyKey, when set and different from Key, is the key an earlier
	// release gave the same message. A record stored under it with the
	// same content hash makes the entry a Duplicate (its original ACK is
	// returned), so that retransmits across an upgrade that changed the
	// key form are still recognised. A record under it with another hash
	// is not a conflict: the old form may have lumped distinct senders
	// together, which is why it was replaced.
	LegacyKey string
}

// MaxKeyLen bounds record keys (bbolt allows 32 KiB; real keys are short).
const MaxKeyLen = 1024

// Outcome is what Append did with an entry.
type Outcome uint8

// Append outcomes.
const (
	Appended  Outcome = 1 // a new record
	Duplicate Outcome = 2 // a retransmit of an existing record: send Result.Ack
	Conflict  Outcome = 3 // same key, different content: recorded as a conflict, not queued
)

func (o Outcome) String() string {
	switch o {
	case Appended:
		return "appended"
	case Duplicate:
		return "duplicate"
	case Conflict:
		return "conflict"
	}
	return "unknown"
}

// Result reports an Append.
type Result struct {
	Outcome Outcome
	// ID is the record's id: the new one, or for a duplicate or conflict
	// the existing record with that key.
	ID uint64
	// Ack is the acknowledgment stored with the record: for a duplicate the
	// original's bytes, to be sent again verbatim.
	Ack []byte
	// ConflictID identifies the conflict entry for a Conflict.
	ConflictID uint64
}

type appendOp struct {
	e     *Entry
	value []byte // the encoded record, built before queueing
	// keyed is the entry's content hash as the log stores it (keyedHash
	// with a key configured, else the entry's own).
	keyed [32]byte
	res   Result
	err   error
	// signal tells a waiting appender its outcome: false when another
	// appender committed it, true when it is to lead the next commit.
	signal chan bool
}

// Append makes e durable, or recognises it as a retransmit or a conflict,
// and returns once the outcome is fsynced. Concurrent calls share commits.
// A cancelled ctx is refused before queueing; once queued, Append waits for
// the commit, so that its answer is always the truth.
func (l *Log) Append(ctx context.Context, e Entry) (Result, error) {
	if l.opts.ReadOnly {
		return Result{}, errors.New("checkpoint: log is open read-only")
	}
	if e.Key == "" || len(e.Key) > MaxKeyLen {
		return Result{}, fmt.Errorf("checkpoint: record key must be 1 to %d bytes", MaxKeyLen)
	}
	if e.Received.IsZero() {
		e.Received = l.opts.Now()
	}
	if !l.opened.Load() {
		// Open returned the log unopened (its file system refused the
		// opening): each append retries the opening, and the lane hash
		// below needs the log's salt.
		l.mu.RLock()
		err := ErrClosed
		if !l.closed {
			err = l.finishOpening()
		}
		l.mu.RUnlock()
		if err != nil {
			return Result{}, err
		}
	}
	// Everything that costs CPU happens here, in the caller's goroutine,
	// so that the single writer only looks up and puts.
	buf := compressBufs.Get().(*[]byte)
	stored, compressed := compressTo(*buf, e.Payload)
	if compressed {
		*buf = stored[:0]
	} else {
		stored = e.Payload
	}
	if l.opts.Keyring != nil {
		stored = l.opts.Keyring.seal(stored, []byte(e.Key))
	}
	r := &Record{
		Key: e.Key, Source: e.Source, Kind: e.Kind, Type: e.Type, Hash: e.Hash, Lane: l.entryLane(&e),
		Received: e.Received, State: Received, ReadyAt: e.Received, Updated: e.Received, Ack: e.Ack,
		PayloadLen: len(e.Payload), sealed: l.opts.Keyring != nil, compressed: compressed,
	}
	keyed := e.Hash
	if l.opts.Keyring != nil {
		keyed = l.keyedHash(e.Hash)
		r.Hash, r.hashKeyed = keyed, true
	}
	value, err := encodeRecord(r, stored)
	if cap(*buf) <= maxPooledCompress { // stored is copied into value by now
		compressBufs.Put(buf)
	}
	if err != nil {
		return Result{}, err
	}
	if ctx.Err() != nil {
		return Result{}, ctx.Err()
	}
	op := &appendOp{e: &e, value: value, keyed: keyed, signal: make(chan bool, 1)}
	l.wmu.Lock()
	if l.stopping {
		l.wmu.Unlock()
		return Result{}, ErrClosed
	}
	l.inflight.Add(1)
	defer l.inflight.Done()
	l.queue = append(l.queue, op)
	if l.committing {
		if l.gathering && len(l.queue) >= l.lastBatch {
			select {
			case l.gathered <- struct{}{}:
			default:
			}
		}
		l.wmu.Unlock()
		if lead := <-op.signal; !lead {
			return op.res, op.err
		}
	} else {
		l.committing = true
		l.wmu.Unlock()
	}
	l.lead(op)
	return op.res, op.err
}

// lead commits everything queued, its own append included, in one
// transaction and answers the others; then it hands the lead to the first
// append that queued meanwhile, or steps down. Appenders thus commit for
// each other without a writer goroutine in between: a lone sender's record
// is committed by its own goroutine, with no hand-off to wait for.
//
// With many senders, the answers to one commit come back as new appends a
// network round trip later, so a leader that commits at once catches only
// the quickest of them and every commit pays a full fsync for a fraction
// of the senders. When the last commit carried several appends, the leader
// therefore waits for as many to queue, at most half the last commit's
// duration. On loopback MLLP with 64 connections that raised throughput by
// 15-45% at GOMAXPROCS=2; since ehrbridge runs with two spare Ps (see
// cmd/ehrbridge/procs.go) the committer no longer waits for a P after its
// fsync, and this wait and waiting for the batch before last measure
// within noise of each other; not waiting measured within noise on one day
// and 4-22% slower on another, and waiting for larger batches (1.5-3x the
// last, or until appends pause) no better and mostly worse (README,
// Performance). A lone sender (last batch of one) never waits.
func (l *Log) lead(self *appendOp) {
	l.wmu.Lock()
	if want := l.lastBatch; want > 1 && len(l.queue) < want {
		l.gathering = true
		l.wmu.Unlock()
		t := time.NewTimer(l.lastCommit / 2)
		select {
		case <-l.gathered:
		case <-t.C:
		}
		t.Stop()
		l.wmu.Lock()
		l.gathering = false
		select { // drop a signal that raced the timer
		case <-l.gathered:
		default:
		}
	}
	n := min(len(l.queue), l.opts.MaxBatch)
	batch := append([]*appendOp(nil), l.queue[:n]...)
	l.queue = append(l.queue[:0], l.queue[n:]...)
	l.wmu.Unlock()

	start := time.Now()
	err := l.commit(batch)
	elapsed := time.Since(start)
	// Counted before any appender has its answer, so that CommitStats
	// read after an acknowledgment includes the commit behind it.
	l.commitStats.observe(len(batch), elapsed, err != nil)
	for _, op := range batch {
		if op != self {
			op.signal <- false
		}
	}
	if l.opts.OnCommit != nil {
		l.opts.OnCommit(len(batch), elapsed)
	}

	l.wmu.Lock()
	l.lastBatch, l.lastCommit = len(batch), elapsed
	if len(l.queue) == 0 {
		l.committing = false
		l.wmu.Unlock()
		return
	}
	next := l.queue[0]
	l.wmu.Unlock()
	next.signal <- true
}

func (l *Log) entryLane(e *Entry) [16]byte {
	if e.LaneHash != nil {
		return *e.LaneHash
	}
	return l.LaneHash(laneOrKey(e.Lane, e.Key))
}

// laneOrKey gives an entry without lane a lane of its own.
func laneOrKey(lane, key string) string {
	if lane == "" {
		return "\x00key\x00" + key
	}
	return lane
}

// commit writes batch in one transaction and sets each op's outcome; the
// error is the transaction's, already given to every op.
func (l *Log) commit(batch []*appendOp) error {
	err := l.finishOpening()
	if err == nil {
		err = l.payOwed()
	}
	if err != nil {
		for _, op := range batch {
			op.res, op.err = Result{}, err
		}
		return err
	}
	err = l.db.Update(func(tx *bolt.Tx) error {
		// Ids are sequential: record pages are only ever appended to
		// here, so they are filled, not split in halves.
		tx.Bucket(bRecords).FillPercent = 1
		appended := int64(0)
		for _, op := range batch {
			res, err := l.appendTx(tx, op)
			if err != nil {
				return err
			}
			op.res = res
			if res.Outcome == Appended {
				appended++
			}
		}
		if appended == 0 {
			return nil
		}
		return addCount(tx, Received, appended)
	})
	err = asStorage("append", err)
	l.storage.note(err)
	if err != nil {
		werr := err
		if !errors.Is(err, ErrStorage) {
			werr = fmt.Errorf("checkpoint: append not committed: %w", err)
		}
		for _, op := range batch {
			op.res, op.err = Result{}, werr
		}
	}
	return err
}

// failNext lets tests make a commit fail part-way, after earlier entries
// of the same batch were written to the transaction.
var failNext func(*Entry) bool

var errInjected = errors.New("checkpoint: injected failure")

// storedUnder returns the record stored under key, or nil.
func storedUnder(tx *bolt.Tx, keys *bolt.Bucket, key string) (uint64, *Record, error) {
	v := keys.Get([]byte(key))
	if v == nil {
		return 0, nil, nil
	}
	id := btoi(v)
	rec, _, err := getRecord(tx, id)
	return id, rec, err
}

// sameContent says whether a stored record has the entry's content: its
// hash compared in the form the record holds (keyed, or as the source gave
// it in records written before a key was configured), so that retransmits
// of those are still recognised.
func sameContent(r *Record, op *appendOp) bool {
	if r.hashKeyed {
		return r.Hash == op.keyed
	}
	return r.Hash == op.e.Hash
}

func (l *Log) appendTx(tx *bolt.Tx, op *appendOp) (Result, error) {
	e := op.e
	if failNext != nil && failNext(e) {
		return Result{}, errInjected
	}
	keys := tx.Bucket(bKeys)
	id, existing, err := storedUnder(tx, keys, e.Key)
	if err != nil {
		return Result{}, err
	}
	if existing != nil {
		if sameContent(existing, op) {
			return Result{Outcome: Duplicate, ID: id, Ack: append([]byte(nil), existing.Ack...)}, nil
		}
		cid, err := l.putConflict(tx, id, op)
		if err != nil {
			return Result{}, err
		}
		return Result{Outcome: Conflict, ID: id, ConflictID: cid, Ack: append([]byte(nil), existing.Ack...)}, nil
	}
	if e.LegacyKey != "" && e.LegacyKey != e.Key && len(e.LegacyKey) <= MaxKeyLen {
		// Only a retransmit is recognised under the old key form: other
		// content there may be another sender the old form could not
		// tell apart, so it is stored as new, not taken for a conflict.
		id, existing, err := storedUnder(tx, keys, e.LegacyKey)
		if err != nil {
			return Result{}, err
		}
		if existing != nil && sameContent(existing, op) {
			return Result{Outcome: Duplicate, ID: id, Ack: append([]byte(nil), existing.Ack...)}, nil
		}
	}
	// The record joins the pending and lane indexes later, when Claim
	// indexes new records: until then, being after the lane cursor is
	// what makes it pending. Lane indexes are keyed by patient, so writing
	// them here would dirty a random page per record on the path the
	// sender waits on, and the pending index costs this commit a fifth of
	// its CPU; Claim writes both for thousands of records at once, and the
	// patient index (patients.go) with them: written here it cost durable
	// ingest with 64 senders a third of its rate. Find reads the records
	// after the lane cursor for a patient search.
	records := tx.Bucket(bRecords)
	id, err = records.NextSequence()
	if err != nil {
		return Result{}, err
	}
	if err := records.Put(itob(id), op.value); err != nil {
		return Result{}, err
	}
	if err := keys.Put([]byte(e.Key), itob(id)); err != nil {
		return Result{}, err
	}
	return Result{Outcome: Appended, ID: id, Ack: e.Ack}, nil
}

// laneHead returns the oldest pending record of a lane, or 0.
func laneHead(tx *bolt.Tx, lane [16]byte) uint64 {
	k, _ := tx.Bucket(bLanes).Cursor().Seek(lane[:])
	if len(k) != 24 || string(k[:16]) != string(lane[:]) {
		return 0
	}
	return btoi(k[16:])
}

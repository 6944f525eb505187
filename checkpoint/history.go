package checkpoint

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A record's history is what happened to it after it was appended: every
// settlement (the CRM's answer) and every admin action, newest last, in
// its own bucket (bHistory, id → events), at most MaxHistory events (the
// oldest go first). It is written in the transaction that changes the
// record, deleted with the record by retention and kept when the payload
// is dropped. It holds what Reason holds (codes, field names, object
// names, ids returned, admins' names), never patient data: the CRM's
// prose stays in the sealed detail.

// MaxHistory bounds the events kept per record.
const MaxHistory = 50

// EventKind says what a history event records.
type EventKind string

// History event kinds.
const (
	// EventSettled: an attempt ended (the CRM answered, or not).
	EventSettled EventKind = "settled"
	// EventInterrupted: the process stopped while the record was in
	// progress; it went back to retrying.
	EventInterrupted EventKind = "interrupted"
	// EventRequeued: an admin put a dead or skipped record back in its lane.
	EventRequeued EventKind = "requeued"
	// EventClosed: an admin closed a dead record (it became skipped).
	EventClosed EventKind = "closed"
	// EventConflictKept: an admin dismissed a conflict, keeping the
	// stored message.
	EventConflictKept EventKind = "conflict_kept"
	// EventConflictAccepted: an admin accepted a conflicting message in
	// place of the stored one; the record was requeued.
	EventConflictAccepted EventKind = "conflict_accepted"
	// EventHastened: a retrying record was made ready now (a held note
	// released by an admin, or by write-back when new EHR data came).
	EventHastened EventKind = "hastened"
)

// Event is one entry of a record's history.
type Event struct {
	At   time.Time
	Kind EventKind
	// State is the record's state after the event.
	State State
	// Reason is the settlement's reason (or the admin action's note),
	// free of patient data.
	Reason string
	// Code is the CRM's error code, when it gave one.
	Code string
	// Op is the 1-based number, among the record's ops, of the op the
	// failure concerns; Object and Action name it ("Contact", "upsert by
	// MRN__c"); Mapping the mapping that made it. Zero values: unknown.
	Op      int
	Object  string
	Action  string
	Mapping string
	// Targets are the ids the CRM returned.
	Targets []string
	// RetryAt is when a retrying record is tried next.
	RetryAt time.Time
	// Actor names who acted: the admin (user or account) for an admin
	// action, "" for the pipeline's own settlements.
	Actor string
	// Conflict is the conflict entry an admin resolved.
	Conflict uint64
}

// storedEvent is an Event as stored (JSON, short names).
type storedEvent struct {
	At       int64     `json:"t"`
	Kind     EventKind `json:"k"`
	State    State     `json:"s,omitempty"`
	Reason   string    `json:"r,omitempty"`
	Code     string    `json:"c,omitempty"`
	Op       int       `json:"o,omitempty"`
	Object   string    `json:"ob,omitempty"`
	Action   string    `json:"ac,omitempty"`
	Mapping  string    `json:"m,omitempty"`
	Targets  []string  `json:"tg,omitempty"`
	RetryAt  int64     `json:"ra,omitempty"`
	Actor    string    `json:"by,omitempty"`
	Conflict uint64    `json:"cf,omitempty"`
}

func decodeHistory(v []byte) ([]Event, error) {
	if len(v) == 0 {
		return nil, nil
	}
	var ss []storedEvent
	if err := json.Unmarshal(v, &ss); err != nil {
		return nil, fmt.Errorf("%w: history: %v", errCorrupt, err)
	}
	out := make([]Event, len(ss))
	for i, s := range ss {
		out[i] = Event{At: time.Unix(0, s.At), Kind: s.Kind, State: s.State, Reason: s.Reason, Code: s.Code, Op: s.Op,
			Object: s.Object, Action: s.Action, Mapping: s.Mapping, Targets: s.Targets, RetryAt: fromNanos(s.RetryAt),
			Actor: s.Actor, Conflict: s.Conflict}
	}
	return out, nil
}

// addHistory appends ev to record id's history in tx, dropping the oldest
// events beyond MaxHistory. A log opened read-only never gets here; a
// bucket missing (a log of schema 3 being migrated has it) is made.
func addHistory(tx *bolt.Tx, id uint64, ev Event) error {
	b, err := tx.CreateBucketIfNotExists(bHistory)
	if err != nil {
		return err
	}
	var ss []storedEvent
	if v := b.Get(itob(id)); len(v) > 0 {
		if err := json.Unmarshal(v, &ss); err != nil {
			// A damaged history must not block the record: start over
			// (log check reports damage before it gets here).
			ss = nil
		}
	}
	if code, _, ok := legacyCRMReason(ev.Reason); ok {
		// A reason in the form releases before issue 28 wrote (code:
		// the CRM's message) may quote patient data; the history keeps
		// the code only, as Reseal does for the record's own reason.
		ev.Reason = "crm error " + code + "; the CRM's message: log show --reveal"
		if ev.Code == "" {
			ev.Code = code
		}
	}
	ss = append(ss, storedEvent{At: ev.At.UnixNano(), Kind: ev.Kind, State: ev.State, Reason: ev.Reason, Code: ev.Code,
		Op: ev.Op, Object: ev.Object, Action: ev.Action, Mapping: ev.Mapping, Targets: ev.Targets, RetryAt: nanos(ev.RetryAt),
		Actor: ev.Actor, Conflict: ev.Conflict})
	if len(ss) > MaxHistory {
		ss = ss[len(ss)-MaxHistory:]
	}
	v, err := json.Marshal(ss)
	if err != nil {
		return err
	}
	return b.Put(itob(id), v)
}

// History returns a record's history, oldest first; empty for a record
// nothing happened to yet, ErrNotFound for no such record.
func (l *Log) History(id uint64) ([]Event, error) {
	var out []Event
	err := l.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bRecords).Get(itob(id)) == nil {
			return fmt.Errorf("%w: %d", ErrNotFound, id)
		}
		var err error
		out, err = historyTx(tx, id)
		return err
	})
	return out, err
}

func historyTx(tx *bolt.Tx, id uint64) ([]Event, error) {
	b := tx.Bucket(bHistory)
	if b == nil {
		return nil, nil // a log of schema 3 opened read-only
	}
	return decodeHistory(b.Get(itob(id)))
}

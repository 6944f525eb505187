package checkpoint

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ConflictEntry records a message that reused an existing record's key
// with different content: the sender reused a control id, or changed a
// message and resent it under the old one. It is not queued; an admin
// decides.
type ConflictEntry struct {
	ID       uint64
	RecordID uint64 // the record that holds the key
	Key      string
	Source   string
	Type     string
	Hash     [32]byte
	Received time.Time
	// PayloadLen is the conflicting payload's size; the payload itself is
	// kept (sealed when a key is configured) for `log show --reveal`.
	PayloadLen int
	sealed     bool
	keyed      bool // Hash is keyed (see Record.Hash)
}

type storedConflict struct {
	RecordID uint64 `json:"rid"`
	Key      string `json:"k"`
	Source   string `json:"s"`
	Type     string `json:"t,omitempty"`
	Hash     []byte `json:"h"`
	Received int64  `json:"r"`
	Len      int    `json:"pl"`
	Sealed   bool   `json:"sl,omitempty"`
	// Keyed: Hash is keyed (see Record.Hash).
	Keyed   bool   `json:"hk,omitempty"`
	Payload []byte `json:"p"`
}

func (l *Log) putConflict(tx *bolt.Tx, recordID uint64, op *appendOp) (uint64, error) {
	b := tx.Bucket(bConflicts)
	id, err := b.NextSequence()
	if err != nil {
		return 0, err
	}
	payload := op.e.Payload
	if l.opts.Keyring != nil {
		// Bound to the conflict, not the record key, so it can never be
		// mistaken for the record's own payload.
		payload = l.opts.Keyring.seal(op.e.Payload, conflictAAD(id))
	}
	v, err := json.Marshal(storedConflict{RecordID: recordID, Key: op.e.Key, Source: op.e.Source, Type: op.e.Type,
		Hash: op.keyed[:], Received: op.e.Received.UnixNano(), Len: len(op.e.Payload), Sealed: l.opts.Keyring != nil,
		Keyed: l.opts.Keyring != nil, Payload: payload})
	if err != nil {
		return 0, err
	}
	if err := b.Put(itob(id), v); err != nil {
		return 0, err
	}
	return id, addCounter(tx, countConflicts, 1)
}

func conflictAAD(id uint64) []byte { return []byte(fmt.Sprintf("conflict/%d", id)) }

func decodeConflict(id uint64, v []byte) (*ConflictEntry, []byte, error) {
	var s storedConflict
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, nil, fmt.Errorf("%w: conflict %d: %v", errCorrupt, id, err)
	}
	c := &ConflictEntry{ID: id, RecordID: s.RecordID, Key: s.Key, Source: s.Source, Type: s.Type,
		Received: time.Unix(0, s.Received), PayloadLen: s.Len, sealed: s.Sealed, keyed: s.Keyed}
	copy(c.Hash[:], s.Hash)
	return c, s.Payload, nil
}

// resealConflict returns a stored conflict with its payload replaced by
// sealed (sealed with the active key).
func resealConflict(v, sealed []byte) ([]byte, error) {
	var s storedConflict
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, fmt.Errorf("%w: conflict: %v", errCorrupt, err)
	}
	s.Sealed, s.Payload = true, sealed
	return json.Marshal(s)
}

// rekeyConflictHash returns a stored conflict with its hash keyed by
// keyed, when it is not yet.
func rekeyConflictHash(v []byte, keyed func([32]byte) [32]byte) ([]byte, bool, error) {
	var s storedConflict
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, false, fmt.Errorf("%w: conflict: %v", errCorrupt, err)
	}
	if s.Keyed || len(s.Hash) != 32 {
		return v, false, nil
	}
	h := keyed([32]byte(s.Hash))
	s.Hash, s.Keyed = h[:], true
	out, err := json.Marshal(s)
	return out, err == nil, err
}

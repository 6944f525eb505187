package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// State is where a record is in its life.
type State uint8

// Record states.
const (
	Received   State = 1 // appended, waiting for its turn
	InProgress State = 2 // claimed by a worker
	Done       State = 3 // applied to its target
	Retrying   State = 4 // failed transiently; ready again at NextAttempt
	Dead       State = 5 // failed permanently; waits for an admin
)

var stateNames = map[State]string{Received: "received", InProgress: "in_progress", Done: "done", Retrying: "retrying", Dead: "dead"}

// States lists every state in lifecycle order.
var States = []State{Received, InProgress, Done, Retrying, Dead}

func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("state(%d)", s)
}

// ParseState parses a state name as String writes it.
func ParseState(s string) (State, error) {
	for st, n := range stateNames {
		if n == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown state %q (want received, in_progress, done, retrying or dead)", s)
}

// Record is one logged message and its processing state.
type Record struct {
	ID       uint64
	Key      string
	Source   string
	Kind     string // "hl7v2", later "fhir", "note"
	Type     string // message type for display, e.g. "ADT^A01"
	Hash     [32]byte
	Lane     [16]byte // keyed hash of the lane key (patient identity)
	Received time.Time
	State    State
	Attempts int
	// ReadyAt is when the record may next be claimed: its arrival for a
	// received record, the next attempt for a retrying one.
	ReadyAt time.Time
	Reason  string   // last error (retrying) or why it died; free of patient data
	Targets []string // ids of what the record became in the target system
	Updated time.Time
	DoneAt  time.Time
	// Ack is the acknowledgment sent for the original, returned verbatim
	// to retransmits.
	Ack []byte
	// PayloadLen is the payload's size as received; PayloadDropped says
	// that retention removed it.
	PayloadLen     int
	PayloadDropped bool
	sealed         bool
	// Payload is filled only by the calls that document it.
	Payload []byte
}

// stored is the on-disk form of a record's metadata.
type stored struct {
	Key      string   `json:"k"`
	Source   string   `json:"s"`
	Kind     string   `json:"kd,omitempty"`
	Type     string   `json:"t,omitempty"`
	Hash     []byte   `json:"h"`
	Lane     []byte   `json:"l"`
	Received int64    `json:"r"`
	State    State    `json:"st"`
	Attempts int      `json:"a,omitempty"`
	ReadyAt  int64    `json:"ra,omitempty"`
	Reason   string   `json:"re,omitempty"`
	Targets  []string `json:"tg,omitempty"`
	Updated  int64    `json:"u"`
	DoneAt   int64    `json:"d,omitempty"`
	Ack      []byte   `json:"ack,omitempty"`
	Len      int      `json:"pl"`
	Dropped  bool     `json:"dr,omitempty"`
	Sealed   bool     `json:"sl,omitempty"`
}

const recordVersion = 1

var errCorrupt = errors.New("checkpoint: corrupt record")

// encodeRecord writes version, metadata length, metadata and payload.
func encodeRecord(r *Record, payload []byte) ([]byte, error) {
	s := stored{
		Key: r.Key, Source: r.Source, Kind: r.Kind, Type: r.Type, Hash: r.Hash[:], Lane: r.Lane[:],
		Received: r.Received.UnixNano(), State: r.State, Attempts: r.Attempts, ReadyAt: nanos(r.ReadyAt),
		Reason: r.Reason, Targets: r.Targets, Updated: nanos(r.Updated), DoneAt: nanos(r.DoneAt), Ack: r.Ack,
		Len: r.PayloadLen, Dropped: r.PayloadDropped, Sealed: r.sealed,
	}
	meta, err := json.Marshal(&s)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: encoding record: %w", err)
	}
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(meta)+len(payload))
	out = append(out, recordVersion)
	out = binary.AppendUvarint(out, uint64(len(meta)))
	out = append(out, meta...)
	return append(out, payload...), nil
}

// decodeRecord parses a stored value. The returned payload aliases v: copy
// it before the transaction ends.
func decodeRecord(id uint64, v []byte) (*Record, []byte, error) {
	if len(v) < 2 || v[0] != recordVersion {
		return nil, nil, fmt.Errorf("%w %d: unknown version", errCorrupt, id)
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || uint64(len(v)-1-w) < n {
		return nil, nil, fmt.Errorf("%w %d: bad length", errCorrupt, id)
	}
	meta, payload := v[1+w:1+w+int(n)], v[1+w+int(n):]
	var s stored
	if err := json.Unmarshal(meta, &s); err != nil {
		return nil, nil, fmt.Errorf("%w %d: %v", errCorrupt, id, err)
	}
	r := &Record{
		ID: id, Key: s.Key, Source: s.Source, Kind: s.Kind, Type: s.Type, Received: time.Unix(0, s.Received),
		State: s.State, Attempts: s.Attempts, ReadyAt: fromNanos(s.ReadyAt), Reason: s.Reason, Targets: s.Targets,
		Updated: fromNanos(s.Updated), DoneAt: fromNanos(s.DoneAt), Ack: s.Ack, PayloadLen: s.Len,
		PayloadDropped: s.Dropped, sealed: s.Sealed,
	}
	copy(r.Hash[:], s.Hash)
	copy(r.Lane[:], s.Lane)
	return r, payload, nil
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func itob(id uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	return b[:]
}

func btoi(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// timeKey is an index key ordered by time, then id.
func timeKey(t time.Time, id uint64) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixNano()))
	binary.BigEndian.PutUint64(b[8:], id)
	return b[:]
}

func laneKey(lane [16]byte, id uint64) []byte {
	b := make([]byte, 24)
	copy(b, lane[:])
	binary.BigEndian.PutUint64(b[16:], id)
	return b
}

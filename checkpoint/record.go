package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
	// Skipped: nothing was to be done (no mapping accepts the message);
	// acknowledged and stored, not applied. Retention treats it as done;
	// an admin may requeue it (after adding a mapping, say).
	Skipped State = 6
)

var stateNames = map[State]string{Received: "received", InProgress: "in_progress", Done: "done", Retrying: "retrying", Dead: "dead",
	Skipped: "skipped"}

// States lists every state in lifecycle order.
var States = []State{Received, InProgress, Done, Retrying, Dead, Skipped}

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
	return 0, fmt.Errorf("unknown state %q (want received, in_progress, done, retrying, dead or skipped)", s)
}

// Finished says whether a record is settled for good unless an admin
// acts: done, dead or skipped. It has left its lane.
func (s State) Finished() bool { return s == Done || s == Dead || s == Skipped }

// WarningsPrefix starts the reason of a record that was done with
// warnings: mapped and applied, some fields left out (see Settlement).
const WarningsPrefix = "mapped with warnings: "

// maxWarningsReason bounds the reason of a record done with warnings.
const maxWarningsReason = 480

// WarningsReason is the reason kept on a record done with warnings: the
// prefix and the warnings joined by "; ", as many as fit in a bounded
// length, then how many more there were. Empty without warnings.
func WarningsReason(warnings []string) string {
	if len(warnings) == 0 {
		return ""
	}
	if all := WarningsPrefix + strings.Join(warnings, "; "); len(all) <= maxWarningsReason {
		return all
	}
	out := WarningsPrefix
	for i, w := range warnings {
		if i > 0 {
			w = "; " + w
		}
		// Room for the note of what is left out after this one.
		more := ""
		if left := len(warnings) - i - 1; left > 0 {
			more = fmt.Sprintf(" (and %d more)", left)
		}
		if len(out)+len(w)+len(more) > maxWarningsReason {
			if i == 0 {
				// One warning longer than the whole bound: cut it.
				w = cutRunes(w, maxWarningsReason-len(out)-len(more)-len("…")) + "…"
				return out + w + more
			}
			return out + fmt.Sprintf(" (and %d more)", len(warnings)-i)
		}
		out += w
	}
	return out
}

// cutRunes cuts s to at most n bytes, on a rune boundary.
func cutRunes(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// Warned says whether a record was done with warnings.
func (r *Record) Warned() bool { return r.State == Done && strings.HasPrefix(r.Reason, WarningsPrefix) }

// Record is one logged message and its processing state.
type Record struct {
	ID     uint64
	Key    string
	Source string
	Kind   RecordKind
	Type   string // message type for display, e.g. "ADT^A01"
	// Hash is the content hash as stored: keyed with the log's salt when
	// a key is configured (a bare hash of a message can confirm a guess
	// of its content), the source's hash in older records.
	Hash     [32]byte
	Lane     [16]byte // keyed hash of the lane key (patient identity)
	Received time.Time
	State    State
	Attempts int
	// ReadyAt is when the record may next be claimed: its arrival for a
	// received record, the next attempt for a retrying one.
	ReadyAt time.Time
	// Reason is the last error (retrying), why it died or was skipped,
	// or, for a done record, its warnings (see Warned); free of patient
	// data.
	Reason  string
	Targets []string // ids of what the record became in the target system
	Updated time.Time
	DoneAt  time.Time // when it was done or skipped
	// Ack is the acknowledgment sent for the original, returned verbatim
	// to retransmits.
	Ack []byte
	// PayloadLen is the payload's size as received; PayloadDropped says
	// that retention removed it.
	PayloadLen     int
	PayloadDropped bool
	sealed         bool
	compressed     bool
	hashKeyed      bool // Hash is keyed (flagKeyedHash)
	// Payload is filled only by the calls that document it.
	Payload []byte
	// Detail is the prose behind Reason (see Settlement.Detail), filled
	// only by Reveal.
	Detail string
}

// stored is a version 1 record's metadata, as JSON.
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

// Record value versions. Version 1 (schema 1 and 2) held JSON metadata;
// version 2 (schema 3) holds the same fields in binary, which halves the
// metadata: the ACK and the hashes are stored as bytes, not base64, and
// times as differences from the arrival. Both are read; version 2 is
// written.
const (
	recordV1 = 1
	recordV2 = 2
)

// Flags of a version 2 record.
const (
	flagSealed     = 1 << 0 // the payload is sealed (AES-256-GCM)
	flagCompressed = 1 << 1 // the payload is compressed (before sealing)
	flagDropped    = 1 << 2 // retention dropped the payload
	flagDone       = 1 << 3 // DoneAt is set
	flagReady      = 1 << 4 // ReadyAt is set
	flagUpdated    = 1 << 5 // Updated is set
	// flagKeyedHash: Hash is the content hash keyed with the log's salt
	// (see Log.keyedHash), written when a key is configured. An older
	// ehrbridge of schema 3 ignores the bit.
	flagKeyedHash = 1 << 6
)

var errCorrupt = errors.New("checkpoint: corrupt record")

// encodeRecord writes a version 2 record: version, flags, metadata and
// payload, which is stored as given (already compressed and sealed as
// r's flags say).
func encodeRecord(r *Record, payload []byte) ([]byte, error) {
	var flags byte
	for _, f := range []struct {
		on  bool
		bit byte
	}{{r.sealed, flagSealed}, {r.compressed, flagCompressed}, {r.PayloadDropped, flagDropped},
		{!r.DoneAt.IsZero(), flagDone}, {!r.ReadyAt.IsZero(), flagReady}, {!r.Updated.IsZero(), flagUpdated}, {r.hashKeyed, flagKeyedHash}} {
		if f.on {
			flags |= f.bit
		}
	}
	size := 2 + 32 + 16 + 12*binary.MaxVarintLen64 + len(r.Key) + len(r.Source) + len(r.Kind) + len(r.Type) +
		len(r.Reason) + len(r.Ack) + len(payload)
	for _, t := range r.Targets {
		size += binary.MaxVarintLen64 + len(t)
	}
	out := make([]byte, 0, size)
	out = append(out, recordV2, flags)
	for _, f := range []string{r.Key, r.Source, string(r.Kind), r.Type} {
		out = appendString(out, f)
	}
	out = append(out, r.Hash[:]...)
	out = append(out, r.Lane[:]...)
	received := r.Received.UnixNano()
	out = binary.AppendVarint(out, received)
	out = append(out, byte(r.State))
	out = binary.AppendUvarint(out, uint64(max(r.Attempts, 0)))
	// Later times are stored as their distance from the arrival: a few
	// bytes each, none for a time that is not set.
	for _, t := range []struct {
		t   time.Time
		bit byte
	}{{r.ReadyAt, flagReady}, {r.Updated, flagUpdated}, {r.DoneAt, flagDone}} {
		if flags&t.bit != 0 {
			out = binary.AppendVarint(out, t.t.UnixNano()-received)
		}
	}
	out = appendString(out, r.Reason)
	out = binary.AppendUvarint(out, uint64(len(r.Targets)))
	for _, t := range r.Targets {
		out = appendString(out, t)
	}
	out = appendString(out, string(r.Ack))
	out = binary.AppendUvarint(out, uint64(max(r.PayloadLen, 0)))
	return append(out, payload...), nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeRecord parses a stored value of either version. The returned
// payload aliases v: copy it before the transaction ends.
func decodeRecord(id uint64, v []byte) (*Record, []byte, error) {
	if len(v) < 2 {
		return nil, nil, fmt.Errorf("%w %d: too short", errCorrupt, id)
	}
	switch v[0] {
	case recordV1:
		return decodeRecordV1(id, v)
	case recordV2:
		d := decoder{b: v[2:]}
		r, err := d.record(id, v[1])
		if err != nil {
			return nil, nil, fmt.Errorf("%w %d: %v", errCorrupt, id, err)
		}
		return r, d.b, nil
	}
	return nil, nil, fmt.Errorf("%w %d: unknown version %d", errCorrupt, id, v[0])
}

// decoder reads a version 2 record's fields in order; the first problem
// sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("bad %s", what)
	}
	d.b = nil
}

// advance skips a varint of w bytes as binary.(U)varint measured it;
// false (and the decoder failed) when there was none.
func (d *decoder) advance(w int, what string) bool {
	if w <= 0 {
		d.fail(what)
		return false
	}
	d.b = d.b[w:]
	return true
}

func (d *decoder) uvarint(what string) uint64 {
	n, w := binary.Uvarint(d.b)
	if !d.advance(w, what) {
		return 0
	}
	return n
}

func (d *decoder) varint(what string) int64 {
	n, w := binary.Varint(d.b)
	if !d.advance(w, what) {
		return 0
	}
	return n
}

func (d *decoder) bytes(n uint64, what string) []byte {
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) string(what string) string {
	return string(d.bytes(d.uvarint(what), what))
}

func (d *decoder) record(id uint64, flags byte) (*Record, error) {
	r := &Record{ID: id, sealed: flags&flagSealed != 0, compressed: flags&flagCompressed != 0, PayloadDropped: flags&flagDropped != 0,
		hashKeyed: flags&flagKeyedHash != 0}
	var kind string
	r.Key, r.Source, kind, r.Type = d.string("key"), d.string("source"), d.string("kind"), d.string("type")
	r.Kind = RecordKind(kind)
	copy(r.Hash[:], d.bytes(32, "hash"))
	copy(r.Lane[:], d.bytes(16, "lane"))
	received := d.varint("arrival")
	r.Received = time.Unix(0, received)
	if st := d.bytes(1, "state"); len(st) == 1 {
		r.State = State(st[0])
	}
	r.Attempts = int(min(d.uvarint("attempts"), 1<<31))
	for _, t := range []struct {
		t   *time.Time
		bit byte
	}{{&r.ReadyAt, flagReady}, {&r.Updated, flagUpdated}, {&r.DoneAt, flagDone}} {
		if flags&t.bit != 0 {
			*t.t = time.Unix(0, received+d.varint("time"))
		}
	}
	r.Reason = d.string("reason")
	if n := d.uvarint("targets"); n > 0 {
		if n > uint64(len(d.b)) {
			d.fail("targets")
		} else {
			r.Targets = make([]string, n)
			for i := range r.Targets {
				r.Targets[i] = d.string("target")
			}
		}
	}
	if ack := d.bytes(d.uvarint("ack"), "ack"); len(ack) > 0 {
		r.Ack = append([]byte(nil), ack...) // v aliases the database's memory
	}
	r.PayloadLen = int(min(d.uvarint("payload length"), 1<<40))
	return r, d.err
}

// decodeRecordV1 parses a version 1 record: JSON metadata.
func decodeRecordV1(id uint64, v []byte) (*Record, []byte, error) {
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
		ID: id, Key: s.Key, Source: s.Source, Kind: RecordKind(s.Kind), Type: s.Type, Received: time.Unix(0, s.Received),
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

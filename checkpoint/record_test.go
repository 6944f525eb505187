package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// encodeRecordV1 writes a record as schema 1 and 2 logs held it: version
// byte 1, JSON metadata, payload.
func encodeRecordV1(t testing.TB, r *Record, payload []byte) []byte {
	t.Helper()
	s := stored{
		Key: r.Key, Source: r.Source, Kind: string(r.Kind), Type: r.Type, Hash: r.Hash[:], Lane: r.Lane[:],
		Received: r.Received.UnixNano(), State: r.State, Attempts: r.Attempts, ReadyAt: nanos(r.ReadyAt),
		Reason: r.Reason, Targets: r.Targets, Updated: nanos(r.Updated), DoneAt: nanos(r.DoneAt), Ack: r.Ack,
		Len: r.PayloadLen, Dropped: r.PayloadDropped, Sealed: r.sealed,
	}
	meta, err := json.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.AppendUvarint([]byte{recordV1}, uint64(len(meta)))
	return append(append(out, meta...), payload...)
}

func fullRecord() *Record {
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	r := &Record{
		ID: 7, Key: "adt|EPIC|GENHOSP|MSG00042", Source: "adt", Kind: "hl7v2", Type: "ADT^A08",
		Received: at, State: Done, Attempts: 3, ReadyAt: at.Add(-time.Second), Reason: "CRM answered 503",
		Targets: []string{"001xx0000001", "", "a0Bxx00002"}, Updated: at.Add(time.Minute), DoneAt: at.Add(time.Hour),
		Ack:        []byte("MSH|^~\\&|EHRBRIDGE|CRM|EPIC|GENHOSP|20260304050607||ACK^A08^ACK|A42|P|2.5.1\rMSA|AA|MSG00042\r"),
		PayloadLen: 1234, sealed: true, compressed: true,
	}
	r.Hash = sha256.Sum256([]byte("content"))
	copy(r.Lane[:], "0123456789abcdef")
	return r
}

// Every field survives the binary form, including unset times, and the
// binary form is much smaller than the JSON one for the same record.
func TestRecordV2RoundTrip(t *testing.T) {
	payload := []byte("stored payload bytes")
	for _, r := range []*Record{fullRecord(), {ID: 9, Key: "k", Received: time.Unix(0, 1), State: Received}} {
		v, err := encodeRecord(r, payload)
		if err != nil || v[0] != recordV2 {
			t.Fatalf("encode: %v (version %d)", err, v[0])
		}
		got, p, err := decodeRecord(r.ID, v)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !bytes.Equal(p, payload) {
			t.Errorf("payload %q", p)
		}
		if !got.Received.Equal(r.Received) || !got.ReadyAt.Equal(r.ReadyAt) || !got.Updated.Equal(r.Updated) || !got.DoneAt.Equal(r.DoneAt) {
			t.Errorf("times: got %v %v %v %v, want %v %v %v %v", got.Received, got.ReadyAt, got.Updated, got.DoneAt, r.Received, r.ReadyAt, r.Updated, r.DoneAt)
		}
		if got.ReadyAt.IsZero() != r.ReadyAt.IsZero() || got.DoneAt.IsZero() != r.DoneAt.IsZero() {
			t.Errorf("unset times must stay unset")
		}
		for _, x := range []*Record{got, r} {
			x.Received, x.ReadyAt, x.Updated, x.DoneAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("decoded\n%+v\nwant\n%+v", got, r)
		}
	}
	r := fullRecord()
	v2, _ := encodeRecord(r, nil)
	v1 := encodeRecordV1(t, r, nil)
	if len(v2)*10 > len(v1)*7 {
		t.Errorf("binary metadata %d bytes, JSON %d: expected at least 30%% smaller", len(v2), len(v1))
	}
}

// A damaged record is an error naming it, never a panic: every prefix of
// a valid record and a few corrupt bytes.
func TestRecordV2Damaged(t *testing.T) {
	v, _ := encodeRecord(fullRecord(), nil)
	for n := 0; n < len(v); n++ {
		// The record has no payload: every shorter prefix cuts a field.
		if _, _, err := decodeRecord(7, v[:n]); err == nil {
			t.Errorf("prefix of %d of %d bytes decoded without error", n, len(v))
		} else if !errors.Is(err, errCorrupt) {
			t.Errorf("prefix %d: %v is not errCorrupt", n, err)
		}
	}
	bad := append([]byte(nil), v...)
	bad[0] = 9
	if _, _, err := decodeRecord(7, bad); !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "unknown version") {
		t.Errorf("unknown version: %v", err)
	}
	huge := []byte{recordV2, 0, 0xff, 0xff, 0xff, 0xff, 0x0f} // a key longer than the record
	if _, _, err := decodeRecord(7, huge); !errors.Is(err, errCorrupt) {
		t.Errorf("overlong key: %v", err)
	}
}

// rewriteAsV1 turns every record of a closed log back into version 1 with
// an uncompressed payload, puts the records not yet in their lanes in the
// pending index and sets schema 2: the log as the previous release left
// it.
func rewriteAsV1(t *testing.T, path string) {
	t.Helper()
	updateClosed(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket(bRecords)
		type kv struct{ k, v []byte }
		var all []kv
		if err := b.ForEach(func(k, v []byte) error {
			r, p, err := decodeRecord(btoi(k), v)
			if err != nil {
				return err
			}
			if r.compressed {
				if p, err = decompressPayload(p, r.PayloadLen); err != nil {
					return err
				}
				r.compressed = false
			}
			all = append(all, kv{append([]byte(nil), k...), encodeRecordV1(t, r, p)})
			return nil
		}); err != nil {
			return err
		}
		for _, e := range all {
			if err := b.Put(e.k, e.v); err != nil {
				return err
			}
			// Schema 2 put every new record in the pending index at once.
			if btoi(e.k) > laneCursor(tx) {
				if err := tx.Bucket(bPending).Put(e.k, nil); err != nil {
					return err
				}
			}
		}
		return tx.Bucket(bMeta).Put(metaSchema, itob(2))
	})
}

// A schema 2 log (JSON records, uncompressed payloads, new records in the
// pending index) opened by this release: migrated, its pending records
// listed and claimed with their payloads, a
// retransmit still answered with the original ACK bytes, and a record that
// changes state is rewritten in the binary form. The log checks clean.
func TestSchema2RecordsCarryOn(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := reopen(t, path, Options{})
	big := strings.Repeat("OBX|1|NM|8867-4^Heart rate^LN||72|/min|60-100|N|||F\r", 40)
	mustAppend(t, l, entry("k1", "p1", big))
	mustAppend(t, l, entry("k2", "p2", "short"))
	third := mustAppend(t, l, entry("k3", "p1", "behind k1 in its lane"))
	l.Close()
	rewriteAsV1(t, path)

	// Read-only, as `log list` on a stopped daemon after an upgrade: not
	// migrated, and read as schema 2 (new records in the pending index).
	ro := reopen(t, path, Options{ReadOnly: true})
	if recs, err := ro.List(Received, 0, 10); err != nil || len(recs) != 3 {
		t.Fatalf("read-only schema 2: received %d %v", len(recs), err)
	}
	if problems, err := ro.Check(); err != nil || len(problems) > 0 {
		t.Fatalf("read-only schema 2: check %v %v", problems, err)
	}
	if st, err := ro.Stats(); err != nil || st.Schema != 2 || st.OldestPending.IsZero() {
		t.Fatalf("read-only schema 2: stats %+v %v", st, err)
	}
	ro.Close()

	l = reopen(t, path, Options{})
	// The migration took the new records out of the pending index.
	if problems, err := l.Check(); err != nil || len(problems) > 0 {
		t.Fatalf("check after migration: %v %v", problems, err)
	}
	if recs, err := l.List(Received, 0, 10); err != nil || len(recs) != 3 {
		t.Fatalf("received before any claim: %d %v", len(recs), err)
	}
	if r := mustAppend(t, l, entry("k1", "p1", big)); r.Outcome != Duplicate || string(r.Ack) != "ACK for k1" {
		t.Fatalf("retransmit of a version 1 record: %+v", r)
	}
	recs, err := l.Claim(10)
	if err != nil || len(recs) != 2 || string(recs[0].Payload) != big || string(recs[1].Payload) != "short" {
		t.Fatalf("claimed %v %v", recs, err)
	}
	if err := l.MarkDone(recs[0].ID, []string{"001"}); err != nil {
		t.Fatal(err)
	}
	if err := l.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bRecords).Get(itob(recs[0].ID)); v[0] != recordV2 {
			t.Errorf("a settled record is still version %d", v[0])
		}
		if v := tx.Bucket(bRecords).Get(itob(third.ID)); v[0] != recordV1 {
			t.Errorf("an untouched record was rewritten: version %d", v[0])
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Reveal(recs[0].ID); err != nil || string(got.Payload) != big || got.Targets[0] != "001" {
		t.Fatalf("done record after the rewrite: %v %v", got, err)
	}
	if recs, err := l.Claim(10); err != nil || len(recs) != 1 || string(recs[0].Payload) != "behind k1 in its lane" {
		t.Fatalf("claimed after k1 was done: %v %v", recs, err)
	}
	if st, err := l.Stats(); err != nil || st.Schema != schemaVersion || st.States[Done] != 1 || st.States[InProgress] != 2 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	if problems, err := l.Check(); err != nil || len(problems) > 0 {
		t.Fatalf("check: %v %v", problems, err)
	}
}

// Payloads are stored compressed (and then sealed, with a key), come back
// whole from Claim and Reveal, and a damaged compressed payload is an
// error for that record, not a panic.
func TestPayloadCompression(t *testing.T) {
	big := strings.Repeat("PID|1||4711^^^GENHOSP^MR||DOE^JANE||19700101|F\r", 50)
	for _, keyed := range []bool{false, true} {
		l, _ := openTest(t, keyedOptions(t, keyed, 7))
		r := mustAppend(t, l, entry("k1", "p1", big))
		mustAppend(t, l, entry("k2", "p2", "tiny"))
		var size int
		_ = l.db.View(func(tx *bolt.Tx) error {
			size = len(tx.Bucket(bRecords).Get(itob(r.ID)))
			return nil
		})
		if size*4 > len(big) {
			t.Errorf("keyed %v: a %d-byte repetitive payload takes %d bytes", keyed, len(big), size)
		}
		got, err := l.Reveal(r.ID)
		if err != nil || string(got.Payload) != big {
			t.Fatalf("keyed %v: reveal %v", keyed, err)
		}
		recs, err := l.Claim(10)
		if err != nil || len(recs) != 2 || string(recs[0].Payload) != big || string(recs[1].Payload) != "tiny" {
			t.Fatalf("keyed %v: claim %v", keyed, err)
		}
	}
	c, ok := compressTo(nil, []byte(big))
	if !ok {
		t.Fatal("not compressed")
	}
	if p, err := decompressPayload(c, len(big)); err != nil || string(p) != big {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range [][]byte{c[:len(c)/2], append([]byte{0xff}, c[1:]...), nil} {
		if _, err := decompressPayload(bad, len(big)); !errors.Is(err, errDecompress) {
			t.Errorf("damaged: %v", err)
		}
	}
	if _, err := decompressPayload(c, len(big)+1); !errors.Is(err, errDecompress) {
		t.Errorf("wrong length accepted")
	}
	if _, ok := compressTo(nil, make([]byte, 100)); ok {
		t.Error("a payload under minCompress was compressed")
	}
	if _, ok := compressTo(nil, sha256Stream(4096)); ok {
		t.Error("an incompressible payload was stored compressed")
	}
}

// Appends compress into pooled buffers: concurrent appends of different
// payloads, sealed or not and of every size class, each keep their own.
func TestPooledCompressionKeepsPayloads(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		l, _ := openTest(t, keyedOptions(t, keyed, 9))
		const n = 96
		payloads := make([]string, n)
		ids := make([]uint64, n)
		var wg sync.WaitGroup
		for i := range n {
			// Compressible payloads of growing size (one past
			// maxPooledCompress), a few too small or random to compress.
			switch {
			case i%10 == 3:
				payloads[i] = fmt.Sprintf("tiny %d", i)
			case i%10 == 7:
				payloads[i] = string(sha256Stream(512 + i))
			default:
				payloads[i] = strings.Repeat(fmt.Sprintf("OBX|%d|NM|8867-4^Heart rate^LN||%d|/min\r", i, i), 1+i*i/2)
			}
			wg.Go(func() { ids[i] = mustAppend(t, l, entry(fmt.Sprintf("k%d", i), "L", payloads[i])).ID })
		}
		wg.Wait()
		for i, id := range ids {
			got, err := l.Reveal(id)
			if err != nil || string(got.Payload) != payloads[i] {
				t.Fatalf("keyed %v: record %d (%d bytes) reads back wrong: %v", keyed, i, len(payloads[i]), err)
			}
		}
	}
	buf := make([]byte, 0, 8192)
	p := []byte(strings.Repeat("PID|1||4711^^^GENHOSP^MR\r", 40))
	c, ok := compressTo(buf, p)
	if !ok || &c[0] != &buf[:1][0] {
		t.Error("compressTo did not write into a buffer large enough")
	}
	if d, err := decompressPayload(c, len(p)); err != nil || !bytes.Equal(d, p) {
		t.Errorf("round trip through a reused buffer: %v", err)
	}
	if c, ok := compressTo(make([]byte, 0, 8), p); !ok || len(c) == 0 {
		t.Error("compressTo with a small buffer failed")
	}
}

// keyedOptions are the default options, with a key made of b when keyed.
func keyedOptions(t *testing.T, keyed bool, b byte) Options {
	t.Helper()
	if !keyed {
		return Options{}
	}
	ring, err := NewKeyring(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return Options{Keyring: ring}
}

func sha256Stream(n int) []byte {
	var out []byte
	seed := sha256.Sum256([]byte("seed"))
	for len(out) < n {
		seed = sha256.Sum256(seed[:])
		out = append(out, seed[:]...)
	}
	return out[:n]
}

// New records are pending by their position after the lane cursor: they
// are listed, counted as the oldest pending and checked as such before
// Claim indexes them, and alongside indexed ones after.
func TestPendingByPosition(t *testing.T) {
	clock := newClock()
	l, _ := openTest(t, Options{Now: clock.Now})
	first := mustAppend(t, l, entry("k1", "p1", "one"))
	clock.Add(time.Minute)
	mustAppend(t, l, entry("k2", "p1", "two"))
	st, err := l.Stats()
	if err != nil || !st.OldestPending.Equal(clock.Now().Add(-time.Minute)) {
		t.Fatalf("oldest pending before indexing: %v %v", st.OldestPending, err)
	}
	if recs, err := l.List(Received, 0, 10); err != nil || len(recs) != 2 || recs[0].ID != first.ID {
		t.Fatalf("list before indexing: %v %v", recs, err)
	}
	if problems, err := l.Check(); err != nil || len(problems) > 0 {
		t.Fatalf("check before indexing: %v %v", problems, err)
	}
	claimed, err := l.Claim(10) // indexes both, claims k1 (k2 waits in its lane)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	clock.Add(time.Minute)
	third := mustAppend(t, l, entry("k3", "p3", "three"))
	recs, err := l.List(Received, 0, 10)
	if err != nil || len(recs) != 2 || recs[0].Key != "k2" || recs[1].ID != third.ID {
		t.Fatalf("list across the cursor: %v %v", recs, err)
	}
	if recs, err := l.List(Received, recs[0].ID, 10); err != nil || len(recs) != 1 || recs[0].ID != third.ID {
		t.Fatalf("list after k2: %v %v", recs, err)
	}
	if recs, err := l.List(InProgress, 0, 10); err != nil || len(recs) != 1 || recs[0].Key != "k1" {
		t.Fatalf("in progress: %v %v", recs, err)
	}
	if st, err := l.Stats(); err != nil || !st.OldestPending.Equal(clock.Now().Add(-2*time.Minute)) {
		t.Fatalf("oldest pending with an indexed one: %v %v", st.OldestPending, err)
	}
	if problems, err := l.Check(); err != nil || len(problems) > 0 {
		t.Fatalf("check across the cursor: %v %v", problems, err)
	}
	// A pending entry for a record not yet indexed is an inconsistency.
	if err := l.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bPending).Put(itob(third.ID), nil) }); err != nil {
		t.Fatal(err)
	}
	if problems, _ := l.Check(); len(problems) != 1 || !strings.Contains(problems[0], "pending or lane index disagrees") {
		t.Fatalf("check of a stray pending entry: %v", problems)
	}
	if err := l.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bPending).Delete(itob(third.ID)) }); err != nil {
		t.Fatal(err)
	}
}

// A record read from a damaged file is an error, never a panic, and what
// decodes re-encodes to a record that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	v2, _ := encodeRecord(fullRecord(), []byte("payload"))
	f.Add(v2)
	f.Add(encodeRecordV1(f, fullRecord(), []byte("payload")))
	f.Add([]byte{recordV2, 0xff})
	f.Fuzz(func(t *testing.T, v []byte) {
		r, p, err := decodeRecord(1, v)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v is not errCorrupt", err)
			}
			return
		}
		again, err := encodeRecord(r, p)
		if err != nil {
			t.Fatal(err)
		}
		r2, p2, err := decodeRecord(1, again)
		if err != nil || !bytes.Equal(p, p2) || r2.Key != r.Key || r2.Hash != r.Hash || !r2.Received.Equal(r.Received) ||
			r2.State != r.State || !reflect.DeepEqual(r2.Targets, r.Targets) || !bytes.Equal(r2.Ack, r.Ack) {
			t.Fatalf("re-encoded record differs: %v\n%+v\n%+v", err, r, r2)
		}
	})
}

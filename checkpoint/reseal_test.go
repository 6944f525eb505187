package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The distinctive patient name the reseal tests look for in the file.
const resealName = "QUILLFEATHERSTONEHAUGH"

func resealMessage(i int) string {
	return fmt.Sprintf("MSH|^~\\&|EHR|HOSP|||20260102||ADT^A01|C%d|P|2.5\rPID|1||MRN%06d^^^HOSP||%s^ZEBEDIAH^Q||19700101|M\rPV1|1|I|WARD^%d", i, i, resealName, i)
}

// fileHolds reads the database file as `strings` would: every byte,
// free pages included.
func fileHolds(t *testing.T, path, s string) bool {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(raw, []byte(s))
}

func TestResealEncryptsEverythingAndLeavesNoClearCopy(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	path := filepath.Join(t.TempDir(), FileName)
	l := reopen(t, path, Options{Logger: quiet})
	const n = 300
	for i := range n {
		mustAppend(t, l, entry(fmt.Sprintf("k%d", i), fmt.Sprintf("MRN%06d", i), resealMessage(i)))
	}
	// A conflict: the same key with other content, holding the name too.
	if r := mustAppend(t, l, entry("k1", "MRN000001", resealMessage(1)+"|CHANGED")); r.Outcome != Conflict {
		t.Fatalf("outcome %v, want conflict", r.Outcome)
	}
	// Work some records off, so that pages are rewritten and freed.
	rs, _ := l.Claim(50)
	var outs []Settlement
	for _, r := range rs {
		outs = append(outs, Settlement{ID: r.ID, State: Done, Targets: []string{"001"}})
	}
	if err := l.Settle(outs); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if !fileHolds(t, path, resealName) {
		t.Fatal("test setup: the unencrypted log should hold the name")
	}

	// Encryption enabled: new records are sealed, old ones are not, and
	// the log says so.
	key1, key2 := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32)
	ring1, _ := NewKeyring(key1)
	l = reopen(t, path, Options{Keyring: ring1, Logger: quiet})
	mustAppend(t, l, entry("new", "MRN999999", resealMessage(999)))
	st, err := l.SealStats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != n+1 || st.Unencrypted != n || st.OldKey != 0 || st.Other != 1 || !st.Mixed() {
		t.Errorf("seal stats before reseal: %+v, want %d records, %d unencrypted, 1 other", st, n+1, n)
	}
	// Stats (what /status shows) carries the same counts, counted in the
	// background on a log open for writing.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		full, err := l.Stats()
		if err == nil && full.SealCounted {
			if full.Seal != st {
				t.Errorf("Stats seal counts: %+v, want %+v", full.Seal, st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stats never counted: %v", err)
		}
	}
	l.Close()
	// `log stats` opens the stopped log read-only and counts at once.
	ro := reopen(t, path, Options{Keyring: ring1, Logger: quiet, ReadOnly: true})
	if full, err := ro.Stats(); err != nil || !full.SealCounted || full.Seal != st {
		t.Errorf("read-only Stats seal counts: %+v %v, want %+v", full.Seal, err, st)
	}
	ro.Close()

	if _, err := Reseal(path, Options{Logger: quiet}); !errors.Is(err, ErrNoKey) {
		t.Errorf("reseal without a key: %v, want ErrNoKey", err)
	}
	start := time.Now()
	res, err := Reseal(path, Options{Keyring: ring1, Logger: quiet})
	if err != nil {
		t.Fatalf("Reseal: %v", err)
	}
	t.Logf("reseal of %d records: %v (%d bytes → %d)", n+1, time.Since(start), res.Compacted.Before, res.Compacted.After)
	if res.Records != n || res.Others != 1 {
		t.Errorf("resealed %d records and %d others, want %d and 1", res.Records, res.Others, n)
	}
	if fileHolds(t, path, resealName) {
		t.Error("after reseal the database file still holds the patient name")
	}
	if fileHolds(t, path, "MRN000001") {
		t.Error("after reseal the database file still holds an MRN")
	}
	if _, err := os.Stat(path + ".bak"); !os.IsNotExist(err) {
		t.Errorf("a copy of the old file is left: %v", err)
	}

	// Rotate: key2 active, key1 readable. Everything is under the old key
	// until the next reseal.
	ring21, _ := NewKeyring(key2, key1)
	l = reopen(t, path, Options{Keyring: ring21, Logger: quiet})
	if st, err := l.SealStats(); err != nil || st.Unencrypted != 0 || st.OldKey != n+1 || st.Other != 1 {
		t.Errorf("seal stats after rotation: %+v, %v", st, err)
	}
	l.Close()
	if _, err := Reseal(path, Options{Keyring: ring21, Logger: quiet}); err != nil {
		t.Fatalf("Reseal after rotation: %v", err)
	}
	// Only the new key now: every payload and the conflict open.
	ring2, _ := NewKeyring(key2)
	l = reopen(t, path, Options{Keyring: ring2, Logger: quiet})
	if st, err := l.SealStats(); err != nil || st.Mixed() {
		t.Errorf("seal stats after the second reseal: %+v, %v", st, err)
	}
	for _, id := range []uint64{1, 2, n, n + 1} {
		r, err := l.Reveal(id)
		if err != nil {
			t.Fatalf("reveal %d: %v", id, err)
		}
		if !bytes.Contains(r.Payload, []byte(resealName)) {
			t.Errorf("record %d payload lost its content", id)
		}
	}
	if _, p, err := l.RevealConflict(1); err != nil || !bytes.Contains(p, []byte("CHANGED")) {
		t.Errorf("conflict after reseal: %q, %v", p, err)
	}
	// Retransmits still dedupe, lanes still hold.
	if r := mustAppend(t, l, entry("k5", "MRN000005", resealMessage(5))); r.Outcome != Duplicate {
		t.Errorf("retransmit after reseal: %v", r.Outcome)
	}
}

// Source states (where a FHIR resource was written: its CRM key, an MRN)
// are sealed when a key is configured; values stored before encryption
// was enabled stay readable and are counted until `log reseal` seals
// them.
func TestSourceStateSealed(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	path := filepath.Join(t.TempDir(), FileName)
	l := reopen(t, path, Options{Logger: quiet})
	const addr = `[{"object":"Account","key_field":"MRN__c","key":"MRNSTATE55123"}]`
	if err := l.SetSourceState("fhir|ehr|addr|Patient/1", []byte(addr)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if !fileHolds(t, path, "MRNSTATE55123") {
		t.Fatal("test setup: the unencrypted log should hold the MRN")
	}
	ring, _ := NewKeyring(bytes.Repeat([]byte{4}, 32))
	l = reopen(t, path, Options{Keyring: ring, Logger: quiet})
	if v, ok, err := l.SourceState("fhir|ehr|addr|Patient/1"); err != nil || !ok || string(v) != addr {
		t.Errorf("a state stored in clear before the key: %q %v %v", v, ok, err)
	}
	if err := l.SetSourceStates(map[StateKey][]byte{"fhir|ehr|addr|Patient/2": []byte(`[{"key":"MRNSTATE77001"}]`)}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetSourceState("fhir|ehr|watermark|Patient", []byte("2026-01-02T03:04:05Z")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := l.SourceState("fhir|ehr|addr|Patient/2"); err != nil || !ok || string(v) != `[{"key":"MRNSTATE77001"}]` {
		t.Errorf("a sealed state: %q %v %v", v, ok, err)
	}
	if st, err := l.SealStats(); err != nil || st.Other != 1 {
		t.Errorf("seal stats: %+v %v, want 1 other value in clear", st, err)
	}
	l.Close()
	if fileHolds(t, path, "MRNSTATE77001") {
		t.Error("a state written with a key is in clear in the file")
	}
	if _, err := Reseal(path, Options{Keyring: ring, Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if fileHolds(t, path, "MRNSTATE55123") {
		t.Error("after reseal the file holds the MRN of a source state")
	}
	l = reopen(t, path, Options{Keyring: ring, Logger: quiet})
	for k, want := range map[StateKey]string{"fhir|ehr|addr|Patient/1": addr, "fhir|ehr|watermark|Patient": "2026-01-02T03:04:05Z"} {
		if v, _, err := l.SourceState(k); err != nil || string(v) != want {
			t.Errorf("%s after reseal: %q %v", k, v, err)
		}
	}
	if st, err := l.SealStats(); err != nil || st.Mixed() {
		t.Errorf("seal stats after reseal: %+v %v", st, err)
	}
	l.Close()
	// Without the key the sealed state is refused, not misread.
	ro := reopen(t, path, Options{ReadOnly: true, Logger: quiet})
	if _, _, err := ro.SourceState("fhir|ehr|addr|Patient/1"); !errors.Is(err, ErrEncrypted) {
		t.Errorf("sealed state without the key: %v, want ErrEncrypted", err)
	}
}

// With a key configured, content hashes are stored keyed with the log's
// (sealed) salt: a bare SHA-256 of a message lets whoever reads the file
// confirm a guess of its content. Records written before the key keep
// their bare hash until `log reseal` keys it, and retransmits of either
// are still recognised.
func TestContentHashesKeyed(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	path := filepath.Join(t.TempDir(), FileName)
	l := reopen(t, path, Options{Logger: quiet})
	old := entry("old", "L1", "MSH|old message")
	mustAppend(t, l, old)
	l.Close()

	ring, _ := NewKeyring(bytes.Repeat([]byte{6}, 32))
	l = reopen(t, path, Options{Keyring: ring, Logger: quiet})
	if r := mustAppend(t, l, old); r.Outcome != Duplicate {
		t.Errorf("retransmit of a record from before the key: %v", r.Outcome)
	}
	fresh := entry("new", "L2", "MSH|new message")
	mustAppend(t, l, fresh)
	if r := mustAppend(t, l, fresh); r.Outcome != Duplicate {
		t.Errorf("retransmit of a keyed record: %v", r.Outcome)
	}
	changed := entry("new", "L2", "MSH|new message, changed")
	if r := mustAppend(t, l, changed); r.Outcome != Conflict {
		t.Errorf("other content under a keyed record's key: %v", r.Outcome)
	}
	if st, _ := l.SealStats(); st.RawHashes != 1 {
		t.Errorf("seal stats: %+v, want 1 bare hash", st)
	}
	l.Close()
	if fileHolds(t, path, string(fresh.Hash[:])) || fileHolds(t, path, string(changed.Hash[:])) {
		t.Error("the file holds a bare content hash written with a key configured")
	}
	if !fileHolds(t, path, string(old.Hash[:])) {
		t.Error("test setup: the record from before the key should hold its bare hash")
	}
	res, err := Reseal(path, Options{Keyring: ring, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if res.Hashes != 1 {
		t.Errorf("reseal keyed %d hashes, want 1", res.Hashes)
	}
	if fileHolds(t, path, string(old.Hash[:])) {
		t.Error("after reseal the file holds a bare content hash")
	}
	l = reopen(t, path, Options{Keyring: ring, Logger: quiet})
	for _, e := range []Entry{old, fresh} {
		if r := mustAppend(t, l, e); r.Outcome != Duplicate {
			t.Errorf("retransmit of %s after reseal: %v", e.Key, r.Outcome)
		}
	}
	if r := mustAppend(t, l, entry("old", "L1", "MSH|old message, changed")); r.Outcome != Conflict {
		t.Errorf("other content after reseal: %v", r.Outcome)
	}
	if st, _ := l.SealStats(); st.Mixed() {
		t.Errorf("seal stats after reseal: %+v", st)
	}
}

// Releases before issue 28 kept a dead record's CRM error as "CODE:
// message", the message scrubbed only of the op's exact values, so it can
// hold a patient's name in clear. Reseal moves the message into the
// record's sealed detail and keeps the code.
func TestResealMovesLegacyCRMMessagesOutOfReasons(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	path := filepath.Join(t.TempDir(), FileName)
	l := reopen(t, path, Options{Logger: quiet})
	for i := range 4 {
		mustAppend(t, l, entry(fmt.Sprintf("k%d", i), fmt.Sprintf("L%d", i), fmt.Sprintf("MSH|%d", i)))
	}
	rs, _ := l.Claim(10)
	reasons := []string{
		"DUPLICATE_VALUE: duplicate value found: SourceSystemId__c duplicates value on record with id: 001xx (Ximena Oyelaran-Pike)",
		"0x80040237: A record with matching key values already exists: OYELARAN-PIKE",
		"no patient name (PID-5): the mapping requires one", // the mapping's own: kept
		"REQUIRED_FIELD_MISSING", // a code alone: kept
	}
	var outs []Settlement
	for i, r := range rs {
		outs = append(outs, Settlement{ID: r.ID, State: Dead, Reason: reasons[i]})
	}
	if err := l.Settle(outs); err != nil {
		t.Fatal(err)
	}
	l.Close()
	ring, _ := NewKeyring(bytes.Repeat([]byte{8}, 32))
	l = reopen(t, path, Options{Keyring: ring, Logger: quiet})
	if st, _ := l.SealStats(); st.LegacyReasons != 2 {
		t.Errorf("seal stats: %+v, want 2 legacy reasons", st)
	}
	l.Close()
	res, err := Reseal(path, Options{Keyring: ring, Logger: quiet})
	if err != nil || res.Reasons != 2 {
		t.Fatalf("reseal: %+v %v, want 2 reasons moved", res, err)
	}
	for _, s := range []string{"Ximena", "Oyelaran", "OYELARAN"} {
		if fileHolds(t, path, s) {
			t.Errorf("after reseal the file holds %q", s)
		}
	}
	l = reopen(t, path, Options{Keyring: ring, Logger: quiet})
	want := []string{"crm permanent error DUPLICATE_VALUE; the CRM's message: log show --reveal",
		"crm permanent error 0x80040237; the CRM's message: log show --reveal", reasons[2], reasons[3]}
	for i, r := range rs {
		got, err := l.Reveal(r.ID)
		if err != nil || got.Reason != want[i] {
			t.Errorf("record %d reason %q %v, want %q", r.ID, got.Reason, err, want[i])
		}
		if i < 2 && !strings.Contains(reasons[i], got.Detail) || i < 2 && got.Detail == "" {
			t.Errorf("record %d detail %q", r.ID, got.Detail)
		}
	}
	if st, _ := l.SealStats(); st.Mixed() {
		t.Errorf("seal stats after reseal: %+v", st)
	}
}

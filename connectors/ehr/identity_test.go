package ehr

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/hl7"
)

func header(t *testing.T, msg string) hl7.Header {
	t.Helper()
	m, err := hl7.Parse([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return m.Header()
}

// Issue 25.4: the key holds the whole sender HD, normalised, and cannot be
// forged through an escaped "|".
func TestRecordKeyWholeHD(t *testing.T) {
	const tail = "|2024||ADT^A01|C1|P|2.5.1\r"
	key := func(msh3, msh4 string) string {
		return RecordKey("adt", header(t, "MSH|^~\\&|"+msh3+"|"+msh4+"||"+tail))
	}
	if got := key("EPIC", "HOSP"); got != "adt|EPIC|HOSP|C1" {
		t.Errorf("namespace-only key = %q: existing logs rely on this form", got)
	}
	if got := key("EPIC^^", "HOSP"); got != "adt|EPIC|HOSP|C1" {
		t.Errorf("trailing empty components change the key: %q", got)
	}
	a, b := key("^2.16.840.1.114222.4.1.111^ISO", ""), key("^2.16.840.1.114222.4.1.222^ISO", "")
	if a == b || a != "adt|^2.16.840.1.114222.4.1.111^ISO||C1" {
		t.Errorf("OID-only senders: %q, %q", a, b)
	}
	if key("^2.16.840.1.114222.4.1.111^iso", "") != a || key(" ^2.16.840.1.114222.4.1.111 ^ISO", "") != a {
		t.Error("universal id type case or blanks make a different sender")
	}
	// Unescaped, "A|B" + "C" and "A" + "B|C" both give "A|B|C".
	if x, y := key("A\\F\\B", "C"), key("A", "B\\F\\C"); x == y || strings.Count(x, "|") != 3 {
		t.Errorf("escaped separators forge keys: %q, %q", x, y)
	}
	h := header(t, "MSH|^~\\&|^1.2.3^ISO|F|||2024||ADT^A01|C1|P|2.5.1\r")
	if LegacyRecordKey("adt", h) != "adt||F|C1" {
		t.Errorf("legacy key = %q, want the pre-issue-25 form", LegacyRecordKey("adt", h))
	}
}

// Issue 25.4 acceptance: two OID-only senders reusing a control id both
// get AA, and the ACK's MSH-3/4 are the inbound MSH-5/6 whole.
func TestMLLPSourceOIDOnlySenders(t *testing.T) {
	cp := openLog(t)
	src := &MLLPSource{Name: "adt", Log: cp}
	addr := startSource(t, src, 0, nil)
	msg := func(oid, name string) string {
		return "MSH|^~\\&|^" + oid + "^ISO|^" + oid + "^ISO|^1.2.3.4^ISO|^5.6.7^ISO|20240101120000||ADT^A01^ADT_A01|C1|P|2.5.1\r" +
			"PID|1||MRN1^^^HOSP^MR||" + name + "\r"
	}
	for _, m := range []string{msg("2.16.840.1.114222.4.1.111", "DOE^JANE"), msg("2.16.840.1.114222.4.1.222", "ROE^RICHARD")} {
		ack := send(t, addr, m)
		if code, id, text, _ := ack.Ack(); code != hl7.AA || id != "C1" {
			t.Fatalf("ack = %s %s %q", code, id, text)
		}
		if got := ack.Get(hl7.Path{Segment: "MSH", Field: 3}).Raw(); got != "^1.2.3.4^ISO" {
			t.Errorf("ACK MSH-3 = %q, want the inbound MSH-5 whole", got)
		}
		if got := ack.Get(hl7.Path{Segment: "MSH", Field: 4}).Raw(); got != "^5.6.7^ISO" {
			t.Errorf("ACK MSH-4 = %q, want the inbound MSH-6 whole", got)
		}
	}
	if src.Accepted.Load() != 2 || src.Conflicts.Load() != 0 {
		t.Errorf("accepted=%d conflicts=%d, want 2 and 0", src.Accepted.Load(), src.Conflicts.Load())
	}
}

// Issue 25.4: a record stored by an earlier release under the old key form
// is still found by a retransmit, which gets the original ACK back; a
// different message that only collided under the old form is accepted.
func TestMLLPSourceLegacyKeyRetransmit(t *testing.T) {
	cp := openLog(t)
	src := &MLLPSource{Name: "adt", Log: cp}
	const original = "MSH|^~\\&|^2.16.840.1.114222.4.1.111^ISO|HOSP|CRM||20240101120000||ADT^A01^ADT_A01|C7|P|2.5.1\r" +
		"PID|1||MRN7^^^HOSP^MR||DOE^JANE\r"
	m, err := hl7.Parse([]byte(original))
	if err != nil {
		t.Fatal(err)
	}
	oldAck := []byte("MSH|^~\\&|CRM||^2.16.840.1.114222.4.1.111^ISO|HOSP|20240101120001.000+0000||ACK^A01^ACK|OLDACK|P|2.5.1\rMSA|AA|C7\r")
	// What the release before issue 25 appended: key "source|MSH-3.1|MSH-4.1|MSH-10".
	res, err := cp.Append(context.Background(), checkpoint.Entry{Key: "adt||HOSP|C7", Source: "adt", Kind: "hl7v2", Type: "ADT^A01",
		Hash: ContentHash(m, defaultHashIgnore), Lane: LaneKey(m), Payload: []byte(original), Ack: oldAck, Received: time.Now()})
	if err != nil || res.Outcome != checkpoint.Appended {
		t.Fatalf("old append: %v %v", res, err)
	}
	addr := startSource(t, src, 0, nil)
	resent := strings.Replace(original, "20240101120000", "20240101121500", 1)
	ack := send(t, addr, resent)
	if ack == nil || string(ack.Bytes()) != string(oldAck) {
		t.Fatalf("retransmit after the upgrade got\n%q\nwant the original\n%q", ack.Bytes(), oldAck)
	}
	if src.Duplicates.Load() != 1 || src.Accepted.Load() != 0 {
		t.Errorf("duplicates=%d accepted=%d", src.Duplicates.Load(), src.Accepted.Load())
	}
	// Another OID sender with the same facility and control id: under the
	// old key it collided (a false AR 205); now it is a message of its own.
	other := strings.Replace(strings.Replace(original, "4.1.111", "4.1.999", 1), "DOE^JANE", "ROE^RICHARD", 1)
	if code, _, text, _ := send(t, addr, other).Ack(); code != hl7.AA {
		t.Fatalf("other sender: %s %q", code, text)
	}
	if src.Conflicts.Load() != 0 {
		t.Errorf("conflicts = %d", src.Conflicts.Load())
	}
	if st, _ := cp.Stats(); st.States[checkpoint.Received] != 2 {
		t.Errorf("records = %d, want 2", st.States[checkpoint.Received])
	}
}

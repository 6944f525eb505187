package checkpoint

import "testing"

// Issue 25.4: a retransmit whose key form changed in an upgrade is found
// under its legacy key; a different message under the legacy key is not a
// conflict (the old form lumped distinct senders together).
func TestAppendLegacyKey(t *testing.T) {
	l, _ := openTest(t, Options{})
	mustAppend(t, l, entry("src||F|C1", "p1", "body"))

	retransmit := entry("src|^1.2.3^ISO|F|C1", "p1", "body")
	retransmit.LegacyKey = "src||F|C1"
	retransmit.Ack = []byte("a NEW ack that must not be used")
	if r := mustAppend(t, l, retransmit); r.Outcome != Duplicate || r.ID != 1 || string(r.Ack) != "ACK for src||F|C1" {
		t.Fatalf("retransmit under the new key = %+v, want the original ACK", r)
	}
	other := entry("src|^9.9.9^ISO|F|C1", "p2", "another sender's body")
	other.LegacyKey = "src||F|C1"
	if r := mustAppend(t, l, other); r.Outcome != Appended || r.ID != 2 {
		t.Fatalf("other sender = %+v, want a new record", r)
	}
	// Without LegacyKey the retransmit is a new record: the lookup is what
	// recognises it.
	if r := mustAppend(t, l, entry("src|^1.2.3^ISO|F|C1", "p1", "body")); r.Outcome != Appended {
		t.Fatalf("no legacy key: %+v", r)
	}
	st, _ := l.Stats()
	if st.States[Received] != 3 || st.Conflicts != 0 {
		t.Errorf("stats = %+v", st)
	}
}

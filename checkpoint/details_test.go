package checkpoint

import (
	"bytes"
	"log/slog"
	"testing"
)

// A record's detail goes with its reason: replaced at each settlement,
// removed when the record is done or requeued, and shown only by Reveal.
func TestDetailFollowsTheReason(t *testing.T) {
	ring, _ := NewKeyring(bytes.Repeat([]byte{3}, 32))
	l, path := openTest(t, Options{Keyring: ring, Logger: slog.New(slog.DiscardHandler)})
	mustAppend(t, l, entry("k1", "L1", "MSH|1"))
	claim := func() uint64 {
		t.Helper()
		rs, err := l.Claim(1)
		if err != nil || len(rs) != 1 {
			t.Fatalf("claim: %v %v", rs, err)
		}
		return rs[0].ID
	}
	detail := func(id uint64) string {
		t.Helper()
		r, err := l.Reveal(id)
		if err != nil {
			t.Fatal(err)
		}
		if g, _ := l.Get(id); g.Detail != "" {
			t.Errorf("Get returned the detail %q", g.Detail)
		}
		return r.Detail
	}
	id := claim()
	if err := l.Settle([]Settlement{{ID: id, State: Retrying, RetryAt: l.opts.Now(), Reason: "crm transient error UNABLE_TO_LOCK_ROW", Detail: "first DETAILSECRET1"}}); err != nil {
		t.Fatal(err)
	}
	if d := detail(id); d != "first DETAILSECRET1" {
		t.Errorf("detail %q", d)
	}
	claim()
	if err := l.Settle([]Settlement{{ID: id, State: Dead, Reason: "crm permanent error DUPLICATE_VALUE", Detail: "second DETAILSECRET2"}}); err != nil {
		t.Fatal(err)
	}
	if d := detail(id); d != "second DETAILSECRET2" {
		t.Errorf("detail after the second settlement %q", d)
	}
	if err := l.Requeue(id); err != nil {
		t.Fatal(err)
	}
	if d := detail(id); d != "" {
		t.Errorf("a requeued record keeps the detail %q", d)
	}
	claim()
	if err := l.Settle([]Settlement{{ID: id, State: Done, Targets: []string{"001"}}}); err != nil {
		t.Fatal(err)
	}
	if d := detail(id); d != "" {
		t.Errorf("a done record keeps the detail %q", d)
	}
	l.Close()
	if fileHolds(t, path, "DETAILSECRET") {
		t.Error("a detail is in clear in the file")
	}
}

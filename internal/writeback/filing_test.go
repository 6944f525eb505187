package writeback

import "testing"

// A try whose end was never recorded (the daemon stopped while it
// waited) went without an answer when it was sent: also a later try of a
// version that already went unanswered once, so that an edit waits from
// the latest send that may still arrive, not the first. A try the EHR
// answered AE is not one.
func TestSettleUnrecordedTry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		st     filingState
		wantAt int64
		wantV  string
	}{
		{"first try lost", filingState{Sending: "v1", SentAt: 100}, 100, "v1"},
		{"a later try lost too", filingState{Sending: "v1", SentAt: 900, Unanswered: "v1", UnansweredAt: 100}, 900, "v1"},
		{"the last try answered AE", filingState{Sending: "v1", SentAt: 900, Answered: true, Unanswered: "v1", UnansweredAt: 100}, 100, "v1"},
		{"an older version unanswered, this one answered AE", filingState{Sending: "v2", SentAt: 900, Answered: true, Unanswered: "v1", UnansweredAt: 100}, 100, "v1"},
		{"nothing sent", filingState{Unanswered: "v1", UnansweredAt: 100}, 100, "v1"},
	} {
		st := tc.st
		st.settle()
		if st.Unanswered != tc.wantV || st.UnansweredAt != tc.wantAt {
			t.Errorf("%s: unanswered %q at %d, want %q at %d", tc.name, st.Unanswered, st.UnansweredAt, tc.wantV, tc.wantAt)
		}
	}
}

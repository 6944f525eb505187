package pipeline

import (
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
)

// Against a sandbox that starts near its daily allocation and reports it
// in Sforce-Limit-Info's documented form (org-wide and per app), the
// pipeline pauses before the reserve (10%) is spent: the org's usage
// stops exactly at the line, and the records wait instead of failing.
func TestBudgetReservePauses(t *testing.T) {
	for name, opts := range map[string]sandbox.Options{
		"org": {DailyLimit: 1000, UsedAtStart: 896},
		"app": {DailyLimit: 100000, AppLimit: 1000, AppUsedAtStart: 896},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRigWith(t, opts)
			start := opts.UsedAtStart + opts.AppUsedAtStart
			sent := 0
			for i := range 20 {
				if !r.p.PausedUntil().IsZero() {
					break
				}
				r.send(t, adt("A01", "B"+string(rune('A'+i)), "BUDGET", "B"))
				sent++
				deadline := time.Now().Add(5 * time.Second)
				for time.Now().Before(deadline) {
					st, err := r.log.Stats()
					if err != nil {
						t.Fatal(err)
					}
					if st.States[checkpoint.Done] == int64(i+1) || !r.p.PausedUntil().IsZero() {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			if r.p.PausedUntil().IsZero() {
				t.Fatalf("no pause after %d messages", sent)
			}
			stats := r.sb.Stats()
			used := start + int(stats.RequestsTotal-stats.ByEndpoint["token"])
			if used != 900 {
				t.Errorf("usage %d of 1000 when the pipeline paused, want 900 (the reserve untouched)", used)
			}
			st, err := r.log.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.States[checkpoint.Dead] != 0 || st.States[checkpoint.Done] >= int64(sent) {
				t.Errorf("states %v after %d messages: the last should wait, none dead", st.States, sent)
			}
		})
	}
}

package writeback

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/mllptest"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// An EHR that accepts connections and hangs up without an acknowledgment
// (or where nothing listens): the note ends retrying with the reason, and
// the EHR sees a few connections in 6 s, not a resend loop (the old client
// resent the same MDM^T02 71,705 times in 25 s, and the note never left
// "in progress").
func TestMLLPUnansweredNoteRetries(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hangUp bool
		reason string
	}{{"hangs up", true, "the connection ended before the acknowledgment"}, {"nothing listens", false, "connection refused"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			peer := &mllptest.Peer{Addr: mllptest.ClosedAddr(t)}
			if tc.hangUp {
				peer = mllptest.NewPeer(t, func(*hl7.Message) []hl7.AckCode { return nil })
			}
			addr, conns := peer.Addr, &peer.Conns
			r := newRig(t, func(string) connectors.EHRTarget {
				return mllpTarget(t, addr)
			})
			acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|M1"}`)
			r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Call","Description":"x","Send_to_EHR__c":true}`)
			start := time.Now()
			r.poll(t)
			var rec *checkpoint.Record
			waitUntil(t, "the note retrying", func() bool {
				recs, _ := r.log.List(checkpoint.Retrying, 0, 10)
				if len(recs) == 1 {
					rec = recs[0]
				}
				return rec != nil
			})
			t.Logf("retrying after %v: %q", time.Since(start).Round(time.Millisecond), rec.Reason)
			if !strings.HasPrefix(rec.Reason, "the EHR did not answer: ") || !strings.Contains(rec.Reason, tc.reason) {
				t.Errorf("reason %q, want the EHR did not answer: ... %s", rec.Reason, tc.reason)
			}
			if tc.hangUp {
				time.Sleep(time.Until(start.Add(6 * time.Second)))
				n := conns.Load()
				t.Logf("%d connections in 6s", n)
				if n < 3 || n > 30 {
					t.Errorf("%d connections in 6s, want a few (3..30)", n)
				}
			}
		})
	}
}

// Write-back waits for what the MDM's MSH-15/MSH-16 ask for: AL/ER is
// filed on the CA when no error follows; NE/NE (no answer on success) is
// never sent, the note dead with the reason: ehrbridge could not know it
// was filed.
func TestMLLPAcknowledgmentModes(t *testing.T) {
	builtIn, err := os.ReadFile(filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "writeback", "mdm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		msh15, msh16 string
		status       string
		frames       int64
	}{{"AL", "ER", "Filed", 1}, {"NE", "NE", "Error", 0}} {
		t.Run(tc.msh15+"/"+tc.msh16, func(t *testing.T) {
			t.Parallel()
			site := strings.Replace(string(builtIn), `MSH-12: "2.5.1"`,
				`MSH-12: "2.5.1"`+"\n      MSH-15: \""+tc.msh15+"\"\n      MSH-16: \""+tc.msh16+"\"", 1)
			path := filepath.Join(t.TempDir(), "mdm.yaml")
			if err := os.WriteFile(path, []byte(site), 0o600); err != nil {
				t.Fatal(err)
			}
			b, err := LoadMDM(path, mappings.Options{Zone: time.UTC})
			if err != nil {
				t.Fatal(err)
			}
			peer := mllptest.NewPeer(t, func(*hl7.Message) []hl7.AckCode { return []hl7.AckCode{hl7.CA} })
			addr, frames := peer.Addr, &peer.Frames
			r := newRigWith(t, rigOptions{cfg: func(c *Config) { c.MDM = b },
				target: func(string) connectors.EHRTarget {
					return mllpTarget(t, addr)
				}})
			acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|M1"}`)
			task := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Call","Description":"x","Send_to_EHR__c":true}`)
			r.poll(t)
			waitUntil(t, "status "+tc.status, func() bool { return r.task(t, task)["EHR_Status__c"] == tc.status })
			if n := frames.Load(); n != tc.frames {
				t.Errorf("the EHR received %d messages, want %d", n, tc.frames)
			}
			if tc.status == "Error" {
				// The note's status is written before its record is
				// settled: wait for the record too.
				var recs []*checkpoint.Record
				waitUntil(t, "the note dead", func() bool {
					recs, _ = r.log.List(checkpoint.Dead, 0, 10)
					return len(recs) > 0
				})
				if len(recs) != 1 || !strings.Contains(recs[0].Reason, "no acknowledgment on success") {
					t.Errorf("dead records %v", recs)
				}
			}
		})
	}
}

// A note whose EHR did not answer waits as long as the pipeline's backoff
// says (Handler.Backoff, wired to pipeline.Pipeline.Backoff), not by a
// schedule of write-back's own; a longer wait the MLLP client asks for
// (its own backoff) wins.
func TestUnansweredNoteWaitsThePipelinesBackoff(t *testing.T) {
	addr := mllptest.ClosedAddr(t)
	r := newRigWith(t, rigOptions{noRun: true,
		target: func(string) connectors.EHRTarget {
			return mllpTarget(t, addr)
		}})
	now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	r.h.Now = func() time.Time { return now }
	var asked []int
	r.h.Backoff = func(attempts int) time.Duration { asked = append(asked, attempts); return 42 * time.Minute }
	acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|M1"}`)
	r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Call","Description":"x","Send_to_EHR__c":true}`)
	if n := r.poll(t); n != 1 {
		t.Fatalf("poll %d", n)
	}
	recs, err := r.log.Claim(10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("claim %d %v", len(recs), err)
	}
	out := r.h.handle(context.Background(), recs, nil)
	if out[0].State != checkpoint.Retrying || !out[0].RetryAt.Equal(now.Add(42*time.Minute)) || len(asked) != 1 || asked[0] != 0 {
		t.Errorf("settlement %+v after asking the backoff for %v; want retrying at +42m, asked for attempt 0", out[0], asked)
	}
	r.h.Backoff = func(int) time.Duration { return time.Millisecond }
	out = r.h.handle(context.Background(), recs, nil)
	if wait := out[0].RetryAt.Sub(now); out[0].State != checkpoint.Retrying || wait < 50*time.Millisecond {
		t.Errorf("settlement %+v: waits %v, less than the MLLP client's own backoff", out[0], wait)
	}
}

// mllpTarget is the write-back target for the MLLP receiver at addr.
func mllpTarget(t *testing.T, addr string) *ehr.MLLPTarget {
	t.Helper()
	target, err := ehr.NewMLLPTarget(ehr.MLLPTargetConfig{MLLP: addr, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return target
}

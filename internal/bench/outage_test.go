package bench

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// TestOutageCostsOneProbe: a 2,000-patient burst arriving as the CRM
// starts answering 503 costs, on top of what the same burst costs a
// healthy CRM, one failed batch (its in-client retries) and the breaker's
// probes, tokens included; on Salesforce at most GoalOutageRequests
// requests per patient in all. The drain begins within the probe interval
// after the CRM is back. Time is compressed (a 2 s outage, probes from
// 100 ms capped at 1 s, Salesforce retry waits from 20 ms). Before the
// breaker (OutageOptions.NoBreaker) the same burst cost Salesforce 0.033
// to 0.036 requests per patient: each batch retried on its own.
func TestOutageCostsOneProbe(t *testing.T) {
	root := shared.ModuleRoot(t)
	for _, tc := range []struct {
		crm, maps string
		retries   int64 // a failed request's tries in the client (Salesforce RetryMax 4, Dataverse 2)
		patients  int
		goal      float64
	}{
		{"salesforce", "healthcloud", 5, 2000, GoalOutageRequests},
		// Dataverse's healthy drain alone costs 0.04 per patient: the
		// outage's own cost is asserted, on a smaller burst.
		{"dataverse", "dynamics", 3, 1000, GoalBacklogRequestsDataverse},
	} {
		t.Run(tc.crm, func(t *testing.T) {
			opts := OutageOptions{CRM: tc.crm, Mappings: filepath.Join(root, "configs", "mappings", tc.maps), Dir: t.TempDir(),
				Patients: tc.patients, Outage: 2 * time.Second, ProbeMin: 100 * time.Millisecond, ProbeMax: time.Second,
				RetryWait: 20 * time.Millisecond, BackoffMin: 100 * time.Millisecond}
			run := func(mod func(*OutageOptions)) OutagePhase {
				o := opts
				mod(&o)
				ph, err := Outage(context.Background(), o)
				if err != nil {
					t.Fatal(err)
				}
				return ph
			}
			base := run(func(o *OutageOptions) { o.Baseline = true })
			with := run(func(*OutageOptions) {})
			t.Logf("%s: healthy %d requests (%d operations); outage %d (%d operations; %.4f per patient, %d probes, drain %v after recovery, probe interval %v)",
				tc.crm, base.Requests, base.Operations, with.Requests, with.Operations, with.PerPatient(), with.Probes, with.DrainStart, with.ProbeInterval)
			if with.PerPatient() > tc.goal {
				t.Errorf("%.4f requests per patient, goal ≤ %g", with.PerPatient(), tc.goal)
			}
			if with.Probes == 0 {
				t.Error("the breaker sent no probe during the outage")
			}
			// One failed batch: each of its requests tried in the client,
			// plus a token; then nothing but probes until recovery.
			if extra := with.Requests - base.Requests; extra > with.Probes+tc.retries*maxParallel+1 {
				t.Errorf("the outage cost %d requests over a healthy drain, %d of them probes", extra, with.Probes)
			}
			// Dataverse's entitlement counts operations, in a $batch or
			// not: a $batch refused as a whole ran none, so the outage adds
			// only the probes.
			if tc.crm == "dataverse" {
				if base.Operations == 0 {
					t.Error("no Dataverse operations counted for the healthy burst")
				}
				if extra := with.Operations - base.Operations; extra > with.Probes {
					t.Errorf("the outage cost %d Dataverse operations over a healthy drain, %d probes", extra, with.Probes)
				}
			}
			if with.DrainStart > with.ProbeInterval+time.Second {
				t.Errorf("drain began %v after recovery, probe interval %v", with.DrainStart, with.ProbeInterval)
			}
		})
	}
}

// maxParallel is how many requests of one round can be in flight when the
// outage starts (the clients' default concurrency).
const maxParallel = 4

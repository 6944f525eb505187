package salesforce

import (
	"context"
	"fmt"
	"testing"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
)

// The breaker's probe is one GET /limits, not retried (the client retries
// other requests RetryMax times), and it refreshes the usage the
// governor keeps.
func TestProbeIsOneRequest(t *testing.T) {
	r := newRig(t, sandbox.Options{DailyLimit: 5000})
	s := &Sink{Client: r.client(t, nil)}
	if err := s.Probe(context.Background()); err != nil {
		t.Fatalf("probe of a healthy org: %v", err)
	}
	if _, max := s.Client.Usage(); max != 5000 {
		t.Errorf("usage limit %d after a probe, want 5000", max)
	}
	r.fault(t, `{"status":503,"seconds":30}`)
	before := r.sb.Stats().RequestsTotal
	err := s.Probe(context.Background())
	if connectors.KindOf(err) != connectors.Transient || err == nil {
		t.Fatalf("probe during a 503 outage: %v, want a transient error", err)
	}
	if n := r.sb.Stats().RequestsTotal - before; n != 1 {
		t.Errorf("a failed probe sent %d requests, want 1", n)
	}
}

// Once a Composite call failed as a whole and transiently, UpsertGroups
// sends no more calls: their records share the failure.
func TestUpsertGroupsStopsWhenSalesforceFails(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	c := r.client(t, func(cfg *Config) { cfg.RetryMax = -1 })
	if err := c.Probe(context.Background()); err != nil { // the token, before the outage
		t.Fatal(err)
	}
	var groups []UpsertGroup
	for g := range 3 { // 3 × 5 collections of 200: 3 Composite calls
		recs := make([]map[string]any, 1000)
		for i := range recs {
			recs[i] = map[string]any{"LastName": "P", "HealthCloudGA__SourceSystemId__c": fmt.Sprint("K", g, "-", i)}
		}
		groups = append(groups, UpsertGroup{Object: "Account", KeyField: "HealthCloudGA__SourceSystemId__c", Records: recs})
	}
	r.fault(t, `{"status":503,"seconds":30}`)
	res, err := c.UpsertGroups(context.Background(), groups)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range res {
		for i, x := range g {
			if x.Err == nil || KindOf(x.Err) != Transient {
				t.Fatalf("record %d: %v, want the transient failure", i, x.Err)
			}
		}
	}
	if n := r.sb.Stats().ByEndpoint["fault"]; n != 1 {
		t.Errorf("%d calls reached a failing Salesforce, want 1", n)
	}
}

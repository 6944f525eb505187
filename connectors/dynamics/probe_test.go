package dynamics

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// The breaker's probe is one WhoAmI, not retried: a failed probe costs
// one request, a succeeding one says Dataverse answers.
func TestProbeIsOneRequest(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	s := &Sink{Client: r.client(t, nil)}
	if err := s.Probe(context.Background()); err != nil {
		t.Fatalf("probe of a healthy Dataverse: %v", err)
	}
	r.fault(t, http.MethodPost, `{"status":503,"seconds":30}`)
	before := r.sb.Stats().ByEndpoint
	err := s.Probe(context.Background())
	if connectors.KindOf(err) != connectors.Transient {
		t.Fatalf("probe during a 503 outage: %v, want a transient error", err)
	}
	after := r.sb.Stats().ByEndpoint
	if n := after["fault"] - before["fault"] + after["dv_whoami"] - before["dv_whoami"]; n != 1 {
		t.Errorf("a failed probe sent %d requests, want 1", n)
	}
}

// Once a $batch failed as a whole and transiently, the sink sends no
// more of the call's chunks: they share the failure (the pipeline's
// breaker then probes). Before, every chunk was sent and retried.
func TestApplyStopsWhenDataverseFails(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	c := r.client(t, func(cfg *Config) { cfg.BatchSize = 2; cfg.MaxConcurrent = 1; cfg.RetryMax = -1 })
	s := &Sink{Client: c}
	var ops []connectors.Op
	for i := range 20 {
		ops = append(ops, connectors.Op{Object: "contact", Action: mappings.Upsert, KeyField: "msemr_medicalrecordnumber",
			Key: fmt.Sprint("MRN-", i), Fields: []mappings.Field{{Name: "lastname", Value: mappings.Str("P")}}})
	}
	if _, err := c.WhoAmI(context.Background()); err != nil { // the token, before the outage
		t.Fatal(err)
	}
	r.fault(t, http.MethodPost, `{"status":503,"seconds":30}`)
	res := s.Apply(context.Background(), ops)
	for i, x := range res {
		if connectors.KindOf(x.Err) != connectors.Transient || x.Err == nil {
			t.Fatalf("op %d: %v, want the transient failure", i, x.Err)
		}
	}
	if n := r.sb.Stats().ByEndpoint["fault"]; n != 1 {
		t.Errorf("%d requests reached a failing Dataverse for 10 chunks, want 1", n)
	}
}

package dynamics

import (
	"context"
	"errors"
	"testing"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// A synchronous plug-in refusing writes of contact makes the sink report
// each refused patient as a permanent connectors.Error naming
// Dataverse's IsvAborted code 0x80040265 (the pipeline dead-letters it
// instead of retrying), in one request and in $batch requests; once the
// plug-in is gone the same ops are accepted.
func TestSinkValidationRuleIsPermanent(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	ctx := context.Background()
	patientOp := func(key string) connectors.Op {
		return connectors.Op{Object: "contact", Action: mappings.Upsert, KeyField: "msemr_medicalrecordnumber", Key: key,
			Fields: []mappings.Field{{Name: "lastname", Value: mappings.Str("Doe")}}}
	}
	r.fault(t, "POST", `{"validation_rule":{"object":"contact","message":"Insurance must be verified"}}`)
	for _, batch := range []int{1, 3} {
		sink := &Sink{Client: r.client(t, func(cfg *Config) { cfg.BatchSize = batch })}
		ops := []connectors.Op{patientOp("P1"), patientOp("P2"), patientOp("P3")}
		for i, res := range sink.Apply(ctx, ops) {
			var e *connectors.Error
			if !errors.As(res.Err, &e) || e.Code != "0x80040265" || connectors.KindOf(res.Err) != connectors.Permanent ||
				e.Message != "Insurance must be verified" {
				t.Errorf("batch size %d, op %d: %#v, want a permanent 0x80040265", batch, i, res.Err)
			}
		}
	}
	if n := len(r.sb.DataverseRecords("contact")); n != 0 {
		t.Errorf("%d contacts written under the plug-in", n)
	}
	r.fault(t, "DELETE", "")
	sink := &Sink{Client: r.client(t, func(cfg *Config) { cfg.BatchSize = 3 })}
	for i, res := range sink.Apply(ctx, []connectors.Op{patientOp("P1"), patientOp("P2")}) {
		if res.Err != nil {
			t.Errorf("after the plug-in, op %d: %v", i, res.Err)
		}
	}
	if n := len(r.sb.DataverseRecords("contact")); n != 2 {
		t.Errorf("%d contacts after the plug-in, want 2", n)
	}
}

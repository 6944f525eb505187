package salesforce

import (
	"context"
	"errors"
	"testing"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// A validation rule an admin activated on Account makes the sink report
// each refused patient as a permanent connectors.Error naming
// FIELD_CUSTOM_VALIDATION_EXCEPTION (the pipeline dead-letters it
// instead of retrying), alone and in a batch; once the rule is removed
// the same ops are accepted.
func TestSinkValidationRuleIsPermanent(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	sink := &Sink{Client: r.client(t, nil)}
	ctx := context.Background()
	patientOp := func(key string) connectors.Op {
		return connectors.Op{Object: "Account", Action: mappings.Upsert, KeyField: "EHR_Patient_Key__c", Key: key,
			Fields: []mappings.Field{{Name: "LastName", Value: mappings.Str("Doe")}}}
	}
	r.fault(t, `{"validation_rule":{"object":"Account","message":"Insurance must be verified","field":"LastName"}}`)
	for _, ops := range [][]connectors.Op{
		{patientOp("P1")},
		{patientOp("P1"), patientOp("P2"), patientOp("P3")},
	} {
		before := r.sb.Stats().RequestsTotal
		for i, res := range sink.Apply(ctx, ops) {
			var e *connectors.Error
			if !errors.As(res.Err, &e) || e.Code != "FIELD_CUSTOM_VALIDATION_EXCEPTION" || connectors.KindOf(res.Err) != connectors.Permanent ||
				e.Message != "Insurance must be verified" {
				t.Errorf("%d ops, op %d: %#v, want a permanent FIELD_CUSTOM_VALIDATION_EXCEPTION", len(ops), i, res.Err)
			}
		}
		// Not retried by the client: one data request (plus a token).
		if n := r.sb.Stats().RequestsTotal - before; n > 2 {
			t.Errorf("%d ops: %d requests, want the refusal taken at once", len(ops), n)
		}
	}
	if n := len(r.sb.Records("Account")); n != 0 {
		t.Errorf("%d accounts written under the rule", n)
	}
	r.clearFaults(t)
	for i, res := range sink.Apply(ctx, []connectors.Op{patientOp("P1"), patientOp("P2")}) {
		if res.Err != nil {
			t.Errorf("after the rule, op %d: %v", i, res.Err)
		}
	}
	if n := len(r.sb.Records("Account")); n != 2 {
		t.Errorf("%d accounts after the rule, want 2", n)
	}
}

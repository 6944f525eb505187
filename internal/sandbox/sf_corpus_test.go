package sandbox_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors/salesforce"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// TestHealthCloudCorpusAgainstSchema is the proof that the shipped
// Health Cloud set sends nothing the published metadata rejects: every
// message of the shared HL7 v2 corpus, of hl7/testdata/wild and every
// resource of the FHIR R4 corpus is mapped through
// configs/mappings/healthcloud, and each op, rendered as the connector
// sends it, is checked against the sandbox's schema as a create: the
// object known, every field and relationship key known, required fields
// set, text within its length, and every picklist value one the published
// sources or the set's admin checklist list (checked as if every picklist
// were restricted). Findings are counted by op and field, never by value.
// Large bundles repeat the same resource shapes: 4 resources of each type
// the set accepts per FHIR file are mapped (every HL7 message is), to keep
// the test within seconds under the race detector.
func TestHealthCloudCorpusAgainstSchema(t *testing.T) {
	const perType = 4
	mapped := map[string]bool{"Patient": true, "Encounter": true, "Observation": true, "Condition": true, "AllergyIntolerance": true}
	schema, err := sandbox.LoadSchema()
	if err != nil {
		t.Fatal(err)
	}
	set, err := mappings.Load([]string{filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud")}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	inputs := sandbox.CorpusInputs(t, perType, mapped)
	findings := map[string]int{}
	ops, checked := 0, map[string]bool{}
	for _, in := range inputs {
		res, err := set.Map(in)
		if err != nil {
			var me *mappings.Error
			if !errors.As(err, &me) {
				t.Errorf("error of type %T", err)
			}
			continue // refused with a reason (a dead letter), nothing sent
		}
		for _, op := range res.Ops {
			ops++
			rec := salesforce.Fields(op.Fields)
			create := op.Action != mappings.Update
			if create {
				rec[op.KeyField] = op.Key
			}
			checked[op.Object] = true
			err := schema.CheckKey(op.Object, op.KeyField)
			if err == nil {
				err = schema.Check(op.Object, rec, create, true)
			}
			if err != nil {
				var ae interface {
					ErrorCode() string
					FieldNames() []string
				}
				if !errors.As(err, &ae) {
					t.Fatalf("error of type %T", err)
				}
				findings[fmt.Sprintf("%s op %s (%s): %s %v", op.Mapping, op.Object, op.Action, ae.ErrorCode(), ae.FieldNames())]++
			}
		}
	}
	t.Logf("%d inputs, %d ops on %d objects checked", len(inputs), ops, len(checked))
	if ops < 5000 || len(checked) < 8 {
		t.Errorf("only %d ops on %v: the corpus did not reach every object", ops, checked)
	}
	keys := make([]string, 0, len(findings))
	for k := range findings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Errorf("%s: %d ops", k, findings[k])
	}
}

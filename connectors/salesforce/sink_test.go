package salesforce

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

func opsOf(t *testing.T, set *mappings.Set, file string) []connectors.Op {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ins, err := mappings.ParseInput(data)
	if err != nil {
		t.Fatal(err)
	}
	var ops []connectors.Op
	for _, in := range ins {
		res, err := set.Map(in)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, res.Ops...)
	}
	return ops
}

// The shipped Health Cloud mappings' ops for a corpus ADT land in the
// sandbox with their references resolved, and applying them again changes
// nothing.
func TestSinkAppliesShippedMappings(t *testing.T) {
	root := shared.ModuleRoot(t)
	set, err := mappings.Load([]string{filepath.Join(root, "configs", "mappings", "healthcloud")}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, sandbox.Options{})
	sink := &Sink{Client: r.client(t, nil)}
	ctx := context.Background()
	samples := filepath.Join(root, "configs", "samples", "hl7v2")
	ops := opsOf(t, set, filepath.Join(samples, "ADT-A01-01.hl7"))
	ops = append(ops, opsOf(t, set, filepath.Join(samples, "ORU-R01-01.hl7"))...)
	for i, res := range sink.Apply(ctx, ops) {
		if res.Err != nil {
			t.Errorf("op %d (%s %s): %v", i, ops[i].Action, ops[i].Object, res.Err.(*connectors.Error).Detail())
		}
	}
	counts := r.sb.Stats().Records
	accounts := r.sb.Records("Account")
	encounters := r.sb.Records("ClinicalEncounter")
	if len(accounts) != 2 || len(encounters) != 1 || counts["CareObservation"] == 0 || counts["AllergyIntolerance"] != 1 || counts["HealthCondition"] != 1 {
		t.Fatalf("records: %v", counts)
	}
	if encounters[0]["PatientId"] != accounts[0]["Id"] {
		t.Errorf("encounter's PatientId %v, want %v", encounters[0]["PatientId"], accounts[0]["Id"])
	}
	before := r.sb.Stats().Records
	for i, res := range sink.Apply(ctx, ops) {
		if res.Err != nil {
			t.Errorf("re-apply op %d: %v", i, res.Err)
		}
	}
	after := r.sb.Stats().Records
	for obj, n := range before {
		if after[obj] != n {
			t.Errorf("re-apply changed %s: %d → %d", obj, n, after[obj])
		}
	}
	// A merge updates the surviving patient and never creates the old one.
	merge := opsOf(t, set, filepath.Join(samples, "ADT-A40-01.hl7"))
	for i, res := range sink.Apply(ctx, merge) {
		if res.Err != nil {
			t.Errorf("merge op %d: %v", i, res.Err)
		}
	}
	for _, a := range r.sb.Records("Account") {
		if a["EHR_Patient_Key__c"] == "BCBS|56789" {
			t.Errorf("the merged-away patient was created: %v", a)
		}
	}
}

// An op whose referenced record failed in the same call fails with that
// error: a transient failure of the patient must not make the encounter a
// permanent "foreign key not found".
func TestSinkPropagatesDependencyFailure(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	sink := &Sink{Client: r.client(t, nil)}
	ref := mappings.Value{Kind: mappings.Ref, Ref: &mappings.Reference{Object: "Account", KeyField: "EHR_Patient_Key__c", Key: "P1"}}
	ops := []connectors.Op{
		{Object: "ClinicalEncounter", Action: mappings.Upsert, KeyField: "EHR_Encounter_Key__c", Key: "V1",
			Fields: []mappings.Field{{Name: "PatientId", Value: ref}, {Name: "Status", Value: mappings.Str("Planned")}}},
		{Object: "Account", Action: mappings.Upsert, KeyField: "EHR_Patient_Key__c", Key: "P1",
			Fields: []mappings.Field{{Name: "FirstName", Value: mappings.Str("NoLastName")}}},
		{Object: "Account", Action: mappings.Delete, KeyField: "EHR_Patient_Key__c", Key: "nobody"},
	}
	res := sink.Apply(context.Background(), ops)
	e1, ok1 := res[1].Err.(*connectors.Error)
	e0, ok0 := res[0].Err.(*connectors.Error)
	if !ok1 || e1.Code != "REQUIRED_FIELD_MISSING" || !ok0 || e0.Code != "REQUIRED_FIELD_MISSING" {
		t.Errorf("results %v / %v", res[0].Err, res[1].Err)
	}
	if res[2].Err != nil {
		t.Errorf("deleting a record that does not exist: %v", res[2].Err)
	}
	if n := len(r.sb.Records("ClinicalEncounter")); n != 0 {
		t.Errorf("an encounter without its patient was created")
	}
}

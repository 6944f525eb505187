package salesforce

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// Issue 26.4, patient safety: an org an older ehrbridge wrote has the
// patient keyed only in SourceSystemIdentifier. The upgraded set upserts
// by EHR_Patient_Key__c, which is empty there, so the upsert would create
// a second account for the same patient. The sink holds such upserts
// (and what refers to them) with a transient UNCOPIED_KEYS until the
// one-time copy is done, and then writes onto the existing account.
func TestUpgradeGuardHoldsUntilKeysAreCopied(t *testing.T) {
	root := shared.ModuleRoot(t)
	set, err := mappings.Load([]string{filepath.Join(root, "configs", "mappings", "healthcloud")}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, sandbox.Options{})
	var mu sync.Mutex
	clock := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	sink := &Sink{Client: r.client(t, nil), Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }}
	ctx := context.Background()

	// What the older release wrote for the sample's patient.
	const key = "test1^2.16.1^HCD|PATID1234"
	post := func(method, path string, body map[string]any) map[string]any {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, r.base+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %v %v", method, path, err, resp)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	old := post("POST", "/sandbox/v1/objects/Account", map[string]any{"LastName": "EVERYMAN", "SourceSystemIdentifier": key})
	oldID, _ := old["id"].(string)
	if oldID == "" {
		oldID, _ = old["Id"].(string)
	}

	ops := opsOf(t, set, filepath.Join(root, "configs", "samples", "hl7v2", "ADT-A01-01.hl7"))
	var sawRef bool
	for i, res := range sink.Apply(ctx, ops) {
		var e *connectors.Error
		refers := false
		for _, f := range ops[i].Fields {
			refers = refers || f.Value.Kind == mappings.Ref && f.Value.Ref.Object == "Account"
		}
		switch {
		case ops[i].Object == "Account" || refers:
			sawRef = sawRef || refers
			if !errors.As(res.Err, &e) || e.Code != "UNCOPIED_KEYS" || e.Kind != connectors.Transient {
				t.Errorf("op %d (%s): %v, want held (transient UNCOPIED_KEYS)", i, ops[i].Object, res.Err)
			} else if want := "1 Account records have SourceSystemIdentifier but no EHR_Patient_Key__c"; len(e.Message) < len(want) || e.Message[:len(want)] != want {
				t.Errorf("message %q", e.Message)
			}
		case res.Err != nil:
			t.Errorf("op %d (%s): %v", i, ops[i].Object, res.Err)
		}
	}
	if !sawRef {
		t.Fatal("the sample has no op referring to the patient: the test shows less than it claims")
	}
	if n := len(r.sb.Records("Account")); n != 1 {
		t.Fatalf("%d accounts after the held upsert, want the old one only (a duplicate patient)", n)
	}
	if n := len(r.sb.Records("ClinicalEncounter")); n != 0 {
		t.Errorf("%d encounters written for a held patient", n)
	}

	// Within the recheck interval the org is not asked again.
	before := r.sb.Stats().ByEndpoint["query"]
	sink.Apply(ctx, ops)
	if n := r.sb.Stats().ByEndpoint["query"] - before; n != 0 {
		t.Errorf("%d COUNT() queries within a minute, want 0", n)
	}

	// The admin's one-time copy; a minute later the same message goes
	// through, onto the existing account.
	post("PATCH", "/sandbox/v1/objects/Account/"+oldID, map[string]any{"EHR_Patient_Key__c": key})
	mu.Lock()
	clock = clock.Add(2 * time.Minute)
	mu.Unlock()
	for i, res := range sink.Apply(ctx, ops) {
		if res.Err != nil {
			t.Errorf("after the copy, op %d (%s): %v", i, ops[i].Object, res.Err)
		}
	}
	accounts := r.sb.Records("Account")
	if len(accounts) != 1 || accounts[0]["Id"] != oldID || accounts[0]["FirstName"] != "ADAM" {
		t.Errorf("accounts %v, want the old one updated", accounts)
	}
	if n := len(r.sb.Records("ClinicalEncounter")); n != 1 {
		t.Errorf("%d encounters after the copy, want 1", n)
	}
	// Clear once: never asked again.
	before = r.sb.Stats().ByEndpoint["query"]
	mu.Lock()
	clock = clock.Add(time.Hour)
	mu.Unlock()
	sink.Apply(ctx, ops)
	if n := r.sb.Stats().ByEndpoint["query"] - before; n != 0 {
		t.Errorf("%d COUNT() queries after the org was clear, want 0", n)
	}
}

// Ops that do not write SourceSystemIdentifier beside another key (every
// object but the three the older release keyed by it) cost no query.
func TestUpgradeGuardOnlyForLegacyKeyedOps(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	sink := &Sink{Client: r.client(t, nil)}
	ops := []connectors.Op{{Object: "Account", Action: mappings.Upsert, KeyField: "EHR_Patient_Key__c", Key: "H|1",
		Fields: []mappings.Field{{Name: "LastName", Value: mappings.Str("Doe")}}}}
	for _, res := range sink.Apply(context.Background(), ops) {
		if res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	if n := r.sb.Stats().ByEndpoint["query"]; n != 0 {
		t.Errorf("%d queries", n)
	}
}

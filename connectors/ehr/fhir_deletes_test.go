package ehr

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/fhirtest"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

func TestDeletedRef(t *testing.T) {
	for _, c := range []struct{ entry, typ, id, version string }{
		{`{"request":{"method":"DELETE","url":"Patient/123"}}`, "Patient", "123", ""},
		{`{"request":{"method":"DELETE","url":"Encounter/e1/_history/3"},"response":{"status":"410 Gone"}}`, "Encounter", "e1", "3"},
		{`{"request":{"method":"DELETE","url":"Encounter/e1"},"response":{"status":"204","etag":"W/\"7\""}}`, "Encounter", "e1", "7"},
		{`{"fullUrl":"https://ehr.example/fhir/R4/Observation/o-9","response":{"status":"410","lastModified":"2026-01-01T00:00:00Z"}}`, "Observation", "o-9", "2026-01-01T00:00:00Z"},
		{`{"request":{"method":"DELETE","url":"Patient"}}`, "", "", ""},
	} {
		var e entry
		if err := json.Unmarshal([]byte(c.entry), &e); err != nil {
			t.Fatal(err)
		}
		if !e.deleted() {
			t.Errorf("%s: not a delete", c.entry)
		}
		typ, id, v := e.deletedRef()
		if typ != c.typ || id != c.id || v != c.version {
			t.Errorf("%s: got %q %q %q, want %q %q %q", c.entry, typ, id, v, c.typ, c.id, c.version)
		}
	}
}

// A delete joins the lane of the resource's own records (the patient's),
// even after a restart emptied the patient cache, so that it is applied
// after them; a resource never stored gets a lane of its own.
func TestDeleteFollowsTheResourceLane(t *testing.T) {
	srv := httptest.NewServer(fhirtest.New())
	defer srv.Close()
	s, l := newSource(t, srv)
	s.Cfg.Deletes = DeletesApply
	// The shipped mappings key (and lane) a patient by its MR identifier,
	// which a delete, carrying only the resource id, cannot compute.
	set, err := mappings.Load([]string{filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud")}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	s.Mappings = func() *mappings.Set { return set }
	ctx := context.Background()
	add := func(raw string) {
		t.Helper()
		var head resourceHead
		if err := json.Unmarshal([]byte(raw), &head); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.append(ctx, head, json.RawMessage(raw)); err != nil || !ok {
			t.Fatalf("append %s: %v %v", head.ID, ok, err)
		}
	}
	add(`{"resourceType":"Patient","id":"p1","meta":{"versionId":"1"},"identifier":[{"type":{"coding":[{"code":"MR"}]},"system":"urn:oid:1.2.3","value":"M1"}]}`)
	add(`{"resourceType":"Encounter","id":"e1","meta":{"versionId":"1"},"subject":{"reference":"Patient/p1"}}`)
	add(`{"resourceType":"Encounter","id":"e1","meta":{"versionId":"2"},"subject":{"reference":"Patient/p1"}}`)
	s.patients = patientCache{} // as after a restart
	for _, d := range [][2]string{{"Encounter", "e1"}, {"Patient", "p1"}, {"Observation", "o9"}} {
		if ok, err := s.appendDelete(ctx, d[0], d[1], ""); err != nil || !ok {
			t.Fatalf("delete %s/%s: %v %v", d[0], d[1], ok, err)
		}
	}
	recs, err := l.Recent(10)
	if err != nil {
		t.Fatal(err)
	}
	lanes := map[string][16]byte{}
	for _, r := range recs {
		lanes[strings.TrimPrefix(r.Key, "fhir|ehrfhir|")] = r.Lane
	}
	patientLane := lanes["Patient/p1/_history/1"]
	if patientLane == l.LaneHash("p1") || lanes["Encounter/e1/_history/2"] != patientLane {
		t.Fatal("the patient is not laned by its MR key, or the encounter not in its lane")
	}
	for _, k := range []string{"Encounter/e1/_history/deleted-gone", "Patient/p1/_history/deleted-gone"} {
		if lanes[k] != patientLane {
			t.Errorf("%s is not in the patient's lane", k)
		}
	}
	if got := lanes["Observation/o9/_history/deleted-gone"]; got != l.LaneHash("Observation/o9") {
		t.Error("a delete of a resource never stored is not in a lane of its own")
	}
}

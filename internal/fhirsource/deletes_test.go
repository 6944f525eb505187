package fhirsource

import (
	"encoding/json"
	"testing"
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

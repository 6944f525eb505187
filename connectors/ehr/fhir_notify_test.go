package ehr

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/fhirtest"
)

// The subscription endpoint: the secret is required; a full resource, an
// R5-style notification bundle (full and id-only entries) and a ping are
// each stored before the 200; a resource sent twice is one record.
func TestNotifications(t *testing.T) {
	fake := fhirtest.New()
	fake.Token = "T0K"
	t0 := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	fake.Add("Patient", "p1", t0, nil)
	fake.Add("Encounter", "e1", t0.Add(time.Second), map[string]any{"subject": map[string]any{"reference": "Patient/p1"}})
	fhirSrv := httptest.NewServer(fake)
	defer fhirSrv.Close()
	s, l := newSource(t, fhirSrv)
	notified := 0
	s.Appended = func() { notified++ }
	hook := httptest.NewServer(s.NotifyHandler("Authorization", "s3cret"))
	defer hook.Close()
	post := func(auth, body string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, hook.URL, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		req.Header.Set("Content-Type", "application/fhir+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	records := func() int64 {
		st, _ := l.Stats()
		return st.States[checkpoint.Received]
	}
	full := `{"resourceType":"Patient","id":"p7","meta":{"versionId":"3","lastUpdated":"2026-01-05T09:00:00Z"},"name":[{"family":"Push"}]}`
	if got := post("Bearer wrong", full); got != http.StatusUnauthorized {
		t.Errorf("wrong secret: %d", got)
	}
	if got := post("", full); got != http.StatusUnauthorized {
		t.Errorf("no secret: %d", got)
	}
	if got := post("Bearer s3cret", full); got != http.StatusOK || records() != 1 {
		t.Fatalf("full resource: %d, %d records", got, records())
	}
	if got := post("Bearer s3cret", full); got != http.StatusOK || records() != 1 {
		t.Errorf("the same version again: %d, %d records", got, records())
	}
	bundle := `{"resourceType":"Bundle","type":"subscription-notification","entry":[
	  {"fullUrl":"urn:uuid:1","resource":{"resourceType":"SubscriptionStatus","type":"event-notification"}},
	  {"fullUrl":"` + fhirSrv.URL + `/fhir/Encounter/e1"},
	  {"resource":{"resourceType":"Encounter","id":"e9","meta":{"versionId":"1"},"subject":{"reference":"Patient/p7"}}}]}`
	if got := post("Bearer s3cret", bundle); got != http.StatusOK || records() != 3 {
		t.Fatalf("notification bundle: %d, %d records", got, records())
	}
	// A ping: the source polls now (Patient p1, Encounter e1 already stored).
	if got := post("Bearer s3cret", ""); got != http.StatusOK || records() != 4 {
		t.Errorf("ping: %d, %d records", got, records())
	}
	if got := post("Bearer s3cret", `{"resourceType":`); got != http.StatusBadRequest {
		t.Errorf("malformed: %d", got)
	}
	if got := post("Bearer s3cret", `{"resourceType":"Patient","name":[{"family":"Noid"}]}`); got != http.StatusBadRequest {
		t.Errorf("a resource without an id: %d", got)
	}
	if notified == 0 {
		t.Error("the pipeline was never woken")
	}
	// The id-only entry's read goes to the server's origin only.
	foreign := `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"fullUrl":"http://elsewhere.example/fhir/Patient/x"}]}`
	if got := post("Bearer s3cret", foreign); got != http.StatusBadRequest {
		t.Errorf("foreign fullUrl: %d", got)
	}
}

// TestRefusalLog: the first refusal is reported, the next ones within a
// minute are counted and reported together after it.
func TestRefusalLog(t *testing.T) {
	var l refusalLog
	if n := l.note(); n != 1 {
		t.Fatalf("first refusal: report %d, want 1", n)
	}
	for range 5 {
		if n := l.note(); n != 0 {
			t.Fatalf("a refusal within the minute reported (%d)", n)
		}
	}
	l.last = l.last.Add(-61 * time.Second)
	if n := l.note(); n != 6 {
		t.Fatalf("after a minute: report %d, want 6 (5 held back and this one)", n)
	}
}

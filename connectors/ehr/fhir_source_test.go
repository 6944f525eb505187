package ehr

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
	"github.com/ehrbridge/ehrbridge/internal/configvalue"
	"github.com/ehrbridge/ehrbridge/internal/fhirtest"
)

func newSource(t *testing.T, srv *httptest.Server) (*FHIRSource, *checkpoint.Log) {
	t.Helper()
	l, err := checkpoint.Open(filepath.Join(t.TempDir(), checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &FHIRSource{Cfg: FHIRSourceConfig{Name: "ehrfhir", Types: []string{"Patient", "Encounter"}, PageSize: 3, Overlap: configvalue.Duration(time.Second)},
		Client: &fhirhttp.Client{Base: srv.URL + "/fhir", Auth: fhirhttp.StaticToken("T0K")}, Log: l,
		Logger: slog.New(slog.DiscardHandler)}, l
}

// The first poll loads everything, page by page; the watermark follows
// each durable page; a second poll (with the overlap re-reading some)
// adds nothing; a new version and a new patient are picked up; records
// are ordered by patient lanes.
func TestPollPagesAndTails(t *testing.T) {
	fake := fhirtest.New()
	fake.Token = "T0K"
	t0 := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	for i := range 7 {
		fake.Add("Patient", fmt.Sprint("p", i), t0.Add(time.Duration(i)*time.Minute), nil)
		fake.Add("Encounter", fmt.Sprint("e", i), t0.Add(time.Duration(i)*time.Minute+time.Second),
			map[string]any{"subject": map[string]any{"reference": fmt.Sprint("Patient/p", i)}})
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	s, l := newSource(t, srv)
	st, err := s.Poll(context.Background())
	if err != nil || st.Added != 14 || st.Pages != 6 { // 3+3+1 of each type
		t.Fatalf("first poll: %+v %v", st, err)
	}
	if wm, _ := s.Watermark("Encounter"); !wm.Equal(t0.Add(6*time.Minute + time.Second)) {
		t.Errorf("watermark %v", wm)
	}
	st, err = s.Poll(context.Background())
	if err != nil || st.Added != 0 {
		t.Errorf("second poll: %+v %v", st, err)
	}
	fake.Add("Patient", "p3", t0.Add(time.Hour), map[string]any{"name": []any{map[string]any{"family": "New"}}})
	fake.Add("Patient", "p9", t0.Add(time.Hour+time.Second), nil)
	st, err = s.Poll(context.Background())
	if err != nil || st.Added != 2 || st.Seen != 5 { // the overlap re-reads p6 and e6; a full last page, p9 once more
		t.Errorf("tail poll: %+v %v", st, err)
	}
	recs, _ := l.List(checkpoint.Received, 0, 100)
	keys := map[string]bool{}
	for _, r := range recs {
		keys[r.Key] = true
		// A patient and its encounter share the patient's lane (its key:
		// without mappings, its id).
		if want := l.LaneHash("p2"); (r.Key == "fhir|ehrfhir|Patient/p2/_history/1" || r.Key == "fhir|ehrfhir|Encounter/e2/_history/1") && r.Lane != want {
			t.Errorf("%s is not in the lane of Patient/p2", r.Key)
		}
	}
	if len(recs) != 16 || !keys["fhir|ehrfhir|Patient/p3/_history/2"] {
		t.Errorf("%d records, keys %v", len(recs), keys)
	}
}

// A page that fails leaves the watermark where the last durable page put
// it; the next poll resumes there and nothing is lost or doubled.
func TestPollResumesAfterFailure(t *testing.T) {
	fake := fhirtest.New()
	fake.Token = "T0K"
	t0 := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	for i := range 9 {
		fake.Add("Patient", fmt.Sprint("p", i), t0.Add(time.Duration(i)*time.Minute), nil)
	}
	fail := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("_offset") == "6" && fail == 0 {
			fail++
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fake.ServeHTTP(w, r)
	}))
	defer srv.Close()
	s, l := newSource(t, srv)
	s.Cfg.Types = []string{"Patient"}
	if _, err := s.Poll(context.Background()); err == nil {
		t.Fatal("the 503 was not reported")
	}
	if wm, _ := s.Watermark("Patient"); !wm.Equal(t0.Add(5 * time.Minute)) {
		t.Errorf("watermark after the failed page %v, want the last durable page's newest", wm)
	}
	st, err := s.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stats, _ := l.Stats(); stats.States[checkpoint.Received] != 9 {
		t.Errorf("%d records after the resume (%+v)", stats.States[checkpoint.Received], st)
	}
}

// References to patients in their various forms.
func TestPatientRef(t *testing.T) {
	for in, want := range map[string]string{
		"Patient/123": "Patient/123", "https://ehr/fhir/R4/Patient/123/_history/2": "Patient/123",
		"urn:uuid:abc": "Patient/abc", "Practitioner/9": "", "Patient/": "",
	} {
		if got := PatientRef(in); got != want {
			t.Errorf("PatientRef(%q) = %q, want %q", in, got, want)
		}
	}
}

// A server that does not page (a full page, no link[next]) is read on
// from the newest change seen, ties included, until a page comes back
// short: nothing is missed, nothing doubled.
func TestPollServerWithoutPaging(t *testing.T) {
	fake := fhirtest.New()
	fake.Token, fake.NoPaging = "T0K", true
	t0 := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	for i := range 8 {
		// Pairs share an instant, as resources of one transaction may.
		fake.Add("Patient", fmt.Sprint("p", i), t0.Add(time.Duration(i/2)*time.Second), nil)
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	s, l := newSource(t, srv)
	s.Cfg.Types = []string{"Patient"}
	st, err := s.Poll(context.Background())
	if err != nil || st.Added != 8 {
		t.Fatalf("poll of a server without paging: %+v %v", st, err)
	}
	if stats, _ := l.Stats(); stats.States[checkpoint.Received] != 8 {
		t.Errorf("%d records", stats.States[checkpoint.Received])
	}
}

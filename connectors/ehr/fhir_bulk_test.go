package ehr

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/fhirtest"
)

// A bulk backfill: the CapabilityStatement offers $export; the export is
// kicked off once; stopped after its first file, it resumes the same
// export and loads only the rest; at the end each type's watermark is the
// transactionTime and a search from there adds nothing but what changed.
func TestBulkExportResumes(t *testing.T) {
	fake := fhirtest.New()
	fake.Token = "T0K"
	fake.Bulk, fake.BulkPolls = true, 2
	t0 := time.Now().Add(-time.Hour)
	for i := range 20 {
		fake.Add("Patient", fmt.Sprint("p", i), t0.Add(time.Duration(i)*time.Second), nil)
		fake.Add("Encounter", fmt.Sprint("e", i), t0.Add(time.Duration(i)*time.Second+time.Millisecond),
			map[string]any{"subject": map[string]any{"reference": fmt.Sprint("Patient/p", i)}})
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	s, l := newSource(t, srv)
	ok, err := s.BulkAvailable(context.Background())
	if err != nil || !ok {
		t.Fatalf("BulkAvailable: %v %v", ok, err)
	}

	// Stop once the Patient file is stored.
	ctx, cancel := context.WithCancel(context.Background())
	totals := map[string]int{}
	s.Total = func(typ string, n int) { totals[typ] += n }
	s.Progress = func(typ string, seen, added int) {
		if typ == "Patient" {
			cancel()
		}
	}
	var statuses []string
	if _, err := s.Bulk(ctx, []string{"Patient", "Encounter"}, time.Time{}, func(st string) { statuses = append(statuses, st) }); err == nil {
		t.Fatal("a cancelled export returned no error")
	}
	if pending, _ := s.BulkPending(); !pending {
		t.Fatal("the stopped export is not pending")
	}
	if len(statuses) != 2 || totals["Patient"] != 20 {
		t.Errorf("statuses %q, totals %v", statuses, totals)
	}

	s.Progress = nil
	st, err := s.Bulk(context.Background(), []string{"Patient", "Encounter"}, time.Time{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fake.Exports() != 1 {
		t.Errorf("%d exports kicked off, want 1 (resumed)", fake.Exports())
	}
	if st.Files != 1 || st.Resources != 20 {
		t.Errorf("the resumed export loaded %+v, want only the Encounter file", st)
	}
	if pending, _ := s.BulkPending(); pending {
		t.Error("the export is still pending after it finished")
	}
	n, _ := l.Stats()
	if got := n.States[checkpoint.Received]; got != 40 {
		t.Errorf("%d records, want 40", got)
	}
	for _, typ := range []string{"Patient", "Encounter"} {
		if wm, _ := s.Watermark(typ); !wm.Equal(st.TransactionTime) {
			t.Errorf("%s watermark %v, want the transactionTime %v", typ, wm, st.TransactionTime)
		}
	}
	// Tailing from the export: a change after it, nothing else.
	fake.Add("Patient", "p99", time.Now(), nil)
	ps, err := s.Poll(context.Background())
	if err != nil || ps.Added != 1 {
		t.Errorf("the poll after the export: %+v %v", ps, err)
	}
}

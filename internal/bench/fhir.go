package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
	"github.com/ehrbridge/ehrbridge/internal/fhirtest"
	"github.com/ehrbridge/ehrbridge/internal/pipeline"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// FHIROptions configure FHIR.
type FHIROptions struct {
	// Mappings is the mapping set (its FHIR mappings are used).
	Mappings string
	// Patients to backfill, each with Encounters encounters; 1000 and 1.
	Patients, Encounters int
	// PageSize is the FHIR search _count; 100.
	PageSize int
	// Latency of each FHIR page; 5ms.
	Latency time.Duration
	// Bulk reads through Bulk Data $export instead of paged search.
	Bulk bool
	Dir  string
}

// FHIRReport holds the figures.
type FHIRReport struct {
	Resources   int
	Read        time.Duration // FHIR server → checkpoint log
	Total       time.Duration // first page to the last record done in the CRM
	FHIRPages   int
	CRMRequests int64
}

// FHIR measures a backfill: resources read from a FHIR server (in memory,
// paging, with per-page latency) into the checkpoint log, and the pipeline
// sending them to the CRM sandbox at the same time, until every record is
// done. It prints the rates and CRM requests per resource.
func FHIR(ctx context.Context, opts FHIROptions, w io.Writer) (FHIRReport, error) {
	if opts.Patients <= 0 {
		opts.Patients = 1000
	}
	if opts.Encounters <= 0 {
		opts.Encounters = 1
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 100
	}
	if opts.Latency <= 0 {
		opts.Latency = 5 * time.Millisecond
	}
	set, err := mappings.Load([]string{opts.Mappings}, mappings.Options{Zone: time.UTC})
	if err != nil {
		return FHIRReport{}, fmt.Errorf("bench: mappings: %w", err)
	}
	root, err := os.MkdirTemp(opts.Dir, "ehrbridge-fhir-bench-")
	if err != nil {
		return FHIRReport{}, err
	}
	defer os.RemoveAll(root)
	quiet := slog.New(slog.DiscardHandler)

	fake := fhirtest.New()
	fake.Latency = opts.Latency
	fake.Bulk = opts.Bulk
	t0 := time.Now().Add(-24 * time.Hour)
	for i := range opts.Patients {
		id := fmt.Sprintf("p%06d", i)
		fake.Add("Patient", id, t0.Add(time.Duration(i)*time.Millisecond), map[string]any{
			"name": []any{map[string]any{"family": fmt.Sprintf("BENCH%06d", i), "given": []any{"Pat"}}}, "gender": "female", "birthDate": "1970-01-01",
			// keyed by its MRN, so encounters resolve their subject to it
			"identifier": []any{map[string]any{"type": map[string]any{"coding": []any{map[string]any{"code": "MR"}}},
				"system": "urn:oid:2.16.840.1.113883.19.5", "value": fmt.Sprintf("M%06d", i)}}})
		for e := range opts.Encounters {
			fake.Add("Encounter", fmt.Sprintf("e%06d-%d", i, e), t0.Add(time.Duration(i)*time.Millisecond+time.Microsecond*time.Duration(e+1)),
				// class is 1..1 in FHIR R4 and gives the required ClinicalEncounter.Category.
				map[string]any{"status": "finished", "subject": map[string]any{"reference": "Patient/" + id},
					"class":  map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
					"period": map[string]any{"start": "2026-01-05T08:00:00Z"}})
		}
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()

	l, err := checkpoint.Open(filepath.Join(root, checkpoint.FileName), checkpoint.Options{Logger: quiet})
	if err != nil {
		return FHIRReport{}, err
	}
	defer l.Close()
	sb, err := sandbox.New(sandbox.Options{Logger: quiet})
	if err != nil {
		return FHIRReport{}, err
	}
	defer sb.Close()
	sink, _, _, err := benchSink(sb, "salesforce", quiet)
	if err != nil {
		return FHIRReport{}, err
	}
	var src *ehr.FHIRSource
	p := pipeline.New(pipeline.Options{Log: l, Mappings: func() *mappings.Set { return set }, Sink: sink, Logger: quiet,
		Patients: func(string) mappings.PatientResolver { return src }})
	src = &ehr.FHIRSource{Cfg: ehr.FHIRSourceConfig{Name: "bench", Types: []string{"Patient", "Encounter"}, PageSize: opts.PageSize},
		Client: &fhirhttp.Client{Base: srv.URL + "/fhir"}, Log: l, Mappings: func() *mappings.Set { return set },
		Appended: p.Notify, Logger: quiet}
	pctx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = p.Run(pctx) }()
	defer func() { stop(); <-stopped }()

	start := time.Now()
	var pages int
	if opts.Bulk {
		bst, err := src.Bulk(ctx, src.Cfg.Types, time.Time{}, nil)
		if err != nil {
			return FHIRReport{}, err
		}
		pages = bst.Files
	} else {
		st, err := src.Poll(ctx)
		if err != nil {
			return FHIRReport{}, err
		}
		pages = st.Pages
	}
	read := time.Since(start)
	want := int64(opts.Patients * (1 + opts.Encounters))
	for ctx.Err() == nil {
		s, err := l.Stats()
		if err != nil {
			return FHIRReport{}, err
		}
		if s.States[checkpoint.Done] == want {
			break
		}
		if s.States[checkpoint.Dead] > 0 {
			return FHIRReport{}, fmt.Errorf("%d records dead", s.States[checkpoint.Dead])
		}
		time.Sleep(20 * time.Millisecond)
	}
	rep := FHIRReport{Resources: int(want), Read: read, Total: time.Since(start), FHIRPages: pages, CRMRequests: sb.Stats().RequestsTotal}
	perRes := float64(rep.CRMRequests) / float64(rep.Resources)
	how, unit := fmt.Sprintf("a paging FHIR server (%d per page, %v a page)", opts.PageSize, opts.Latency), "pages"
	if opts.Bulk {
		how, unit = "a FHIR server's Bulk Data $export (NDJSON files)", "files"
	}
	fmt.Fprintf(w, "ehrbridge FHIR backfill benchmark: %d patients and %d encounters from %s into the CRM sandbox (Salesforce side, %s)\n\n",
		opts.Patients, opts.Patients*opts.Encounters, how, filepath.Base(opts.Mappings))
	fmt.Fprintf(w, "read into the log:   %6d resources in %v: %.0f resources/s (%d %s)\n", rep.Resources, rep.Read.Round(time.Millisecond), float64(rep.Resources)/rep.Read.Seconds(), rep.FHIRPages, unit)
	fmt.Fprintf(w, "done in the CRM:     %6d resources in %v: %.0f resources/s\n", rep.Resources, rep.Total.Round(time.Millisecond), float64(rep.Resources)/rep.Total.Seconds())
	fmt.Fprintf(w, "CRM requests:        %6d, %.4f per resource (one request per resource would be 1.0)\n", rep.CRMRequests, perRes)
	return rep, nil
}

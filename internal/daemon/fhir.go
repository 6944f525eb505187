package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/robfig/cron/v3"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/fhirsource"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// fhirSources polls the configured FHIR servers on their schedules.
type fhirSources struct {
	cron   *cron.Cron
	cancel context.CancelFunc
}

// NewFHIRSource builds the poller of a configured FHIR source (the daemon
// and `ehrbridge backfill` share it).
func NewFHIRSource(sc config.FHIRSource, cp *checkpoint.Log, maps func() *mappings.Set, log *slog.Logger) (*fhirsource.Source, error) {
	client := &fhirhttp.Client{Base: sc.BaseURL}
	switch {
	case sc.SMARTKeyFile != "":
		pemBytes, err := os.ReadFile(sc.SMARTKeyFile)
		if err != nil {
			return nil, fmt.Errorf("smart_key_file: %w", err)
		}
		key, err := fhirhttp.ParseRSAKey(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("smart_key_file: %w", err)
		}
		client.Auth = &fhirhttp.BackendServices{TokenURL: sc.SMARTTokenURL, ClientID: sc.SMARTClientID, Key: key,
			Scope: "system/*.read"}
	case sc.Token.IsSet():
		tok, err := sc.Token.Resolve()
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		client.Auth = fhirhttp.StaticToken(tok)
	}
	return &fhirsource.Source{Cfg: fhirsource.Config{Name: sc.Name, Types: sc.Types, PageSize: sc.PageSize, Overlap: sc.Overlap.Std()},
		Client: client, Log: cp, Mappings: maps, Logger: log.With("component", "fhir", "source", sc.Name)}, nil
}

// startFHIR schedules a poll of each FHIR source; nil when there is none.
func startFHIR(cfg *config.Config, cp *checkpoint.Log, maps func() *mappings.Set, notify func(), log *slog.Logger) (*fhirSources, error) {
	if len(cfg.Sources.FHIR) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fhirSources{cron: cron.New(cron.WithChain(cron.SkipIfStillRunning(cron.DiscardLogger))), cancel: cancel}
	for _, sc := range cfg.Sources.FHIR {
		src, err := NewFHIRSource(sc, cp, maps, log)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("sources.fhir %s: %w", sc.Name, err)
		}
		src.Appended = notify
		srcLog := src.Logger
		if _, err := f.cron.AddFunc(sc.Schedule, func() {
			st, err := src.Poll(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				srcLog.Warn("polling the FHIR server failed; the next poll resumes from the last stored page", "err", err, "added", st.Added)
			case st.Added > 0:
				srcLog.Info("FHIR resources received", "added", st.Added, "pages", st.Pages)
			}
		}); err != nil {
			cancel()
			return nil, fmt.Errorf("sources.fhir %s schedule: %w", sc.Name, err)
		}
		log.Info("fhir source polling", "source", sc.Name, "schedule", sc.Schedule, "types", len(sc.Types))
	}
	f.cron.Start()
	return f, nil
}

// stop ends the polls; one under way stops at its next page.
func (f *fhirSources) stop() {
	if f == nil {
		return
	}
	f.cancel()
	<-f.cron.Stop().Done()
}

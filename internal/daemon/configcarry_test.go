package daemon

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/configvalue"
	"github.com/ehrbridge/ehrbridge/internal/pipeline"
	"github.com/ehrbridge/ehrbridge/internal/writeback"
)

// TestWritebackConfigCarriesEveryKey writes every key writeback.Config
// declares for the writeback section and checks that the engine's
// configuration holds each value: the keys are declared once, on the
// engine's type, so none can be decoded and then dropped by a copy (as
// with the field-by-field copy daemon.WritebackConfig used to make).
func TestWritebackConfigCarriesEveryKey(t *testing.T) {
	typ := reflect.TypeFor[writeback.Config]()
	var yaml strings.Builder
	yaml.WriteString("crm:\n  sandbox:\n    embed: true\nwriteback:\n  target:\n    mllp: 127.0.0.1:2576\n    ae_max_attempts: 7\n")
	want := map[string]any{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		key, ok := f.Tag.Lookup("yaml")
		if !ok {
			continue
		}
		var v any
		switch f.Type.Kind() {
		case reflect.Bool:
			v = true
		case reflect.String:
			v = "V" + f.Name
		default:
			t.Fatalf("writeback.Config.%s: no test value for %s", f.Name, f.Type)
		}
		switch key {
		case "encounter_rule":
			v = writeback.EncounterOpen
		case "replace_trigger":
			v = "T08"
		}
		want[f.Name] = v
		fmt.Fprintf(&yaml, "  %s: %v\n", key, v)
	}
	if len(want) < 13 {
		t.Fatalf("writeback.Config declares %d keys, want at least the 13 of the writeback section", len(want))
	}
	cfg, err := config.Parse("test.yaml", []byte(yaml.String()), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("%v\n%s", err, yaml.String())
	}
	got := reflect.ValueOf(WritebackConfig(cfg.Writeback))
	for name, v := range want {
		if g := got.FieldByName(name).Interface(); g != v {
			t.Errorf("WritebackConfig(...).%s = %v, want %v as written", name, g, v)
		}
	}
	if n := got.FieldByName("AEMaxAttempts").Interface(); n != 7 {
		t.Errorf("AEMaxAttempts = %v, want writeback.target.ae_max_attempts (7)", n)
	}
}

// TestFHIRSourceCarriesEveryKey checks that what a sources.fhir entry
// writes reaches the source the daemon and backfill build: the copy
// NewFHIRSource used to make dropped bulk_max_line and bulk_max_file (only
// the backfill command patched them back in).
func TestFHIRSourceCarriesEveryKey(t *testing.T) {
	const yaml = `sources:
  fhir:
    - name: ehrfhir
      base_url: https://ehr.example/fhir/R4
      types: [Patient, Encounter]
      page_size: 7
      overlap: 2m
      deletes: inactivate
      bulk_max_line: 128KiB
      bulk_max_file: 3MiB
`
	cfg, err := config.Parse("test.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewFHIRSource(cfg.Sources.FHIR[0], nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	want := ehr.FHIRSourceConfig{Name: "ehrfhir", Types: []string{"Patient", "Encounter"}, PageSize: 7,
		Overlap: configvalue.Duration(2 * time.Minute), Deletes: ehr.DeletesApply, BulkMaxLine: 128 * configvalue.KiB, BulkMaxFile: 3 * configvalue.MiB}
	if !reflect.DeepEqual(src.Cfg, want) {
		t.Errorf("source settings = %+v, want %+v as written", src.Cfg, want)
	}
}

// TestFileDropCarriesItsKeys checks that writeback.target's dir and
// retention reach the file drop the daemon builds (they used to be copied
// field by field, with a conversion).
func TestFileDropCarriesItsKeys(t *testing.T) {
	dir := t.TempDir()
	yaml := "crm:\n  sandbox:\n    embed: true\nwriteback:\n  target:\n    dir: " + dir + "\n    retention: 36h\n"
	cfg, err := config.Parse(filepath.Join(dir, "test.yaml"), []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := newWriteback(cfg.Writeback, dir, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	fd, ok := h.Target.(*ehr.FileDrop)
	if !ok || fd.Dir != dir || fd.Retention.Std() != 36*time.Hour {
		t.Errorf("target = %#v, want a file drop in %s keeping files 36h", h.Target, dir)
	}
}

// TestPipelineAndCheckpointCarryTheirKeys checks that crm.pipeline and
// checkpoint, as written, reach the options the daemon builds the
// pipeline and the log with (it used to copy them field by field).
func TestPipelineAndCheckpointCarryTheirKeys(t *testing.T) {
	const yaml = `crm:
  sandbox:
    embed: true
  pipeline:
    batch_size: 40
    linger: 250ms
    drain_timeout: 3s
    probe_max: 2m
checkpoint:
  dedupe_window: 10d
  payload_retention: 2d
  sweep_interval: 5m
`
	cfg, err := config.Parse("test.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	var po pipeline.Options
	cfg.CRM.Pipeline.Apply(&po)
	if po.BatchSize != 40 || po.Linger != 250*time.Millisecond || po.ProbeMax != 2*time.Minute || cfg.CRM.Pipeline.DrainTimeout.Std() != 3*time.Second {
		t.Errorf("pipeline options = %+v (drain %s), want the values as written", po, cfg.CRM.Pipeline.DrainTimeout)
	}
	var co checkpoint.Options
	if err := cfg.Checkpoint.Apply(&co); err != nil {
		t.Fatal(err)
	}
	if co.DedupeWindow != 10*24*time.Hour || co.PayloadRetention != 2*24*time.Hour || co.Keyring != nil || cfg.Checkpoint.SweepInterval.Std() != 5*time.Minute {
		t.Errorf("checkpoint options = %+v (sweep %s), want the values as written and no keyring", co, cfg.Checkpoint.SweepInterval)
	}
}

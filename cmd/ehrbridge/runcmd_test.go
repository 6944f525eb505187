package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// run refuses a CRM other than the one the log's pending records were
// queued for, and says which flag lets it start.
func TestRunRefusesAnotherCRM(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	const before = "dataverse https://hospital.crm.dynamics.com"
	cp, err := checkpoint.Open(filepath.Join(dataDir, checkpoint.FileName), checkpoint.Options{CRM: before, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p := []byte("MSH|^~\\&|A|F\rPID|1||ZZRUNPATIENT")
	if _, err := cp.Append(context.Background(), checkpoint.Entry{Key: "ehr|A|F|1", Source: "ehr", Type: "ADT^A01", Lane: "L1", Payload: p, Ack: []byte("MSA|AA|1"), Hash: sha256.Sum256(p)}); err != nil {
		t.Fatal(err)
	}
	cp.Close()
	root, _ := filepath.Abs("../..")
	cfg := filepath.Join(dir, "ehrbridge.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "data_dir: %s\nadmin:\n  listen: \"off\"\n  socket: \"off\"\nmappings:\n  paths: [%s]\ncrm:\n  sandbox:\n    embed: true\n    listen: 127.0.0.1:0\n",
		dataDir, filepath.Join(root, "configs", "mappings", "healthcloud")), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := cmdRun([]string{"--config", cfg}, &stdout, &stderr); code != exitFailure {
		t.Fatalf("run against another CRM: exit %d, want %d\n%s", code, exitFailure, stderr.String())
	}
	for _, want := range []string{before, "sandbox salesforce (embedded)", "--accept-crm-change"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("run's refusal lacks %q:\n%s", want, stderr.String())
		}
	}
	stderr.Reset()
	cmdRun([]string{"--help"}, &stdout, &stderr)
	if !strings.Contains(stderr.String(), "-accept-crm-change") {
		t.Errorf("run --help does not name the flag:\n%s", stderr.String())
	}
}

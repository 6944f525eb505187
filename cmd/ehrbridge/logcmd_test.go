package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/checkpointtest"
)

func TestLogCommandsOnStoppedDaemon(t *testing.T) {
	dir := checkpointtest.Seed(t, nil)
	out, _, code := runCLI(t, "log", "stats", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "records:         received 2, in progress 0, done 0, retrying 0, dead 1") ||
		!strings.Contains(out, "conflicts:       1") || !strings.Contains(out, "encrypted: no") {
		t.Errorf("stats: exit %d\n%s", code, out)
	}
	out, _, _ = runCLI(t, "log", "stats", "--json", "--data-dir", dir)
	var st struct {
		States    map[string]int64 `json:"states"`
		Conflicts int64            `json:"conflicts"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.States) != 6 || st.States["received"] != 2 ||
		st.States["in_progress"] != 0 || st.States["dead"] != 1 || st.Conflicts != 1 {
		t.Errorf("stats --json = %s (%v)", out, err)
	}
	out, _, _ = runCLI(t, "log", "list", "--state", "dead", "--data-dir", dir)
	if !strings.Contains(out, "ehr|A|F|1") || !strings.Contains(out, "REQUIRED_FIELD_MISSING") || strings.Contains(out, "ehr|A|F|2") {
		t.Errorf("list dead:\n%s", out)
	}
	out, _, _ = runCLI(t, "log", "list", "--state", "conflict", "--json", "--data-dir", dir)
	if !strings.Contains(out, `"record_id": 1`) {
		t.Errorf("list conflict:\n%s", out)
	}
	out, _, _ = runCLI(t, "log", "list", "--state", "all", "--json", "--data-dir", dir)
	var all []map[string]any
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 3 {
		t.Errorf("list all: %v\n%s", err, out)
	}
	if _, e, code := runCLI(t, "log", "list", "--data-dir", dir); code != exitUsage || !strings.Contains(e, "--state") {
		t.Errorf("list without state: %d %s", code, e)
	}

	// show: metadata only, unless --reveal, which is audited.
	out, _, _ = runCLI(t, "log", "show", "2", "--data-dir", dir)
	if strings.Contains(out, "ZZPATIENT") || !strings.Contains(out, "key           ehr|A|F|2") || !strings.Contains(out, "MSA|AA|2") {
		t.Errorf("show:\n%s", out)
	}
	out, _, code = runCLI(t, "log", "show", "--reveal", "2", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "ZZPATIENT2") {
		t.Errorf("show --reveal: %d\n%s", code, out)
	}
	audit, _ := os.ReadFile(filepath.Join(dir, "audit.log"))
	if !strings.Contains(string(audit), `"object":"record 2"`) || !strings.Contains(string(audit), `"via":"cli"`) || strings.Contains(string(audit), "ZZPATIENT") {
		t.Errorf("audit log: %s", audit)
	}
	out, _, _ = runCLI(t, "log", "show", "1", "--conflict", "--reveal", "--data-dir", dir)
	if !strings.Contains(out, "ZZPATIENT1 changed") {
		t.Errorf("show --conflict --reveal:\n%s", out)
	}
	if _, e, code := runCLI(t, "log", "show", "99", "--data-dir", dir); code != exitFailure || !strings.Contains(e, "no such record") {
		t.Errorf("show 99: %d %s", code, e)
	}

	// retry, then compact and check.
	if out, e, code := runCLI(t, "log", "retry", "2", "--data-dir", dir); code != exitFailure || !strings.Contains(e, "not dead") {
		t.Errorf("retry of a live record: %d %s %s", code, out, e)
	}
	if out, _, code := runCLI(t, "log", "retry", "--all-dead", "--data-dir", dir); code != 0 || out != "requeued 1 dead record(s)\n" {
		t.Errorf("retry --all-dead: %d %q", code, out)
	}
	if out, _, code := runCLI(t, "log", "compact", "--data-dir", dir); code != 0 || !strings.HasPrefix(out, "compacted ") {
		t.Errorf("compact: %d %q", code, out)
	}
	if out, _, code := runCLI(t, "log", "check", "--data-dir", dir); code != 0 || !strings.HasSuffix(out, ": ok\n") {
		t.Errorf("check: %d %q", code, out)
	}
	if _, _, code := runCLI(t, "log", "stats"); code != exitUsage {
		t.Errorf("stats without --config/--data-dir: %d", code)
	}
	if _, _, code := runCLI(t, "log", "frob", "--data-dir", dir); code != exitUsage {
		t.Errorf("unknown subcommand: %d", code)
	}
}

// An encrypted log: stats and list need no key; revealing does.
func TestLogCommandsEncrypted(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	ring, _ := checkpoint.NewKeyring(key)
	dir := checkpointtest.Seed(t, ring)
	raw, _ := os.ReadFile(filepath.Join(dir, checkpoint.FileName))
	if strings.Contains(string(raw), "ZZPATIENT") {
		t.Fatal("payload stored in clear")
	}
	out, _, code := runCLI(t, "log", "stats", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "encrypted: yes") || !strings.Contains(out, "received 2") {
		t.Errorf("stats of an encrypted log without its key: %d\n%s", code, out)
	}
	if _, e, code := runCLI(t, "log", "show", "--reveal", "2", "--data-dir", dir); code != exitFailure || !strings.Contains(e, "encrypted") {
		t.Errorf("reveal without key: %d %s", code, e)
	}
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	keyFile := filepath.Join(t.TempDir(), "log.key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
	os.WriteFile(cfg, []byte("data_dir: "+dir+"\ncheckpoint:\n  encryption:\n    key_file: "+keyFile+"\n"), 0o600)
	out, e, code := runCLI(t, "log", "show", "--reveal", "2", "--config", cfg)
	if code != 0 || !strings.Contains(out, "ZZPATIENT2") {
		t.Errorf("reveal with the key from the config: %d %s %s", code, out, e)
	}
}

// Skipped records (no mapping accepts them) and records done with
// warnings are counted apart by `log stats`, listed by `log list`, shown
// by `log show`, and skipped ones are put back by `log retry`, by id or
// by type.
func TestLogSkippedAndWarned(t *testing.T) {
	dir := t.TempDir()
	l, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i, typ := range []string{"VXU^V04", "VXU^V04", "ADT^A60", "ADT^A08", "ADT^A01"} {
		p := fmt.Sprintf("MSH|^~\\&|A|F||||||%s|%d\rPID|1||ZZPATIENT%d", typ, i, i)
		e := checkpoint.Entry{Key: fmt.Sprint("ehr|A|F|", i), Source: "ehr", Type: typ, Lane: fmt.Sprint("MRN", i), Payload: []byte(p),
			Ack: []byte("MSA|AA|" + fmt.Sprint(i)), Hash: sha256.Sum256([]byte(p))}
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if rs, _ := l.Claim(10); len(rs) != 5 {
		t.Fatal("claim")
	}
	if err := l.Settle([]checkpoint.Settlement{
		{ID: 1, State: checkpoint.Skipped, Reason: "no mapping for VXU^V04"},
		{ID: 2, State: checkpoint.Skipped, Reason: "no mapping for VXU^V04"},
		{ID: 3, State: checkpoint.Skipped, Reason: "no mapping for ADT^A60"},
		{ID: 4, State: checkpoint.Done, Warnings: []string{"adt/visit.AdmitDate__c: not a valid timestamp"}},
		{ID: 5, State: checkpoint.Done},
	}); err != nil {
		t.Fatal(err)
	}
	l.Close()

	out, _, code := runCLI(t, "log", "stats", "--data-dir", dir)
	for _, want := range []string{"done 2, retrying 0, dead 0, skipped 3", "done:            2 applied (those with warnings: log list --state warned)",
		"skipped:         3 stored and acknowledged, no mapping accepts them"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("stats lack %q: exit %d\n%s", want, code, out)
		}
	}
	out, _, _ = runCLI(t, "log", "stats", "--json", "--data-dir", dir)
	var st struct {
		States map[string]int64 `json:"states"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.States["skipped"] != 3 || st.States["done"] != 2 {
		t.Errorf("stats --json = %s (%v)", out, err)
	}
	out, _, _ = runCLI(t, "log", "list", "--state", "skipped", "--data-dir", dir)
	if strings.Count(out, "no mapping for VXU^V04") != 2 || !strings.Contains(out, "no mapping for ADT^A60") || strings.Contains(out, "ZZPATIENT") {
		t.Errorf("list skipped:\n%s", out)
	}
	out, _, _ = runCLI(t, "log", "list", "--state", "warned", "--data-dir", dir)
	if !strings.Contains(out, "done (warnings)") || !strings.Contains(out, "AdmitDate__c") || strings.Contains(out, "ehr|A|F|5") {
		t.Errorf("list warned:\n%s", out)
	}
	out, _, _ = runCLI(t, "log", "show", "4", "--data-dir", dir)
	if !strings.Contains(out, "warnings      adt/visit.AdmitDate__c: not a valid timestamp") {
		t.Errorf("show warned:\n%s", out)
	}
	out, _, _ = runCLI(t, "log", "show", "3", "--data-dir", dir)
	if !strings.Contains(out, "state         skipped") || !strings.Contains(out, "reason        no mapping for ADT^A60") || !strings.Contains(out, "skipped at") {
		t.Errorf("show skipped:\n%s", out)
	}

	if _, e, code := runCLI(t, "log", "retry", "--type", "VXU^V04", "--data-dir", dir); code != exitUsage || !strings.Contains(e, "--all-skipped") {
		t.Errorf("--type without --all-skipped: %d %s", code, e)
	}
	if out, _, code := runCLI(t, "log", "retry", "--all-skipped", "--type", "VXU^V04", "--data-dir", dir); code != 0 || out != "requeued 2 skipped record(s)\n" {
		t.Errorf("retry --all-skipped --type: %d %q", code, out)
	}
	if out, _, code := runCLI(t, "log", "retry", "3", "--data-dir", dir); code != 0 || out != "requeued record 3\n" {
		t.Errorf("retry of a skipped record: %d %q", code, out)
	}
	out, _, _ = runCLI(t, "log", "stats", "--json", "--data-dir", dir)
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.States["skipped"] != 0 || st.States["received"] != 3 {
		t.Errorf("after retry: %s", out)
	}
	if out, _, code := runCLI(t, "log", "check", "--data-dir", dir); code != 0 || !strings.HasSuffix(out, ": ok\n") {
		t.Errorf("check: %d %q", code, out)
	}
}

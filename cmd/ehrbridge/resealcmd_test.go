package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/checkpointtest"
)

// A log written before encryption was enabled: `log stats` says how many
// records are unencrypted, `log reseal` seals them and leaves no patient
// name anywhere in the file (as `strings` would find it), and `log stats`
// then says all payloads are under the active key.
func TestLogResealEncryptsAnUnencryptedLog(t *testing.T) {
	dir := checkpointtest.Seed(t, nil)
	db := filepath.Join(dir, checkpoint.FileName)
	if raw, _ := os.ReadFile(db); !strings.Contains(string(raw), "ZZPATIENT") {
		t.Fatal("test setup: the unencrypted log should hold the name")
	}
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(3 * i)
	}
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	keyFile := filepath.Join(t.TempDir(), "log.key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
	os.WriteFile(cfg, []byte("data_dir: "+dir+"\ncheckpoint:\n  encryption:\n    key_file: "+keyFile+"\n"), 0o600)

	// The daemon started with the key: new records would be sealed, the
	// old ones stay as they are.
	ring, _ := checkpoint.NewKeyring(key)
	l, err := checkpoint.Open(db, checkpoint.Options{Keyring: ring, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, e, code := runCLI(t, "log", "reseal", "--data-dir", dir); code != exitFailure || !strings.Contains(e, "no key configured") {
		t.Errorf("reseal without a key: %d %s", code, e)
	}
	out, e, code := runCLI(t, "log", "stats", "--config", cfg)
	if code != 0 || !strings.Contains(out, "3 records unencrypted") || !strings.Contains(out, "1 other values") {
		t.Errorf("stats of a mixed log: %d\n%s%s", code, out, e)
	}
	// A backup of a mixed log says what in it is in clear.
	out, e, code = runCLI(t, "log", "backup", filepath.Join(t.TempDir(), "b.db"), "--config", cfg)
	if code != 0 || !strings.Contains(out, "but 3 records") {
		t.Errorf("backup of a mixed log: %d\n%s%s", code, out, e)
	}
	out, e, code = runCLI(t, "log", "reseal", "--config", cfg)
	if code != 0 || !strings.Contains(out, "3 record payloads and 1 other values sealed anew") {
		t.Fatalf("reseal: %d\n%s%s", code, out, e)
	}
	raw, _ := os.ReadFile(db)
	for _, s := range []string{"ZZPATIENT", "MRN1"} {
		if strings.Contains(string(raw), s) {
			t.Errorf("after reseal the database file holds %q", s)
		}
	}
	out, _, code = runCLI(t, "log", "stats", "--config", cfg)
	if code != 0 || !strings.Contains(out, "all 3 payloads under the active key") {
		t.Errorf("stats after reseal: %d\n%s", code, out)
	}
	out, e, code = runCLI(t, "log", "show", "--reveal", "2", "--config", cfg)
	if code != 0 || !strings.Contains(out, "ZZPATIENT2") {
		t.Errorf("reveal after reseal: %d %s %s", code, out, e)
	}
}

// A dead record's reason holds the CRM's code and field names; the CRM's
// message (which quotes the MRN) is shown only by `log show --reveal`,
// which is audited, and is sealed in the file.
func TestLogShowRevealsTheCRMsMessageOnlyWhenAudited(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(5 * i)
	}
	ring, _ := checkpoint.NewKeyring(key)
	dir := t.TempDir()
	l, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Keyring: ring, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p := "MSH|^~\\&|A|F\rPID|1||MRNQ88231^^^H||VANTERPOOL^ODA"
	if _, err := l.Append(context.Background(), checkpoint.Entry{Key: "ehr|A|F|1", Source: "ehr", Type: "ADT^A01", Lane: "MRNQ88231",
		Payload: []byte(p), Ack: []byte("MSA|AA|1"), Hash: sha256.Sum256([]byte(p))}); err != nil {
		t.Fatal(err)
	}
	rs, _ := l.Claim(1)
	if err := l.Settle([]checkpoint.Settlement{{ID: rs[0].ID, State: checkpoint.Dead,
		Reason: "crm permanent error DUPLICATE_VALUE on Account; fields: MRN__c",
		Detail: "duplicate value found: MRN__c duplicates value on record with id: 001xx (mrnq88231)"}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	keyFile := filepath.Join(t.TempDir(), "log.key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
	os.WriteFile(cfg, []byte("data_dir: "+dir+"\ncheckpoint:\n  encryption:\n    key_file: "+keyFile+"\n"), 0o600)
	for _, args := range [][]string{{"list", "--state", "dead"}, {"list", "--state", "dead", "--json"}, {"show", "1"}, {"show", "1", "--json"}} {
		out, e, code := runCLI(t, append(append([]string{"log"}, args...), "--config", cfg)...)
		if code != 0 || !strings.Contains(out, "DUPLICATE_VALUE") {
			t.Errorf("log %v: %d %s %s", args, code, out, e)
		}
		if strings.Contains(strings.ToLower(out), "mrnq88231") {
			t.Errorf("log %v shows the quoted MRN without a reveal:\n%s", args, out)
		}
	}
	out, e, code := runCLI(t, "log", "show", "1", "--reveal", "--config", cfg)
	if code != 0 || !strings.Contains(out, "record with id: 001xx (mrnq88231)") {
		t.Errorf("reveal: %d %s %s", code, out, e)
	}
	audit, _ := os.ReadFile(filepath.Join(dir, "audit.log"))
	if !strings.Contains(string(audit), "record 1") {
		t.Errorf("the reveal is not audited: %q", audit)
	}
	if raw, _ := os.ReadFile(filepath.Join(dir, checkpoint.FileName)); strings.Contains(strings.ToLower(string(raw)), "mrnq88231") {
		t.Error("the CRM's message is in clear in the file")
	}
}

// A checkpoint key file that group or others can read is refused, as ssh
// refuses such keys, by every command that loads the key.
func TestKeyFileReadableByGroupRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes do not express ACLs on Windows")
	}
	dir := checkpointtest.Seed(t, nil)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	keyFile := filepath.Join(t.TempDir(), "log.key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n"), 0o640)
	os.WriteFile(cfg, []byte("data_dir: "+dir+"\ncheckpoint:\n  encryption:\n    key_file: "+keyFile+"\n"), 0o600)
	for _, args := range [][]string{{"log", "reseal"}, {"log", "stats"}} {
		_, e, code := runCLI(t, append(args, "--config", cfg)...)
		if code == 0 || !strings.Contains(e, keyFile) || !strings.Contains(e, "0640") {
			t.Errorf("%v with a group-readable key: %d %s", args, code, e)
		}
	}
	os.Chmod(keyFile, 0o600)
	if out, e, code := runCLI(t, "log", "stats", "--config", cfg); code != 0 {
		t.Errorf("stats with a 0600 key: %d %s %s", code, out, e)
	}
}

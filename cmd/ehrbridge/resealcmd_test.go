package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// A log written before encryption was enabled: `log stats` says how many
// records are unencrypted, `log reseal` seals them and leaves no patient
// name anywhere in the file (as `strings` would find it), and `log stats`
// then says all payloads are under the active key.
func TestLogResealEncryptsAnUnencryptedLog(t *testing.T) {
	dir := seedLog(t, nil)
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

	if _, e, code := runCLI(t, "log", "reseal", "--data-dir", dir); code != exitFailure || !strings.Contains(e, "no key configured") {
		t.Errorf("reseal without a key: %d %s", code, e)
	}
	out, e, code := runCLI(t, "log", "stats", "--config", cfg)
	if code != 0 || !strings.Contains(out, "3 records unencrypted") || !strings.Contains(out, "1 other values") {
		t.Errorf("stats of a mixed log: %d\n%s%s", code, out, e)
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

// Package checkpointtest seeds checkpoint logs for tests: the data
// directory of a stopped daemon, for the log commands run in process (cmd)
// and through the built binary (tests).
package checkpointtest

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// Seed writes a stopped daemon's data dir: three records (one dead) and a
// conflict, encrypted when keyring is not nil. The payloads are made up
// (ZZPATIENT1 ...), so tests may look for them in output.
func Seed(t testing.TB, keyring *checkpoint.Keyring) string {
	t.Helper()
	dir := t.TempDir()
	l, err := checkpoint.Open(filepath.Join(dir, checkpoint.FileName), checkpoint.Options{Keyring: keyring, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The fourth entry reuses record 1's key with other content: a conflict.
	for i, k := range []string{"1", "2", "3", "1"} {
		p := "MSH|^~\\&|A|F\rPID|1||ZZPATIENT" + k
		if i == 3 {
			p += " changed"
		}
		e := checkpoint.Entry{Key: "ehr|A|F|" + k, Source: "ehr", Type: "ADT^A01", Lane: "MRN" + k, Payload: []byte(p), Ack: []byte("MSA|AA|" + k), Hash: sha256.Sum256([]byte(p))}
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	rs, _ := l.Claim(1)
	if err := l.MarkDead(rs[0].ID, "REQUIRED_FIELD_MISSING: LastName"); err != nil {
		t.Fatal(err)
	}
	return dir
}

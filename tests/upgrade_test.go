package tests

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// setLogSchema rewrites a stopped log's schema version, as an older or a
// newer ehrbridge would have left it.
func setLogSchema(t *testing.T, path string, v uint64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema"), b[:]) }); err != nil {
		t.Fatal(err)
	}
}

// The upgrade procedure of the README, with records pending because the
// CRM is down: back up while the daemon runs, stop, install (a log of the
// older schema meets the new binary: it is migrated), start; every pending
// record reaches the CRM. An older binary meeting a newer log refuses to
// start and says so, and restoring the backup brings back the log as it
// was.
func TestUpgradeWithPendingRecords(t *testing.T) {
	bin := ehrbridgeBinary(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	logFile := filepath.Join(dataDir, checkpoint.FileName)
	sandboxAddr, mllpAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cfgFile := filepath.Join(dir, "ehrbridge.yaml")
	cfg := fmt.Sprintf(`data_dir: %s
log:
  level: info
admin:
  listen: %s
mappings:
  paths: [%s]
  timezone: UTC
crm:
  sandbox:
    embed: false
    listen: %s
  pipeline:
    linger: 100ms
sources:
  mllp:
    - name: up
      listen: %s
`, dataDir, adminAddr, filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud"), sandboxAddr, mllpAddr)
	d := startCrashDaemon(t, bin, cfgFile, cfg, adminAddr)

	// 30 patients arrive while the CRM is down: acknowledged, pending.
	c := &mllp.Client{Addr: mllpAddr, AckTimeout: 10 * time.Second}
	defer c.Close()
	for n := range 30 {
		msg, _, _ := eoMessage(4*n+1, n, false) // ADT^A08s
		if resp, err := c.Send(t.Context(), msg); err != nil || resp.Code != "AA" {
			t.Fatalf("message %d: %v %v", n, resp, err)
		}
	}
	backup := filepath.Join(dir, "before-upgrade.db")
	out, errOut, code := runBin(t, bin, "log", "backup", backup, "--config", cfgFile)
	if code != 0 || !strings.Contains(out, "from the running daemon") || !strings.Contains(out, "30 records pending") {
		t.Fatalf("hot backup: exit %d\n%s%s", code, out, errOut)
	}
	d.stop(t)

	// The new binary meets a log of the older schema.
	setLogSchema(t, logFile, 1)
	startSandboxProcess(t, bin, sandboxAddr, []string{"--listen", sandboxAddr, "--tls-listen", "off"})
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	if err := d.waitReady(t.Context()); err != nil {
		t.Fatalf("%v\n%s", err, d.logs)
	}
	if !strings.Contains(d.logs.String(), "checkpoint log migrated") {
		t.Errorf("no migration logged:\n%s", crashTail(d.logs.String(), 2000))
	}
	waitFor(t, 30*time.Second, "the pending records in the CRM", func() bool {
		resp, err := http.Get("http://" + sandboxAddr + "/sandbox/v1/objects/Account")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var recs []map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&recs)
		return len(recs) == 30
	})
	d.stop(t)
	out, _, _ = runBin(t, bin, "log", "stats", "--json", "--config", cfgFile)
	var st struct {
		States    map[string]int64 `json:"states"`
		Schema    int              `json:"schema"`
		WrittenBy string           `json:"written_by"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Schema != checkpoint.SchemaVersion() || !strings.HasPrefix(st.WrittenBy, "ehrbridge ") || st.States["done"] != 30 {
		t.Errorf("after the upgrade: %s", out)
	}

	// An older ehrbridge meeting this log: refused, untouched.
	setLogSchema(t, logFile, uint64(checkpoint.SchemaVersion()+1))
	out, errOut, code = runBin(t, bin, "run", "--config", cfgFile)
	if code == 0 || !strings.Contains(out+errOut, "written by a newer ehrbridge") || !strings.Contains(out+errOut, "restore the backup") {
		t.Errorf("older binary on a newer log: exit %d\n%s%s", code, out, errOut)
	}
	// Restoring the backup (daemon stopped: copy it over the log).
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, _ = runBin(t, bin, "log", "stats", "--json", "--config", cfgFile)
	// Pending as the hot backup found them: received, retrying, or in
	// progress (claimed by the pipeline at that moment; the next open
	// returns those to retrying).
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.States["done"] != 0 || st.States["received"]+st.States["retrying"]+st.States["in_progress"] != 30 {
		t.Errorf("restored backup: %s", out)
	}
}

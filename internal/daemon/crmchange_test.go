package daemon

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// run refuses to start against another CRM while the log has records
// queued for the one it names (an org switched from production to a
// sandbox org, say), naming both and the flag; with AcceptCRMChange it
// starts, warns and records the new one.
func TestStartRefusesAnotherCRM(t *testing.T) {
	dataDir := t.TempDir()
	const before = "salesforce https://hospital.my.salesforce.com as integration@hospital.example"
	cp, err := checkpoint.Open(filepath.Join(dataDir, checkpoint.FileName), checkpoint.Options{CRM: before, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p := []byte("MSH|^~\\&|A|F\rPID|1||ZZCRMPATIENT")
	if _, err := cp.Append(context.Background(), checkpoint.Entry{Key: "ehr|A|F|1", Source: "ehr", Type: "ADT^A01", Lane: "L1", Payload: p, Ack: []byte("MSA|AA|1"), Hash: sha256.Sum256(p)}); err != nil {
		t.Fatal(err)
	}
	cp.Close()
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, `data_dir: %s
admin:
  listen: "off"
  socket: "off"
mappings:
  paths: [%s]
crm:
  sandbox:
    embed: true
    listen: %s
`, dataDir, filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud"), freePort(t)), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	if d, err := Start(cfg, slog.New(slog.NewTextHandler(logs, nil))); !errors.Is(err, checkpoint.ErrCRMChanged) {
		if d != nil {
			d.Shutdown(context.Background())
		}
		t.Fatalf("start against another CRM with a record pending: %v, want ErrCRMChanged", err)
	} else {
		for _, want := range []string{before, "sandbox salesforce (embedded)", "--accept-crm-change"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("refusal lacks %q: %v", want, err)
			}
		}
		if strings.Contains(err.Error(), "ZZCRMPATIENT") {
			t.Errorf("refusal carries patient data: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "sandbox.json")); err == nil {
		t.Error("the refused start left the sandbox's data file")
	}
	d, err := StartWith(cfg, slog.New(slog.NewTextHandler(logs, nil)), StartOptions{AcceptCRMChange: true})
	if err != nil {
		t.Fatalf("start with AcceptCRMChange: %v", err)
	}
	id, err := d.cp.CRMIdentity()
	d.Shutdown(context.Background())
	if err != nil || id != "sandbox salesforce (embedded)" {
		t.Errorf("CRM recorded after an accepted change: %q, %v", id, err)
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "previous_crm=") {
		t.Errorf("the accepted change was not logged at warn:\n%s", out)
	}
}

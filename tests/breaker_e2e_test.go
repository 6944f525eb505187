package tests

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// The daemon's pipeline has the CRM breaker wired to its sink's probe:
// during a 503 outage /status and /metrics show it open (or probing),
// with its probes, and no patient data; after the outage it closes and
// the record is done.
func TestEndToEndBreakerShown(t *testing.T) {
	bin := ehrbridgeBinary(t)
	mllpAddr, adminAddr, sandboxAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	env := append(os.Environ(), "EHRBRIDGE_DATA_DIR="+t.TempDir(), "EHRBRIDGE_MLLP_ADDR="+mllpAddr, "EHRBRIDGE_ADMIN_ADDR="+adminAddr,
		"EHRBRIDGE_SANDBOX_ADDR="+sandboxAddr)
	d := startDaemon(t, bin, filepath.Join(shared.ModuleRoot(t), "configs", "ehrbridge.yaml"), adminAddr, env)
	faults := "http://" + sandboxAddr + "/sandbox/v1/faults"
	resp, err := http.Post(faults, "application/json", strings.NewReader(`{"status":503,"seconds":60}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	adt := corpus(t, "microsoft-FHIR-Converter", "ADT-A01-01.hl7")
	if out, _, code := runBin(t, bin, "send", "--to", mllpAddr, adt); code != 0 || !strings.Contains(out, " AA") {
		t.Fatalf("send: exit %d, %q", code, out)
	}
	type breaker struct {
		State  string `json:"state"`
		Opened int64  `json:"opened"`
		Probes int64  `json:"probes"`
		Reason string `json:"reason"`
	}
	status := func() (breaker, int64) {
		t.Helper()
		resp, err := http.Get("http://" + adminAddr + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			Checkpoint struct {
				States map[string]int64 `json:"states"`
			} `json:"checkpoint"`
			CRM struct {
				Breaker breaker `json:"breaker"`
			} `json:"crm"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st.CRM.Breaker, st.Checkpoint.States["done"]
	}
	waitFor := func(what string, cond func(breaker, int64) bool) breaker {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			b, done := status()
			if cond(b, done) {
				return b
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: breaker %+v, %d done\nlog:\n%s", what, b, done, d.logs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	b := waitFor("the breaker to open", func(b breaker, _ int64) bool { return b.Opened == 1 && b.Probes >= 1 })
	if b.State != "open" && b.State != "probing" || !strings.Contains(b.Reason, "503") {
		t.Errorf("breaker during the outage: %+v", b)
	}
	resp, err = http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ehrbridge_crm_breaker_state{state="closed"} 0`, "ehrbridge_crm_breaker_opened_total 1\n", "ehrbridge_crm_breaker_probes_total "} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	for _, phi := range []string{"EVERYMAN", "PATID1234"} {
		if strings.Contains(string(metrics), phi) || strings.Contains(d.logs.String(), phi) {
			t.Errorf("metrics or logs show %q", phi)
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, faults, nil)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	b = waitFor("the drain", func(b breaker, done int64) bool { return b.State == "closed" && done >= 1 })
	if b.Opened != 1 {
		t.Errorf("breaker after the outage: %+v", b)
	}
}

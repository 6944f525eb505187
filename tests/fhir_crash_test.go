package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/fhirtest"
	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// TestFHIRCrash: a backfill SIGKILLed until it completes, then the daemon
// tailing a FHIR server whose patients keep changing, SIGKILLed at least
// 10 times. At the end the CRM holds each patient once with its latest
// version, each encounter once, and the log has every version it read
// exactly once, all done.
func TestFHIRCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("FHIR crash test skipped in -short mode")
	}
	bin := ehrbridgeBinary(t)
	dir := t.TempDir()
	const patients = 120
	fake := fhirtest.New()
	fake.Latency = 3 * time.Millisecond
	var mu sync.Mutex
	latest := map[string]string{} // patient id → the given name of its latest version
	t0 := time.Now().Add(-time.Hour)
	patient := func(id string, v int, at time.Time) {
		given := fmt.Sprint("V", v)
		fake.Add("Patient", id, at, map[string]any{"name": []any{map[string]any{"family": "CRASH", "given": []any{given}}}, "gender": "female"})
		mu.Lock()
		latest[id] = given
		mu.Unlock()
	}
	for i := range patients {
		id := fmt.Sprintf("p%03d", i)
		patient(id, 1, t0.Add(time.Duration(i)*time.Second))
		fake.Add("Encounter", fmt.Sprintf("e%03d", i), t0.Add(time.Duration(i)*time.Second+time.Millisecond),
			map[string]any{"status": "in-progress", "class": map[string]any{"code": "IMP"}, "subject": map[string]any{"reference": "Patient/" + id}})
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()

	sandboxAddr := freeAddr(t)
	startSandboxProcess(t, bin, sandboxAddr, []string{"--listen", sandboxAddr, "--tls-listen", "off", "--data", filepath.Join(dir, "crm.json")})
	c := writeFHIRConfig(t, dir, sandboxAddr, srv.URL+"/fhir/R4", `
schedule: "@every 1s"
page_size: 10
overlap: 2s`)
	cfgFile, cfg, adminAddr := c.file, c.yaml, c.adminAddr
	rng := rand.New(rand.NewPCG(21, 21))

	// The backfill, killed until it completes.
	backfillKills := 0
	for {
		cmd := exec.Command(bin, "backfill", "--config", cfgFile, "--source", "ehrfhir")
		out := &syncbuf.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("backfill: %v\n%s", err, out)
			}
		case <-time.After(time.Duration(40+rng.IntN(120)) * time.Millisecond):
			_ = cmd.Process.Kill()
			<-done
			backfillKills++
			continue
		}
		break
	}

	// Tailing, with the patients changing and the daemon killed again and again.
	d := startCrashDaemon(t, bin, cfgFile, cfg, adminAddr)
	ctx, stopUpdates := context.WithCancel(context.Background())
	var updates sync.WaitGroup
	updates.Add(1)
	go func() {
		defer updates.Done()
		urng := rand.New(rand.NewPCG(22, 22))
		v := map[string]int{}
		for n := 0; ctx.Err() == nil; n++ {
			id := fmt.Sprintf("p%03d", urng.IntN(patients))
			v[id]++
			patient(id, v[id]+1, time.Now())
			time.Sleep(15 * time.Millisecond)
		}
	}()
	kills := 0
	for kills < 10 {
		time.Sleep(time.Duration(150+rng.IntN(300)) * time.Millisecond)
		d.killAndRestart(t)
		kills++
	}
	stopUpdates()
	updates.Wait()

	settled := func() (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		accounts := objects(sandboxAddr, "Account")
		if len(accounts) != patients {
			return fmt.Sprintf("%d accounts", len(accounts)), false
		}
		for _, a := range accounts {
			id, _ := a["EHR_Patient_Key__c"].(string)
			if a["FirstName"] != latest[id] {
				return fmt.Sprintf("account %s has %v, the latest version %s", id, a["FirstName"], latest[id]), false
			}
		}
		if n := len(objects(sandboxAddr, "ClinicalEncounter")); n != patients {
			return fmt.Sprintf("%d encounters", n), false
		}
		return "", true
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		why, ok := settled()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the CRM did not settle: %s\n%s", why, crashTail(d.logs.String(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.stop(t)
	out, _, _ := runBin(t, bin, "log", "stats", "--json", "--config", cfgFile)
	var st struct {
		States map[string]int64 `json:"states"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.States["dead"] != 0 || st.States["received"]+st.States["retrying"]+st.States["in_progress"] != 0 {
		t.Errorf("log after the run: %s", out)
	}
	t.Logf("FHIR crash: %d patients and encounters, %d backfill kills, %d daemon kills, %d records (one per version read), %d FHIR requests",
		patients, backfillKills, kills, st.States["done"], fake.Requests())
}

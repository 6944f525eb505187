package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// `ehrbridge sandbox` serves the Salesforce subset, stops on SIGTERM and,
// with --data, keeps its records across a restart.
func TestSandboxCommand(t *testing.T) {
	bin := ehrbridgeBinary(t)
	data := filepath.Join(t.TempDir(), "crm.json")
	run := func(addr string) (stop func()) {
		cmd := exec.Command(bin, "sandbox", "--listen", addr, "--data", data)
		logs := &syncbuf.Buffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logs.String(), "listening on") {
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("sandbox did not start:\n%s", logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("sandbox exit: %v\n%s", err, logs)
				}
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				t.Errorf("sandbox did not stop on SIGTERM")
			}
		}
	}
	token := func(base string) string {
		resp, err := http.PostForm(base+"/services/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"sandbox-client"}, "client_secret": {"sandbox-secret"}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out["access_token"]
	}
	addr := freeAddr(t)
	stop := run(addr)
	base := "http://" + addr
	req, _ := http.NewRequest("PATCH", base+"/services/data/v59.0/sobjects/Account/SourceSystemIdentifier/H%7C42", strings.NewReader(`{"LastName":"Kept"}`))
	req.Header.Set("Authorization", "Bearer "+token(base))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("upsert: %v %v", err, resp)
	}
	resp.Body.Close()
	stop()

	addr = freeAddr(t)
	stop = run(addr)
	defer stop()
	resp, err = http.Get("http://" + addr + "/sandbox/v1/objects/Account")
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&recs)
	resp.Body.Close()
	if len(recs) != 1 || recs[0]["LastName"] != "Kept" || recs[0]["SourceSystemIdentifier"] != "H|42" {
		t.Errorf("after restart: %v", recs)
	}
}

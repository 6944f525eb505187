package tests

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const goodMapping = "when: {hl7: ADT^A01}\nops:\n  - object: Account\n    key_field: EHR_Patient_Key__c\n    key: key(PID-3.4, PID-3.1)\n    fields:\n      LastName: PID-5.1\n"

// SIGHUP reloads the mappings; a set that does not lint is refused, the
// running set stays, and /metrics and /status say so. With watch on, an
// edited file is picked up without a signal.
func TestReloadMappings(t *testing.T) {
	bin := ehrbridgeBinary(t)
	adminAddr := freeAddr(t)
	dir := writeFiles(t, map[string]string{
		"maps/patient.yaml": goodMapping,
		"ehrbridge.yaml":    "data_dir: ./data\nadmin:\n  listen: " + adminAddr + "\nmappings:\n  paths: [maps]\n  watch: true\n",
	})
	d := startDaemon(t, bin, filepath.Join(dir, "ehrbridge.yaml"), adminAddr, nil)
	t.Cleanup(func() { d.stop(10 * time.Second) })
	cmd, logs := d.cmd, d.logs
	get := func(path string) string {
		resp, err := http.Get("http://" + adminAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor := func(what, path string, want ...string) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			body := get(path)
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(body, w)
			}
			if ok {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s lacks %q:\n%s\nlog:\n%s", what, path, want, body, logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("start", "/metrics", `ehrbridge_mapping_reloads_total{result="ok"} 1`, "ehrbridge_mappings_loaded 1", "ehrbridge_mapping_last_reload_ok 1")

	mapping := filepath.Join(dir, "maps", "patient.yaml")
	if err := os.WriteFile(mapping, []byte(strings.Replace(goodMapping, "PID-5.1", "PID-5.x", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("broken set", "/metrics", `ehrbridge_mapping_reloads_total{result="refused"} `, "ehrbridge_mapping_last_reload_ok 0", "ehrbridge_mappings_loaded 1")
	waitFor("broken set", "/status", `"last_reload_ok": false`, `patient.yaml:7:17: LastName: path \"PID-5.x\"`, `"patient"`)

	// The fix is seen by the watcher, without a signal.
	if err := os.WriteFile(mapping, []byte(strings.Replace(goodMapping, "LastName", "FamilyName", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor("fixed set", "/metrics", `ehrbridge_mapping_reloads_total{result="ok"} 2`, "ehrbridge_mapping_last_reload_ok 1")
	log := logs.String()
	for _, want := range []string{"mapping reload refused; the running mappings stay in use", "trigger=SIGHUP", "mappings reloaded", `trigger="file change"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

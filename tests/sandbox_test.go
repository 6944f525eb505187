package tests

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// `ehrbridge sandbox` serves the Salesforce subset, and the Dataverse
// side over TLS with a certificate it keeps beside --data; it stops on
// SIGTERM and, with --data, keeps its records (both CRMs') across a
// restart.
func TestSandboxCommand(t *testing.T) {
	bin := ehrbridgeBinary(t)
	data := filepath.Join(t.TempDir(), "crm.json")
	sb := startSandbox(t, bin, "--tls-listen", "127.0.0.1:0", "--data", data)
	req, _ := http.NewRequest("PATCH", sb.base+"/services/data/v59.0/sobjects/Account/EHR_Patient_Key__c/H%7C42", strings.NewReader(`{"LastName":"Kept"}`))
	req.Header.Set("Authorization", "Bearer "+sandboxToken(t, sb.base))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("upsert: %v %v", err, resp)
	}
	resp.Body.Close()
	// The Dataverse side: a token over TLS, trusting the kept certificate.
	dv := dataverseSide(t, sb.logs.String(), filepath.Join(filepath.Dir(data), "sandbox-tls.pem"))
	resp, err = dv.client.PostForm(dv.base+"/sandbox-tenant/oauth2/v2.0/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {"sandbox-client"}, "client_secret": {"sandbox-secret"}, "scope": {dv.base + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	var tok map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	req, _ = http.NewRequest("PATCH", dv.base+"/api/data/v9.2/contacts(msemr_medicalrecordnumber='H|42')", strings.NewReader(`{"lastname":"KeptToo"}`))
	req.Header.Set("Authorization", fmt.Sprint("Bearer ", tok["access_token"]))
	req.Header.Set("Content-Type", "application/json")
	if resp, err = dv.client.Do(req); err != nil || resp.StatusCode != 204 {
		t.Fatalf("Dataverse upsert: %v %v", err, resp)
	}
	resp.Body.Close()
	sb.stop(t)

	sb = startSandbox(t, bin, "--tls-listen", "127.0.0.1:0", "--data", data)
	resp, err = http.Get(sb.base + "/sandbox/v1/objects/Account")
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&recs)
	resp.Body.Close()
	if len(recs) != 1 || recs[0]["LastName"] != "Kept" || recs[0]["EHR_Patient_Key__c"] != "H|42" {
		t.Errorf("after restart: %v", recs)
	}
	resp, err = http.Get(sb.base + "/sandbox/v1/objects/contacts")
	if err != nil {
		t.Fatal(err)
	}
	recs = nil
	_ = json.NewDecoder(resp.Body).Decode(&recs)
	resp.Body.Close()
	if len(recs) != 1 || recs[0]["lastname"] != "KeptToo" {
		t.Errorf("Dataverse rows after restart: %v", recs)
	}
	// The same certificate after the restart: the old trust still holds.
	dataverseSide(t, sb.logs.String(), filepath.Join(filepath.Dir(data), "sandbox-tls.pem"))
}

// sandboxProc is an `ehrbridge sandbox` process.
type sandboxProc struct {
	base   string // the Salesforce side, http://host:port
	logs   *syncbuf.Buffer
	cmd    *exec.Cmd
	exited chan error
}

// startSandbox runs `ehrbridge sandbox --listen <free address> args...`
// until it says it is listening; stop ends it, at the latest when the
// test ends.
func startSandbox(t *testing.T, bin string, args ...string) *sandboxProc {
	t.Helper()
	addr := freeAddr(t)
	p := &sandboxProc{base: "http://" + addr, logs: &syncbuf.Buffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"sandbox", "--listen", addr}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.logs.String(), "listening on"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = p.cmd.Process.Kill()
			t.Fatalf("sandbox did not start:\n%s", p.logs)
		}
	}
	return p
}

// stop sends SIGTERM and expects a clean exit within 10 seconds; a second
// call does nothing.
func (p *sandboxProc) stop(t *testing.T) {
	t.Helper()
	if p.exited == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("sandbox exit: %v\n%s", err, p.logs)
		}
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("sandbox did not stop on SIGTERM")
	}
	p.exited = nil
}

// sandboxToken gets a Salesforce-side access token (client credentials).
func sandboxToken(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.PostForm(base+"/services/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"sandbox-client"}, "client_secret": {"sandbox-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out["access_token"]
}

type dvSide struct {
	base   string
	client *http.Client
}

// dataverseSide finds the TLS address in the sandbox's output and checks
// that a client trusting caFile reaches its OpenID configuration.
func dataverseSide(t *testing.T, out, caFile string) dvSide {
	t.Helper()
	_, rest, ok := strings.Cut(out, "(Dataverse) listening on ")
	if !ok {
		t.Fatalf("no TLS side in:\n%s", out)
	}
	base := strings.Fields(rest)[0]
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate in", caFile)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	resp, err := c.Get(base + "/sandbox-tenant/v2.0/.well-known/openid-configuration")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("openid-configuration: %v %v", err, resp)
	}
	resp.Body.Close()
	return dvSide{base: base, client: c}
}

// `ehrbridge sandbox` without --data or --tls-cert keeps its TLS key in the
// user's cache directory: before, it wrote sandbox-tls.pem and its private
// key into whatever directory it was started in (issue 29).
func TestSandboxKeepsNoKeyInWorkingDir(t *testing.T) {
	bin := ehrbridgeBinary(t)
	work, cache := t.TempDir(), t.TempDir()
	addr, tlsAddr := freeAddr(t), freeAddr(t)
	sb := exec.Command(bin, "sandbox", "--listen", addr, "--tls-listen", tlsAddr)
	sb.Dir = work
	sb.Env = append(os.Environ(), "XDG_CACHE_HOME="+cache)
	out := &syncbuf.Buffer{}
	sb.Stdout, sb.Stderr = out, out
	if err := sb.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sb.Process.Kill(); _ = sb.Wait() }()
	want := filepath.Join(cache, "ehrbridge", "sandbox", "sandbox-tls.pem")
	waitFor(t, 10*time.Second, "the sandbox's TLS side", func() bool { return strings.Contains(out.String(), "trust "+want) })
	if entries, _ := os.ReadDir(work); len(entries) != 0 {
		t.Errorf("the sandbox left %d files in its working directory (%s)", len(entries), entries[0].Name())
	}
	if fi, err := os.Stat(filepath.Join(cache, "ehrbridge", "sandbox", "sandbox-tls-key.pem")); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("the sandbox's key in the cache directory: %v %v", fi, err)
	}
}

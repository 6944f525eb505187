package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/browsertest"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// consoleDaemon runs the shipped demo config (embedded CRM sandbox) with
// three admin accounts, one per role, and returns the admin and sandbox
// addresses.
func consoleDaemon(t *testing.T) (bin, admin, mllp, sandbox, dataDir string) {
	t.Helper()
	bin = ehrbridgeBinary(t)
	root := shared.ModuleRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "configs", "ehrbridge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		"admin:\n  listen: ${EHRBRIDGE_ADMIN_ADDR:-127.0.0.1:8080}\n",
		"admin:\n  listen: ${EHRBRIDGE_ADMIN_ADDR:-127.0.0.1:8080}\n  accounts:\n"+
			"    - {name: otto, role: operator, token_env: OTTO_TOKEN}\n"+
			"    - {name: vera, role: viewer, token_env: VERA_TOKEN}\n"+
			"    - {name: aude, role: auditor, token_env: AUDE_TOKEN}\n",
		"paths: [mappings/healthcloud]", "paths: ["+filepath.Join(root, "configs", "mappings", "healthcloud")+"]",
		"mdm_mapping: mappings/writeback/mdm.yaml", "mdm_mapping: "+filepath.Join(root, "configs", "mappings", "writeback", "mdm.yaml"),
	).Replace(string(raw))
	if !strings.Contains(cfg, "token_env: OTTO_TOKEN") || !strings.Contains(cfg, root) {
		t.Fatal("the shipped config changed shape: update consoleDaemon")
	}
	cfgFile := filepath.Join(t.TempDir(), "ehrbridge.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	admin, mllp, sandbox, dataDir = freeAddr(t), freeAddr(t), freeAddr(t), t.TempDir()
	env := append(os.Environ(), "EHRBRIDGE_DATA_DIR="+dataDir, "EHRBRIDGE_MLLP_ADDR="+mllp, "EHRBRIDGE_ADMIN_ADDR="+admin,
		"EHRBRIDGE_SANDBOX_ADDR="+sandbox, "OTTO_TOKEN=otto-token-0123456789", "VERA_TOKEN=vera-token-0123456789",
		"AUDE_TOKEN=aude-token-0123456789")
	startDaemon(t, bin, cfgFile, admin, env)
	return bin, admin, mllp, sandbox, dataDir
}

func signInBrowser(b *browsertest.Browser, admin, account, token string) {
	b.Navigate("http://" + admin + "/ui/")
	b.WaitVisible("#signin-form")
	b.SetValue("#account", account)
	b.SetValue("#token", token)
	b.Click("#signin")
	b.WaitText("h1", "Dashboard")
}

func sandboxFault(t *testing.T, sandbox, method, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+sandbox+"/sandbox/v1/faults", bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s sandbox fault %s: %d", method, body, resp.StatusCode)
	}
}

// crmWrites counts the sandbox's requests that can write (every endpoint
// but reads, tokens and limits).
func crmWrites(t *testing.T, sandbox string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + sandbox + "/sandbox/v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		ByEndpoint map[string]int64 `json:"by_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	var n int64
	for ep, c := range st.ByEndpoint {
		if !strings.Contains(ep, "query") && !strings.Contains(ep, "get") && !strings.Contains(ep, "token") && ep != "limits" &&
			ep != "describe" && !strings.Contains(ep, "metadata") && ep != "dv_whoami" && ep != "dv_service" {
			n += c
		}
	}
	if n == 0 {
		t.Fatalf("the sandbox counted no write at all: %v", st.ByEndpoint)
	}
	return n
}

// The browser flow, on the real binary: a CRM admin's validation
// rule kills a patient's admission; an operator signs in, finds the patient
// by MRN, opens the dead record and sees why, and once the rule is fixed
// retries it and sees it done; the timeline and the workbench answer too. A
// viewer is refused the same actions. Screenshots of every screen are kept
// as artifacts.
func TestConsoleInABrowser(t *testing.T) {
	bin, admin, mllp, sandbox, dataDir := consoleDaemon(t)
	base := "http://" + admin

	sandboxFault(t, sandbox, http.MethodPost, `{"validation_rule":{"object":"Account","message":"A patient needs a phone number"}}`)
	adt := filepath.Join(shared.ModuleRoot(t), "configs", "samples", "hl7v2", "ADT-A01-01.hl7")
	if out, errOut, code := runBin(t, bin, "send", "--to", mllp, adt); code != 0 {
		t.Fatalf("send: %d %s %s", code, out, errOut)
	}
	// The record dies (a validation rule is a permanent refusal).
	waitFor(t, 30*time.Second, "the admission to die", func() bool {
		out, _, _ := runBin(t, bin, "log", "list", "--state", "dead", "--data-dir", dataDir, "--json")
		return strings.Contains(out, "ADT^A01")
	})

	b := browsertest.New(t)
	b.Navigate(base + "/ui/")
	b.WaitVisible("#signin-form")
	b.Screenshot("01-signin")
	signInBrowser(b, admin, "otto", "otto-token-0123456789")
	b.WaitText("#live", "dead")
	b.Screenshot("02-dashboard")

	// Find the patient by authority and MRN.
	b.Click(`nav a[href="/ui/messages"]`)
	b.WaitVisible("#f-mrn")
	b.SetValue("#f-authority", "test1^2.16.1^HCD")
	b.SetValue("#f-mrn", "PATID1234")
	b.Click("#search")
	b.WaitVisible("#timeline-link") // the answer to the patient search
	b.WaitText("#results", "ADT^A01")
	if txt := b.Text("#results"); !strings.Contains(txt, "dead") || !strings.Contains(txt, "FIELD_CUSTOM_VALIDATION_EXCEPTION") {
		t.Fatalf("the patient's records:\n%s", txt)
	}
	b.Screenshot("03-messages-by-patient")

	// Open the dead record: the reason names the CRM's code, the op and object.
	b.Click(`#results tbody a`)
	b.WaitVisible("#history")
	hist := b.Text("#history")
	if !strings.Contains(hist, "FIELD_CUSTOM_VALIDATION_EXCEPTION") || !strings.Contains(hist, "Account") {
		t.Fatalf("the dead record's history does not say why:\n%s", hist)
	}
	recordURL := b.URL()
	b.Screenshot("04-record-dead")

	// A viewer sees it but may not retry it.
	v := browsertest.New(t)
	signInBrowser(v, admin, "vera", "vera-token-0123456789")
	v.Navigate(recordURL)
	v.WaitVisible("#history")
	if n := browsertest.Eval[int](v, `document.querySelectorAll("#action-retry, #reveal").length`); n != 0 {
		t.Errorf("a viewer is offered %d actions", n)
	}
	id := recordURL[strings.LastIndex(recordURL, "/")+1:]
	v.Allow(browsertest.LogError, "403") // the refusal is the point
	v.Navigate(base + "/ui/confirm?do=retry&id=" + id)
	v.WaitText("main", "does not allow this")
	v.Screenshot("05-viewer-refused")

	// The CRM admin fixes the rule; the operator retries the record.
	sandboxFault(t, sandbox, http.MethodDelete, "")
	b.Click("#action-retry")
	b.WaitVisible("#confirm")
	b.Screenshot("06-confirm-retry")
	b.Click("#confirm")
	b.WaitText(".flash", "queued again")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(b.Text("h1"), "done") {
		if time.Now().After(deadline) {
			t.Fatalf("the retried record is not done: %s", b.Text("main"))
		}
		time.Sleep(500 * time.Millisecond)
		b.Navigate(recordURL)
		b.WaitVisible("#history")
	}
	if hist := b.Text("#history"); !strings.Contains(hist, "requeued") || !strings.Contains(hist, "otto") {
		t.Errorf("the history lacks the operator's retry:\n%s", hist)
	}
	b.Screenshot("07-record-done")

	// The patient's timeline: nothing holds the lane, the CRM ids are there.
	b.Navigate(base + "/ui/patients")
	b.SetValue("#p-authority", "test1^2.16.1^HCD")
	b.SetValue("#p-mrn", "PATID1234")
	b.Click("#find-patient")
	b.WaitVisible("#summary")
	if txt := b.Text("main"); !strings.Contains(txt, "Nothing holds this patient's lane") || !strings.Contains(txt, "done 1") {
		t.Errorf("timeline:\n%s", txt)
	}
	b.Screenshot("08-timeline")

	// The command line gives the same answers: the patient's records and
	// the record's history (through the daemon's admin socket).
	out, errOut, code := runBin(t, bin, "log", "find", "--mrn", "test1^2.16.1^HCD|PATID1234", "--json", "--data-dir", dataDir)
	var found struct {
		Records []struct {
			ID    uint64 `json:"id"`
			State string `json:"state"`
		} `json:"records"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &found) != nil || len(found.Records) != 1 || fmt.Sprint(found.Records[0].ID) != id ||
		found.Records[0].State != "done" {
		t.Errorf("log find --mrn: exit %d, %s %s; want record %s, done, as the browser showed", code, out, errOut, id)
	}
	out, _, code = runBin(t, bin, "log", "trace", id, "--data-dir", dataDir)
	for _, want := range []string{"FIELD_CUSTOM_VALIDATION_EXCEPTION", "requeued", "otto"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("log trace %s lacks %q (exit %d):\n%s", id, want, code, out)
		}
	}

	// The workbench maps a pasted message with the running set.
	msg, err := os.ReadFile(filepath.Join(shared.ModuleRoot(t), "configs", "samples", "hl7v2", "ADT-A08-01.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	writes := crmWrites(t, sandbox)
	b.Navigate(base + "/ui/workbench")
	b.SetValue("#message", string(msg))
	b.Click("#map")
	b.WaitText("#h-ops", "What the running mappings make of it")
	if after := crmWrites(t, sandbox); after != writes {
		t.Errorf("the workbench wrote to the CRM: %d write requests before, %d after", writes, after)
	}
	if txt := b.Text("main"); !strings.Contains(txt, "upsert Account") {
		t.Errorf("workbench:\n%s", txt)
	}
	b.Screenshot("09-workbench")
	b.Click("#run-tests")
	b.WaitVisible("#tests-summary")
	if s := b.Text("#tests-summary"); !strings.Contains(s, "cases pass") {
		t.Errorf("tests summary: %q", s)
	}
	b.Screenshot("10-workbench-tests")

	// Keyboard: the skip link is the first stop, and takes focus to the page.
	b.Navigate(base + "/ui/")
	b.Press("\t")
	if f := b.Focused(); !strings.Contains(f.Label, "Skip to content") {
		t.Errorf("first Tab stop: %+v", f)
	}
	// No page asked for another origin: the harness fails the test on any
	// Content-Security-Policy violation, and the policy allows 'self' only.
	// (b.Outbound also lists Chromium's own calls to Google's services,
	// refused by the harness's proxy, so it is not the measure here.)
	fmt.Fprintln(os.Stderr, "screenshots in", b.ArtifactsDir())
}

package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/sandbox"
)

// codesMapping is a one-op set that the sandbox's published Health Cloud
// schema accepts as a whole.
const codesMapping = `description: codes of an ORU, for crm check's tests
when:
  hl7: ORU^R01
ops:
  - id: code
    object: CodeSet
    foreach: OBX
    if: present(OBX-3.1)
    key_field: EHR_Code_Key__c
    key: concat(OBX-3.3, "|", OBX-3.1)
    fields:
      Code: OBX-3.1
      Name: truncate(coalesce(OBX-3.2, OBX-3.1), 255)
`

// crmConfig writes a config whose CRM is an embedded sandbox (crm check
// starts its own on a free port) and whose set is the mapping given.
func crmConfig(t *testing.T, mapping string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "codes.yaml"), []byte(mapping), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := "data_dir: " + filepath.Join(dir, "data") + "\nadmin:\n  listen: \"off\"\nmappings:\n  paths: [" + filepath.Join(dir, "codes.yaml") + "]\n" +
		"crm:\n  sandbox:\n    embed: true\n    listen: 127.0.0.1:0\n"
	p := filepath.Join(dir, "ehrbridge.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCRMCheckExitCodes(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"crm"}, &out, &errb); code != exitUsage {
		t.Errorf("crm: exit %d", code)
	}
	if code := run([]string{"crm", "check"}, &out, &errb); code != exitUsage {
		t.Errorf("crm check without --config: exit %d", code)
	}
	// A config without a CRM cannot be checked: a config error.
	noCRM := filepath.Join(t.TempDir(), "c.yaml")
	_ = os.WriteFile(noCRM, []byte("admin:\n  listen: \"off\"\n"), 0o644)
	errb.Reset()
	if code := run([]string{"crm", "check", "--config", noCRM}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "names no CRM") {
		t.Errorf("no crm section: exit %d, %s", code, errb.String())
	}

	// All green: exit 0, the checklist ends with "all green".
	out.Reset()
	errb.Reset()
	if code := run([]string{"crm", "check", "--config", crmConfig(t, codesMapping)}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "\nall green: ") {
		t.Errorf("green set: exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"CodeSet\n  ok       CodeSet: object present\n", "  ok       CodeSet.EHR_Code_Key__c: upsert key  (", "  ok       CodeSet.Name: field present  ("} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("checklist has no %q:\n%s", want, out.String())
		}
	}
}

// --json prints one document: crm, endpoint, ok, blockers, warnings and
// the checks, each with object, check, ok, blocker and, for mapping
// lines, file:line:col. A blocker exits 1.
func TestCRMCheckJSON(t *testing.T) {
	broken := strings.Replace(codesMapping, "      Name: ", "      Nmae: ", 1)
	cfg := crmConfig(t, broken)
	var out, errb bytes.Buffer
	if code := run([]string{"crm", "check", "--config", cfg, "--json"}, &out, &errb); code != exitFailure {
		t.Fatalf("broken set: exit %d\n%s%s", code, out.String(), errb.String())
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, out.String())
	}
	var keys []string
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "blockers,checks,crm,endpoint,ok,warnings" {
		t.Errorf("top-level keys %v", keys)
	}
	var rep struct {
		CRM      string `json:"crm"`
		OK       bool   `json:"ok"`
		Blockers int    `json:"blockers"`
		Checks   []map[string]any
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.CRM != "salesforce" || rep.OK || rep.Blockers != 1 {
		t.Errorf("report: %+v", rep)
	}
	posRe := regexp.MustCompile(`^.+\.yaml:\d+:\d+$`)
	found := false
	for _, c := range rep.Checks {
		for _, k := range []string{"object", "check", "ok", "blocker"} {
			if _, ok := c[k]; !ok {
				t.Errorf("check without %q: %v", k, c)
			}
		}
		if pos, ok := c["pos"].(string); ok && !posRe.MatchString(pos) {
			t.Errorf("pos %q is not file:line:col", pos)
		}
		if c["field"] == "Nmae" && c["blocker"] == true && c["ok"] == false && strings.HasSuffix(c["pos"].(string), "codes.yaml:13:7") {
			found = true
		}
	}
	if !found {
		t.Errorf("no blocker for CodeSet.Nmae at codes.yaml:13:7:\n%s", out.String())
	}
}

// crm check reaches the sandbox however the config names it: embedded
// (Dataverse side over TLS with a fresh certificate) or already running
// apart (Salesforce side, its default test credentials).
func TestCRMCheckSandboxConfigs(t *testing.T) {
	check := func(cfgText string) map[string]any {
		t.Helper()
		dir := t.TempDir()
		p := filepath.Join(dir, "ehrbridge.yaml")
		if err := os.WriteFile(p, []byte("data_dir: "+filepath.Join(dir, "data")+"\nadmin:\n  listen: \"off\"\n"+cfgText), 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		code := run([]string{"crm", "check", "--config", p, "--json"}, &out, &errb)
		var doc map[string]any
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil || code == exitUsage {
			t.Fatalf("exit %d: %v\n%s%s", code, err, out.String(), errb.String())
		}
		return doc
	}
	loginOK := func(doc map[string]any, object string) {
		t.Helper()
		seen := map[string]bool{}
		for _, c := range doc["checks"].([]any) {
			m := c.(map[string]any)
			if m["ok"] == true {
				seen[m["object"].(string)+"/"+m["check"].(string)] = true
			}
		}
		if !seen["(connection)/login"] || !seen[object+"/object present"] {
			t.Errorf("%s: login or %s not ok: %v", doc["crm"], object, doc["checks"])
		}
	}
	dynamicsSet, _ := filepath.Abs(filepath.Join("..", "..", "configs", "mappings", "dynamics"))
	doc := check("mappings:\n  paths: [" + dynamicsSet + "]\ncrm:\n  sandbox:\n    flavor: dataverse\n    embed: true\n")
	if doc["crm"] != "dataverse" {
		t.Errorf("crm %v", doc["crm"])
	}
	loginOK(doc, "contact")

	apart := startSandboxInProcess(t)
	doc = check("mappings:\n  paths: [" + writeCodes(t) + "]\ncrm:\n  sandbox:\n    embed: false\n    listen: " + apart + "\n")
	if doc["crm"] != "salesforce" || doc["ok"] != true {
		t.Errorf("sandbox running apart: %v", doc)
	}
	loginOK(doc, "CodeSet")
}

func writeCodes(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "codes.yaml")
	if err := os.WriteFile(p, []byte(codesMapping), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startSandboxInProcess runs a sandbox (default test credentials) on a
// free loopback port until the test ends and returns its address.
func startSandboxInProcess(t *testing.T) string {
	t.Helper()
	s, err := sandbox.New(sandbox.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return addr.String()
}

package sandbox

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/interop"
)

// The real jsforce client (3.6.6 on node 20, as captured in
// ../shared/captures) logs in, upserts by external id, writes and updates
// collections, pages through a query, gets Salesforce's error codes and
// refreshes an expired session against the sandbox as it would against
// Salesforce.
func TestJSForce(t *testing.T) {
	dir := interop.NodeDir(t)
	s, err := New(Options{QueryPageSize: 3, Schemas: []string{siteDescribe}, RefreshTokens: map[string]string{"RT123": "integration@sandbox.example"}})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + addr.String()
	stdout, stderr, code := interop.Run(t, dir, 60*time.Second, "node", "jsforce_probe.mjs", base)
	if code != 0 {
		t.Fatalf("jsforce probe: exit %d\n%s\n%s", code, stdout, stderr)
	}
	steps := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		steps[m["step"].(string)] = m
	}
	want := map[string]string{
		"login":                      `"instanceUrl":"` + base + `","ok":true`,
		"client_credentials":         `"ok":true`,
		"bad_password":               `"ok":false`,
		"create":                     `"ok":true,"success":true`,
		"upsert_new":                 `"created":true,"ok":true`,
		"upsert_again":               `"created":false,"ok":true`,
		"retrieve":                   `"firstName":"Jane","ok":true`,
		"create_collection":          `"ids":2,"ok":true,"success":[true,true]`,
		"upsert_collection":          `"created":[true,true],"ok":true`,
		"update_collection":          `"ok":true,"success":[true,true]`,
		"required_field":             `"errorCode":"REQUIRED_FIELD_MISSING"`,
		"multiple_choices":           `"errorCode":"MULTIPLE_CHOICES"`,
		"query_paging":               `"all":"T0,T1,T2,T3,T4,T5,T6","done":false,"firstPage":3,"next":true,"ok":true`,
		"refresh_on_invalid_session": `"ok":true,"refreshed":true`,
		"limits":                     `"max":100000,"ok":true`,
	}
	for name, frag := range want {
		m, ok := steps[name]
		if !ok {
			t.Errorf("step %s did not run\n%s", name, stderr)
			continue
		}
		var wantFields map[string]any
		if err := json.Unmarshal([]byte("{"+frag+"}"), &wantFields); err != nil {
			t.Fatalf("bad expectation %s: %v", frag, err)
		}
		got, _ := json.Marshal(m)
		for k, wv := range wantFields {
			a, _ := json.Marshal(m[k])
			b, _ := json.Marshal(wv)
			if string(a) != string(b) {
				t.Errorf("%s: %s = %s, want %s (all: %s)", name, k, a, b, got)
			}
		}
	}
	if recs := s.Records("Contact"); len(recs) != 4 {
		t.Errorf("contacts %d, want 4", len(recs))
	}
}

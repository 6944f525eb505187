package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `ehrbridge sandbox --schema F` also takes an org's saved
// EntityDefinitions response: its tables are served by the metadata
// calls and enforced like the published ones.
func TestSandboxCommandEntityDefinitions(t *testing.T) {
	bin := ehrbridgeBinary(t)
	dir := t.TempDir()
	defs := filepath.Join(dir, "defs.json")
	if err := os.WriteFile(defs, []byte(`{"value":[{"LogicalName":"x_widget","EntitySetName":"x_widgets","Attributes":[
		{"@odata.type":"#Microsoft.Dynamics.CRM.StringAttributeMetadata","LogicalName":"x_name","AttributeType":"String","MaxLength":5}]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "crm.json")
	sb := startSandbox(t, bin, "--tls-listen", "127.0.0.1:0", "--data", data, "--schema", defs)
	dv := dataverseSide(t, sb.logs.String(), filepath.Join(dir, "sandbox-tls.pem"))
	resp, err := dv.client.PostForm(dv.base+"/sandbox-tenant/oauth2/v2.0/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {"sandbox-client"}, "client_secret": {"sandbox-secret"}, "scope": {dv.base + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	var tok map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, dv.base+"/api/data/v9.2/"+path, strings.NewReader(body))
		req.Header.Set("Authorization", fmt.Sprint("Bearer ", tok["access_token"]))
		req.Header.Set("Content-Type", "application/json")
		resp, err := dv.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, b := do("GET", "EntityDefinitions(LogicalName='x_widget')?$select=EntitySetName&$expand=Attributes", ""); st != 200 || !strings.Contains(b, `"MaxLength":5`) {
		t.Errorf("site table: %d %s", st, b)
	}
	if st, b := do("GET", "EntityDefinitions(LogicalName='contact')?$select=EntitySetName", ""); st != 200 || !strings.Contains(b, `"contacts"`) {
		t.Errorf("published table: %d %s", st, b)
	}
	if st, b := do("POST", "x_widgets", `{"x_name":"toolong"}`); st != 400 || !strings.Contains(b, "0x80044331") {
		t.Errorf("site column over its MaxLength: %d %s", st, b)
	}
	if st, b := do("POST", "x_widgets", `{"x_other":"a"}`); st != 400 || !strings.Contains(b, "Invalid property 'x_other'") {
		t.Errorf("column the site table lacks: %d %s", st, b)
	}
}

package tests

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `ehrbridge sandbox` refuses what the published schema does not know,
// and --schema F extends it with the org's describe files (the files
// `lint --schema` reads).
func TestSandboxCommandSchema(t *testing.T) {
	bin := ehrbridgeBinary(t)
	describe := filepath.Join(t.TempDir(), "contact.json")
	if err := os.WriteFile(describe, []byte(`{"name":"Contact","fields":[{"name":"Id","type":"id"},
		{"name":"LastName","type":"string","length":80,"nillable":false,"createable":true},
		{"name":"MRN__c","type":"string","length":20,"nillable":true,"createable":true,"externalId":true,"unique":true}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	post := func(base, object, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/services/data/v59.0/sobjects/"+object, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+sandboxToken(t, base))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	start := func(args ...string) string {
		return startSandbox(t, bin, append([]string{"--tls-listen", "off"}, args...)...).base
	}
	plain := start()
	if st, b := post(plain, "Contact", `{"LastName":"Doe"}`); st != 404 || !strings.Contains(b, "NOT_FOUND") {
		t.Errorf("Contact without --schema: %d %s, want 404 NOT_FOUND", st, b)
	}
	if st, b := post(plain, "Account", `{"LastName":"Doe","Shoe_Size__c":"9"}`); st != 400 || !strings.Contains(b, "No such column 'Shoe_Size__c' on sobject of type Account") {
		t.Errorf("unknown field: %d %s", st, b)
	}
	site := start("--schema", describe)
	if st, b := post(site, "Contact", `{"LastName":"Doe","MRN__c":"M1"}`); st != 201 {
		t.Errorf("Contact with --schema: %d %s", st, b)
	}
	if st, b := post(site, "Contact", `{"LastName":"Doe","Email":"x@example.org"}`); st != 400 || !strings.Contains(b, "INVALID_FIELD") {
		t.Errorf("Contact field the describe lacks: %d %s", st, b)
	}
	if st, b := post(start("--no-schema"), "Contact", `{"LastName":"Doe","Anything__c":1}`); st != 201 {
		t.Errorf("--no-schema: %d %s", st, b)
	}
}

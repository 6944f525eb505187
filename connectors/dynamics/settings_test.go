package dynamics

import (
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// TestSettingsClientConfig checks that crm.dynamics's settings reach the
// client and the credential as written, and that a file or secret that
// cannot be read fails naming its key, never its value.
func TestSettingsClientConfig(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	for f, b := range map[string]string{cert: "CERT", key: "KEY"} {
		if err := os.WriteFile(f, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("EHRB_TEST_DV_SECRET", "sec-do-not-print")
	hc := &http.Client{}
	s := Settings{URL: "https://org.crm.dynamics.com", APIVersion: "9.1", TenantID: "ten", ClientID: "cid", CertFile: cert, KeyFile: key,
		AuthorityHost: "https://login.example/", BatchSize: 20, MaxConcurrent: 8, EntitySets: map[string]string{"a": "as"}}
	c, a, err := s.ClientConfig(hc)
	if err != nil {
		t.Fatal(err)
	}
	wantC := Config{URL: s.URL, APIVersion: "9.1", HTTPClient: hc, BatchSize: 20, MaxConcurrent: 8, EntitySets: s.EntitySets}
	wantA := Auth{TenantID: "ten", ClientID: "cid", CertPEM: []byte("CERT"), KeyPEM: []byte("KEY"), AuthorityHost: "https://login.example/", HTTPClient: hc}
	if !reflect.DeepEqual(c, wantC) || !reflect.DeepEqual(a, wantA) {
		t.Errorf("ClientConfig = %+v, %+v; want %+v, %+v", c, a, wantC, wantA)
	}
	s = Settings{URL: "https://org.crm.dynamics.com", TenantID: "ten", ClientID: "cid", ClientSecret: configvalue.SecretRef{Env: "EHRB_TEST_DV_SECRET", Key: "client_secret"}}
	if _, a, err := s.ClientConfig(hc); err != nil || a.ClientSecret != "sec-do-not-print" {
		t.Errorf("client secret: %v", err)
	}
	s.ClientSecret.Env = "EHRB_TEST_DV_UNSET"
	if _, _, err := s.ClientConfig(hc); err == nil || !strings.Contains(err.Error(), "client_secret_env") {
		t.Errorf("unset secret: %v, want an error naming client_secret_env", err)
	}
	s = Settings{URL: "https://org.crm.dynamics.com", CertFile: filepath.Join(dir, "none.pem")}
	if _, _, err := s.ClientConfig(hc); err == nil || !strings.HasPrefix(err.Error(), "cert_file: ") {
		t.Errorf("missing cert: %v, want an error naming cert_file", err)
	}
}

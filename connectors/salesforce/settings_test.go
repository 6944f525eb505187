package salesforce

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// TestSettingsClientConfig checks that crm.salesforce's settings reach
// the client as written, for each OAuth flow, and that a secret that
// cannot be read fails naming its key, never its value.
func TestSettingsClientConfig(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "sf.key")
	if err := os.WriteFile(keyFile, []byte("PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("EHRB_TEST_SF_SECRET", "sec-do-not-print")
	t.Setenv("EHRB_TEST_SF_RT", "rt-do-not-print")
	base := Settings{LoginURL: "https://login.salesforce.com", Audience: "https://test.salesforce.com", APIVersion: "61.0", ClientID: "cid",
		MaxConcurrent: 3, BudgetReserve: 0.2, ClientSecret: configvalue.SecretRef{Env: "EHRB_TEST_SF_SECRET", Key: "client_secret"}}

	jwt := base
	jwt.JWTUsername, jwt.JWTKeyFile = "int@example", keyFile
	c, err := jwt.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.LoginURL != base.LoginURL || c.Audience != base.Audience || c.APIVersion != "61.0" || c.ClientID != "cid" || c.MaxConcurrent != 3 ||
		c.BudgetReserve != 0.2 || c.ClientSecret != "sec-do-not-print" || c.Auth.JWTUsername != "int@example" || string(c.Auth.JWTPrivateKey) != "PEM" {
		t.Errorf("JWT flow: %+v, want the settings as written", c)
	}

	rt := base
	rt.RefreshToken = configvalue.SecretRef{Env: "EHRB_TEST_SF_RT", Key: "refresh_token"}
	if c, err := rt.ClientConfig(); err != nil || c.Auth.RefreshToken != "rt-do-not-print" {
		t.Errorf("refresh token flow: %+v, %v", c.Auth, err)
	}
	if c, err := base.ClientConfig(); err != nil || !c.Auth.ClientCredentials {
		t.Errorf("client credentials flow: %+v, %v", c.Auth, err)
	}

	bad := base
	bad.ClientSecret = configvalue.SecretRef{Env: "EHRB_TEST_SF_UNSET", Key: "client_secret"}
	if _, err := bad.ClientConfig(); err == nil || !strings.Contains(err.Error(), "client_secret_env") {
		t.Errorf("unset secret: %v, want an error naming client_secret_env", err)
	}
	bad = jwt
	bad.JWTKeyFile = filepath.Join(dir, "none.key")
	if _, err := bad.ClientConfig(); err == nil || !strings.HasPrefix(err.Error(), "jwt_key_file: ") || strings.Contains(err.Error(), "do-not-print") {
		t.Errorf("missing key file: %v, want an error naming jwt_key_file", err)
	}
}

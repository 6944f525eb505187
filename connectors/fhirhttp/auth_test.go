package fhirhttp

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// TestAuthConfigTokenSource checks the one builder of a FHIR client's
// token source that the FHIR source and the FHIR write-back target share
// (each used to build its own from its own copy of the keys).
func TestAuthConfigTokenSource(t *testing.T) {
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "smart.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	notKey := filepath.Join(dir, "not-a-key.pem")
	if err := os.WriteFile(notKey, []byte("MRN-12345 do-not-print-me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("EHRB_TEST_FHIR_TOKEN", "tok-do-not-print-me")

	smart := AuthConfig{SMARTTokenURL: "https://ehr.example/token", SMARTClientID: "ehrbridge", SMARTKeyFile: keyFile}
	ts, err := smart.TokenSource("system/*.read")
	if err != nil {
		t.Fatal(err)
	}
	bs, ok := ts.(*BackendServices)
	if !ok || bs.TokenURL != smart.SMARTTokenURL || bs.ClientID != "ehrbridge" || bs.Scope != "system/*.read" || !bs.Key.Equal(key) {
		t.Errorf("SMART settings built %#v, want BackendServices with the token URL, client id, key and scope", ts)
	}

	ts, err = AuthConfig{Token: configvalue.SecretRef{Env: "EHRB_TEST_FHIR_TOKEN", Key: "token"}}.TokenSource("")
	if err != nil || ts != StaticToken("tok-do-not-print-me") {
		t.Errorf("token_env built %v, %v; want the static token", ts, err)
	}

	if ts, err := (AuthConfig{}).TokenSource(""); ts != nil || err != nil {
		t.Errorf("no auth built %v, %v; want nil, nil (no Authorization header)", ts, err)
	}

	for _, c := range []struct {
		cfg  AuthConfig
		want string
	}{
		{AuthConfig{SMARTTokenURL: "https://ehr.example/token", SMARTClientID: "x", SMARTKeyFile: filepath.Join(dir, "missing.pem")}, "smart_key_file: "},
		{AuthConfig{SMARTTokenURL: "https://ehr.example/token", SMARTClientID: "x", SMARTKeyFile: notKey}, "smart_key_file: no PEM block"},
		{AuthConfig{Token: configvalue.SecretRef{Env: "EHRB_TEST_FHIR_TOKEN_UNSET", Key: "token"}}, "token: secret token_env: environment variable EHRB_TEST_FHIR_TOKEN_UNSET is not set"},
	} {
		_, err := c.cfg.TokenSource("")
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("TokenSource() error = %v, want it to start %q", err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "do-not-print-me") {
			t.Errorf("error %q quotes a secret or the key file's contents", err)
		}
	}
}

// reports is a configvalue.Reporter that records what it is told.
type reports struct{ got []string }

func (r *reports) Add(key, format string, args ...any) {
	r.got = append(r.got, key+": "+fmt.Sprintf(format, args...))
}
func (r *reports) Show(key, value string) string { return fmt.Sprintf("%q", value) }
func (r *reports) Readable(key, file string) {
	if _, err := os.Stat(file); file != "" && err != nil {
		r.got = append(r.got, key+": cannot read")
	}
}

// TestAuthConfigValidate checks the rules both FHIR sections share: SMART
// in full or not at all, not with a static token, a readable key file.
func TestAuthConfigValidate(t *testing.T) {
	tok := configvalue.SecretRef{Env: "X"}
	for _, c := range []struct {
		cfg  AuthConfig
		want []string
	}{
		{AuthConfig{}, nil},
		{AuthConfig{Token: tok}, nil},
		{AuthConfig{SMARTClientID: "x"}, []string{": SMART Backend Services needs smart_token_url, smart_client_id and smart_key_file"}},
		{AuthConfig{Token: tok, SMARTTokenURL: "https://t", SMARTClientID: "x", SMARTKeyFile: "/nonexistent/k.pem"},
			[]string{": give a static token or SMART Backend Services, not both", "smart_key_file: cannot read"}},
	} {
		var r reports
		c.cfg.Validate(&r)
		if fmt.Sprint(r.got) != fmt.Sprint(c.want) {
			t.Errorf("Validate(%+v) reported %q, want %q", c.cfg, r.got, c.want)
		}
	}
}

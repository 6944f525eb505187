package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// secretSchema is a test-only schema exercising the generic SecretRef
// machinery beyond what the product schema uses.
type secretSchema struct {
	DB struct {
		User     string    `yaml:"user"`
		Password SecretRef `yaml:"password"`
	} `yaml:"db"`
	Token   SecretRef    `yaml:"token,required"`
	Clients []secretItem `yaml:"clients"`
}

type secretItem struct {
	Name         string    `yaml:"name,required"`
	ClientSecret SecretRef `yaml:"client_secret"`
}

// loadSecretSchema runs the generic steps Parse runs for Config.
func loadSecretSchema(t *testing.T, name, data string, env map[string]string) (*secretSchema, Problems) {
	t.Helper()
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var s secretSchema
	pos, probs, complete := decodeDocument(name, []byte(data), lookup, &s)
	if complete {
		probs = append(probs, checkSecrets(pos, &s, baseDir(name), lookup)...)
	}
	resolveSecretFiles(&s, baseDir(name))
	return &s, probs.Sorted()
}

func TestSecretSchemaDecode(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "db.pass"), []byte("from-file-value\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := "db:\n  user: app\n  password_file: db.pass\ntoken_env: TOKEN\nclients:\n  - name: a\n    client_secret_env: ${WHICH:-CLIENT_A}\n"
	env := map[string]string{"TOKEN": "from-env-value", "CLIENT_A": "client-a-value"}
	s, probs := loadSecretSchema(t, filepath.Join(dir, "s.yaml"), data, env)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	if s.DB.Password != (SecretRef{File: filepath.Join(dir, "db.pass"), Key: "password"}) ||
		s.Token != (SecretRef{Env: "TOKEN", Key: "token"}) ||
		s.Clients[0].ClientSecret != (SecretRef{Env: "CLIENT_A", Key: "client_secret"}) {
		t.Errorf("decoded %+v", s)
	}
	if v, err := s.DB.Password.Resolve(); err != nil || v != "from-file-value" {
		t.Errorf("file secret = %q, %v", v, err)
	}
	t.Setenv("TOKEN", "from-env-value")
	if v, err := s.Token.Resolve(); err != nil || v != "from-env-value" {
		t.Errorf("env secret = %q, %v", v, err)
	}
}

func TestSecretSchemaProblems(t *testing.T) {
	data := `db:
  password: hunter2-inline
  password_env: DB_PASS
  password_file: /nonexistent/db.pass
  api_key: hunter2-inline
clients:
  - name: a
    client_secret: hunter2-inline
    secret: hunter2-inline
  - name: b
    client_secret_file: /nonexistent/b
`
	_, probs := loadSecretSchema(t, "s.yaml", data, map[string]string{"DB_PASS": "x"})
	want := []string{
		`s.yaml:1:1: top level: missing required key "token_env" or "token_file"`,
		`s.yaml:2:3: db.password: inline secrets are not allowed: use password_env or password_file`,
		`s.yaml:4:18: db.password_file: set only one of password_env and password_file`,
		`s.yaml:5:3: unknown key "api_key" in db; inline secrets are not allowed: use password_env or password_file`,
		`s.yaml:8:5: clients[0].client_secret: inline secrets are not allowed: use client_secret_env or client_secret_file`,
		`s.yaml:9:5: unknown key "secret" in clients[0]; inline secrets are not allowed: use client_secret_env or client_secret_file`,
		`s.yaml:11:25: clients[1].client_secret_file: cannot read "/nonexistent/b": no such file`,
	}
	got := strings.Split(probs.Error(), "\n")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(probs.Error(), "hunter2") {
		t.Error("problems contain an inline secret value")
	}
}

func TestSecretResolveErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("EHR_TEST_EMPTY_SECRET", "")
	tests := []struct {
		ref  SecretRef
		want string
	}{
		{SecretRef{Env: "EHR_TEST_UNSET_SECRET", Key: "password"}, "secret password_env: environment variable EHR_TEST_UNSET_SECRET is not set"},
		{SecretRef{Env: "EHR_TEST_EMPTY_SECRET", Key: "password"}, "secret password_env: environment variable EHR_TEST_EMPTY_SECRET is empty"},
		{SecretRef{File: filepath.Join(dir, "nope"), Key: "password"}, fmt.Sprintf("secret password_file: cannot read %q: no such file", filepath.Join(dir, "nope"))},
		{SecretRef{File: empty, Key: "password"}, fmt.Sprintf("secret password_file: file %q is empty", empty)},
		{SecretRef{Env: "A", File: empty, Key: "password"}, "secret password: set only one of password_env and password_file"},
		{SecretRef{Key: "password"}, "secret password: neither password_env nor password_file is set"},
		{SecretRef{Env: "EHR_TEST_UNSET_SECRET"}, "secret secret_env: environment variable EHR_TEST_UNSET_SECRET is not set"},
	}
	for _, tt := range tests {
		v, err := tt.ref.Resolve()
		if err == nil || err.Error() != tt.want || v != "" {
			t.Errorf("%#v.Resolve() = %q, %v; want error %q", tt.ref, v, err, tt.want)
		}
	}
}

func TestSecretResolveTrimsOneNewline(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{"abc": "abc", "abc\n": "abc", "abc\r\n": "abc", "abc\n\n": "abc\n", " abc ": " abc "} {
		f := filepath.Join(dir, "s")
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := (SecretRef{File: f}).Resolve(); err != nil || got != want {
			t.Errorf("file %q resolved to %q, %v; want %q", content, got, err, want)
		}
	}
}

// TestSecretNeverPrinted checks every way a config or a reference is
// likely to be printed: the value is not in the struct, so it cannot
// appear, but the reference is also marked as redacted.
func TestSecretNeverPrinted(t *testing.T) {
	const value = "s3cr3t-value-never-printed"
	t.Setenv("EHR_TEST_SECRET", value)
	dir := t.TempDir()
	f := filepath.Join(dir, "pass")
	if err := os.WriteFile(f, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, s := range []SecretRef{{Env: "EHR_TEST_SECRET", Key: "password"}, {File: f, Key: "password"}} {
		if got, err := s.Resolve(); err != nil || got != value {
			t.Fatalf("Resolve() = %q, %v", got, err)
		}
		var buf bytes.Buffer
		fmt.Fprintf(&buf, "%v %+v %#v %s %q|", s, s, s, s, s)
		fmt.Fprintf(&buf, "%v %+v %#v %v|", &s, &s, struct{ S SecretRef }{s}, []SecretRef{s})
		slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "secret", s)
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "secret", s, slog.Any("ptr", &s))
		j, err := json.Marshal(struct{ S SecretRef }{s})
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(j)
		out := buf.String()
		if strings.Contains(out, value) {
			t.Errorf("secret value printed: %s", out)
		}
		if !strings.Contains(out, "[redacted") {
			t.Errorf("reference not marked redacted: %s", out)
		}
	}
	if got := (SecretRef{Env: "X"}).String(); got != "[redacted env:X]" {
		t.Errorf("String() = %q", got)
	}
	if got := (SecretRef{File: "/p"}).String(); got != "[redacted file:/p]" {
		t.Errorf("String() = %q", got)
	}
	if got := (SecretRef{}).String(); got != "[redacted]" {
		t.Errorf("String() = %q", got)
	}
}

// A secret handed over by systemd's LoadCredential= (the way the README
// tells Linux sites to pass secrets) is named as
// ${CREDENTIALS_DIRECTORY}/<name>: the directory systemd sets for the
// service; without it (not run by systemd) the reference is refused.
func TestSystemdCredentialFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sf-key"), []byte("credential-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := "token_file: ${CREDENTIALS_DIRECTORY}/sf-key\n"
	s, probs := loadSecretSchema(t, filepath.Join(t.TempDir(), "s.yaml"), data, map[string]string{"CREDENTIALS_DIRECTORY": dir})
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	if v, err := s.Token.Resolve(); err != nil || v != "credential-value" {
		t.Errorf("credential: %q, %v", v, err)
	}
	if _, probs := loadSecretSchema(t, filepath.Join(t.TempDir(), "s.yaml"), data, nil); len(probs) == 0 || !strings.Contains(probs.Error(), "CREDENTIALS_DIRECTORY") {
		t.Errorf("without CREDENTIALS_DIRECTORY: %v", probs)
	}
}

package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminSocketPath(t *testing.T) {
	noEnv := func(string) (string, bool) { return "", false }
	for text, want := range map[string]string{
		"data_dir: /var/lib/eb\n":                                   "/var/lib/eb/admin.sock",
		"data_dir: /var/lib/eb\nadmin:\n  socket: \"off\"\n":        "",
		"data_dir: /var/lib/eb\nadmin:\n  socket: run/eb.sock\n":    filepath.Join("/etc/eb", "run/eb.sock"),
		"data_dir: /var/lib/eb\nadmin:\n  socket: /run/eb/a.sock\n": "/run/eb/a.sock",
	} {
		c, err := Parse("/etc/eb/ehrbridge.yaml", []byte(text), noEnv)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if got := c.Admin.SocketPath(c.DataDir); got != want {
			t.Errorf("%q: socket %q, want %q", text, got, want)
		}
	}
}

// Roles and accounts are checked at lint: a known role, one of user and
// group, a token by reference (never inline), unique account names.
func TestAdminRolesAndAccountsLint(t *testing.T) {
	env := func(k string) (string, bool) {
		if k == "TOK" {
			return "a-token-of-enough-length", true
		}
		return "", false
	}
	good := "admin:\n  roles:\n    - {user: alice, role: auditor}\n    - {group: ops, role: operator}\n  accounts:\n    - {name: prom, role: viewer, token_env: TOK}\n  public_counts: true\n"
	c, err := Parse("t.yaml", []byte(good), env)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Admin.Roles) != 2 || c.Admin.Accounts[0].Token.Env != "TOK" || !c.Admin.PublicCounts {
		t.Errorf("admin = %+v", c.Admin)
	}
	for text, want := range map[string]string{
		"admin:\n  roles:\n    - {user: alice, group: ops, role: viewer}\n":                                                    "admin.roles[0]: give one of user and group",
		"admin:\n  roles:\n    - {user: alice, role: admin}\n":                                                                 "admin.roles[0].role: must be one of viewer, operator, auditor",
		"admin:\n  accounts:\n    - {name: prom, role: viewer}\n":                                                              "admin.accounts[0].token: token_env or token_file is required",
		"admin:\n  accounts:\n    - {name: prom, role: viewer, token: do-not-print-me-inline}\n":                               "token",
		"admin:\n  accounts:\n    - {name: a, role: viewer, token_env: TOK}\n    - {name: a, role: auditor, token_env: TOK}\n": `admin.accounts[1].name: "a" is used twice`,
		"admin:\n  accounts:\n    - {name: \"a:b\", role: viewer, token_env: TOK}\n":                                           "must not contain a colon",
	} {
		_, err := Parse("t.yaml", []byte(text), env)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "do-not-print-me") {
			t.Errorf("%q: the problem shows the inline token: %v", text, err)
		}
	}
}

// On Windows the admin API is a named pipe: \\.\pipe\ehrbridge-admin by
// default, another pipe name kept as written (not made relative to the
// config's directory), and a file path refused at lint.
func TestAdminPipePathOnWindows(t *testing.T) {
	defer func(g string) { goos = g }(goos)
	goos = "windows"
	noEnv := func(string) (string, bool) { return "", false }
	for text, want := range map[string]string{
		"data_dir: data\n": `\\.\pipe\ehrbridge-admin`,
		"data_dir: data\nadmin:\n  socket: '\\\\.\\pipe\\ehrbridge-admin-lab'\n": `\\.\pipe\ehrbridge-admin-lab`,
		"data_dir: data\nadmin:\n  socket: \"off\"\n":                            "",
	} {
		c, err := Parse("/etc/eb/ehrbridge.yaml", []byte(text), noEnv)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if got := c.Admin.SocketPath(c.DataDir); got != want {
			t.Errorf("%q: pipe %q, want %q", text, got, want)
		}
	}
	for _, sock := range []string{"run/admin.sock", `'\\.\pipe\a\b'`, `'\\.\pipe\'`, `'\\server\pipe\ehrbridge-admin'`} {
		_, err := Parse("/etc/eb/ehrbridge.yaml", []byte("data_dir: data\nadmin:\n  socket: "+sock+"\n"), noEnv)
		if err == nil || !strings.Contains(err.Error(), `admin.socket: on Windows the admin API is served on a named pipe`) {
			t.Errorf("socket %s: %v", sock, err)
		}
	}
}

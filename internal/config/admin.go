package config

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// AdminSocketName is the admin socket's default name in the data
// directory.
const AdminSocketName = "admin.sock"

// AdminPipeName is the admin API's default named pipe on Windows. A
// second instance on the host names its own in admin.socket
// (\\.\pipe\ehrbridge-admin-<service name>): a pipe name is taken by
// the first server that creates it.
const AdminPipeName = `\\.\pipe\ehrbridge-admin`

// goos is runtime.GOOS, replaced in tests of the Windows rules.
var goos = runtime.GOOS

// isPipePath reports a Windows named pipe path (\\.\pipe\name).
func isPipePath(p string) bool {
	const prefix = `\\.\pipe\`
	return len(p) > len(prefix) && strings.EqualFold(p[:len(prefix)], prefix) && !strings.ContainsAny(p[len(prefix):], `\/`)
}

// validate checks the admin section's socket, roles and accounts.
func (a *AdminConfig) validate(v *validator) {
	if strings.EqualFold(a.Socket, "off") {
		a.Socket, a.socketOff = "", true
	}
	if goos == "windows" && a.Socket != "" && !isPipePath(a.Socket) {
		v.add("admin.socket", `on Windows the admin API is served on a named pipe: give \\.\pipe\NAME (one name, no further \ or /), or "off"`)
	}
	for i, r := range a.Roles {
		path := fmt.Sprintf("admin.roles[%d]", i)
		if (r.User == "") == (r.Group == "") {
			v.add(path, "give one of user and group")
		}
		if !slices.Contains(AdminRoles, r.Role) {
			v.add(path+".role", "must be one of %s", strings.Join(AdminRoles, ", "))
		}
	}
	seen := map[string]bool{}
	for i, acc := range a.Accounts {
		path := fmt.Sprintf("admin.accounts[%d]", i)
		switch {
		case acc.Name == "":
			v.add(path+".name", "must not be empty")
		case strings.ContainsAny(acc.Name, ": \t\r\n"):
			v.add(path+".name", "must not contain a colon or white space (it is the HTTP Basic user name)")
		case seen[acc.Name]:
			v.add(path+".name", "%q is used twice", acc.Name)
		}
		seen[acc.Name] = true
		if !slices.Contains(AdminRoles, acc.Role) {
			v.add(path+".role", "must be one of %s", strings.Join(AdminRoles, ", "))
		}
		if !acc.Token.IsSet() {
			v.add(path+".token", "token_env or token_file is required (a token per account, never inline)")
		}
	}
}

// resolveSocket makes a relative socket path relative to base.
func (a *AdminConfig) resolveSocket(base string) {
	if a.Socket != "" && !isPipePath(a.Socket) {
		a.Socket = resolvePath(base, a.Socket)
	}
}

// SocketPath is the admin socket's path: Socket, or admin.sock in
// dataDir by default (on Windows the named pipe [AdminPipeName]); "" when
// the config turned it off.
func (a *AdminConfig) SocketPath(dataDir string) string {
	switch {
	case a.socketOff:
		return ""
	case a.Socket != "":
		return a.Socket
	case goos == "windows":
		return AdminPipeName
	}
	return filepath.Join(dataDir, AdminSocketName)
}

package logadmin

import "strings"

// Well-known SIDs the admin pipe's server may run as.
const (
	sidLocalSystem    = "S-1-5-18"
	sidLocalService   = "S-1-5-19"
	sidNetworkService = "S-1-5-20"
	sidAdministrators = "S-1-5-32-544"
	sidServicePrefix  = "S-1-5-80-" // NT SERVICE\<name>: a service's virtual account
)

// PipeServerEnv names the account the ehrbridge service runs as when it
// is none the CLI trusts by default (a domain account: DOMAIN\name or a
// SID).
const PipeServerEnv = "EHRBRIDGE_ADMIN_PIPE_SERVER"

// pipeServerTrusted reports whether the CLI may talk to an admin pipe
// whose serving process runs as user (a SID) with the enabled groups
// given: a service account (LocalSystem, LocalService, NetworkService, a
// service's virtual account NT SERVICE\name, which only an administrator
// can create by installing a service), an elevated administrator, the
// caller itself (a daemon it runs by hand) or the account PipeServerEnv
// names (extra, a SID). Anything else may be a local user who took the
// pipe's name while the service was stopped, to read what the CLI sends
// or answer it falsely.
func pipeServerTrusted(user string, groups []string, self, extra string) bool {
	switch {
	case user == sidLocalSystem, user == sidLocalService, user == sidNetworkService,
		strings.HasPrefix(user, sidServicePrefix), user == self, extra != "" && user == extra:
		return true
	}
	for _, g := range groups {
		if g == sidAdministrators {
			return true
		}
	}
	return false
}

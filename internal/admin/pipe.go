package admin

// The admin API's named pipe on Windows (admin_peer_windows.go). The
// security descriptor is built here, apart from the Windows calls, so that
// it is tested on every platform.

// Well-known SIDs (MS-DTYP 2.4.2.4).
const (
	sidSystem         = "S-1-5-18"     // NT AUTHORITY\SYSTEM
	sidAdministrators = "S-1-5-32-544" // BUILTIN\Administrators
)

// pipeSDDL is the admin pipe's security descriptor (SDDL): a protected
// DACL (nothing inherited) denying network logons (the pipe also rejects
// remote clients) and admitting SYSTEM, Administrators and the service's
// own account with full access, and, when admin.socket_group names one,
// that group with read and write only: not FILE_CREATE_PIPE_INSTANCE,
// so that a member cannot serve an instance of the pipe and answer
// another admin's CLI. Who may do what is then decided per call from the
// client's token (admin.roles); the DACL only keeps others from
// connecting at all, as the socket's mode 0660 does on Linux.
func pipeSDDL(serviceSID, groupSID string) string {
	sd := "D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;" + serviceSID + ")"
	if groupSID != "" && groupSID != serviceSID {
		sd += "(A;;GRGW;;;" + groupSID + ")"
	}
	return sd
}

// windowsTrusted are the SIDs that hold every role on the pipe besides
// the service's own account: SYSTEM, and Administrators when the caller's
// token has the group enabled (an elevated process; UAC leaves it
// deny-only otherwise), as root holds every role on Linux.
func windowsTrusted(serviceSID string) map[string]bool {
	return map[string]bool{sidSystem: true, sidAdministrators: true, serviceSID: true}
}

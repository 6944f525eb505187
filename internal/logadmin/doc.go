// Package logadmin is the admin's view of the checkpoint log, shared by the
// CLI and the daemon: JSON views of records and stats, the audit trail of
// admin calls, an HTTP API the daemon serves, and a client for it.
//
// The CLI asks a running daemon over its admin socket, where the kernel
// tells the daemon who calls (SO_PEERCRED), or opens the log file directly
// when no daemon holds it, or asks over TCP. Each API call needs a role
// (viewer, operator, auditor: [RolePerm]) held by the caller's OS user or
// group or by a named account ([Access]); every call, refusals included,
// is an audit line naming the caller ([Audit.Call]), written before the
// call runs and copied to the system journal or the Windows Event Log.
//
// The message browser's calls (browse.go: Find, Trace, RetryIDs,
// CloseRecord, ResolveConflict, Release) take the Caller they are made
// for, so that the admin console can call a Local in process with its
// signed-in user: Local checks that caller's permission, audits the call
// with it and names it in the records' history. Their views (FindView,
// TraceView) are what the CLI prints with --json and the console shows.
// A patient is found by authority and MRN hashed with the log's key
// (PatientLaneKeys), never stored in clear nor written to the audit log.
package logadmin

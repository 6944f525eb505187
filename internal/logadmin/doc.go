// Package logadmin is the admin's view of the checkpoint log, shared by the
// CLI and the daemon: JSON views of records and stats, the audit trail of
// revealed payloads, an HTTP API the daemon serves, and a client for it.
//
// The CLI opens the log file directly when no daemon holds it. A running
// daemon holds bbolt's exclusive lock, so the CLI then asks the daemon over
// its admin endpoint instead. That API is guarded by a token the daemon
// writes to admin.token in the data directory (mode 0600): whoever can read
// the token can read the log file anyway, so the API grants no access the
// file system does not.
package logadmin

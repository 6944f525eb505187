//go:build !windows

package installer

// registerAuditSource: the Windows Event Log only; elsewhere audit lines
// go to the journal, which needs no registration.
func registerAuditSource() error { return nil }

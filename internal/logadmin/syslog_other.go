//go:build !windows

package logadmin

// defaultSystemLog is the systemd journal when the host runs journald.
func defaultSystemLog() SystemLog { return journalIfPresent() }

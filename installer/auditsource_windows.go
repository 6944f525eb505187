//go:build windows

package installer

import (
	"strings"

	"golang.org/x/sys/windows/svc/eventlog"
)

// registerAuditSource registers the Windows Event Log source the audit
// lines are written under (auditSource, Application log, with
// EventCreate.exe as its message file, as the MSI does). Registering again
// is not an error. Uninstalling leaves it: the audit events already in the
// log keep their text only while their source is registered.
func registerAuditSource() error {
	err := eventlog.InstallAsEventCreate(auditSource, eventlog.Error|eventlog.Warning|eventlog.Info)
	if err != nil && !strings.HasSuffix(err.Error(), "registry key already exists") {
		return err
	}
	return nil
}

package installer

import (
	"errors"
	"testing"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// Install registers the audit lines' Event Log source under Application
// with EventCreate.exe as its message file; doing it again is no error.
// Needs an administrator (make test-windows runs it under Wine).
func TestRegisterAuditSource(t *testing.T) {
	for range 2 {
		if err := registerAuditSource(); err != nil {
			if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
				t.Skip("needs an administrator")
			}
			t.Fatal(err)
		}
	}
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SYSTEM\CurrentControlSet\Services\EventLog\Application\`+auditSource, registry.QUERY_VALUE)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	file, _, err := k.GetStringValue("EventMessageFile")
	if err != nil || file != `%SystemRoot%\System32\EventCreate.exe` {
		t.Errorf("EventMessageFile %q %v", file, err)
	}
	if types, _, err := k.GetIntegerValue("TypesSupported"); err != nil || types != 7 {
		t.Errorf("TypesSupported %d %v", types, err)
	}
}

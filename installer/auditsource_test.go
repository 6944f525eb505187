package installer

import (
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// The source install registers is the one the audit lines are written
// under.
func TestAuditSourceName(t *testing.T) {
	if auditSource != logadmin.EventLogSource {
		t.Errorf("install registers %q, audit lines use %q", auditSource, logadmin.EventLogSource)
	}
}

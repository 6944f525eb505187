package admin

import (
	"strings"
	"testing"
)

// The admin pipe's security descriptor admits SYSTEM, Administrators and
// the service's account with full access and the socket_group with read
// and write only (no pipe instance of its own), inherits nothing and
// denies network logons.
func TestPipeSecurityDescriptor(t *testing.T) {
	const svc, grp = "S-1-5-80-1-2-3-4-5", "S-1-5-21-1-2-3-2001"
	got := pipeSDDL(svc, "")
	if want := "D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;" + svc + ")"; got != want {
		t.Errorf("without a group: %s, want %s", got, want)
	}
	got = pipeSDDL(svc, grp)
	if !strings.HasSuffix(got, "(A;;GRGW;;;"+grp+")") || strings.Count(got, "(A;") != 4 {
		t.Errorf("with a group: %s", got)
	}
	if strings.Contains(got, "WD") || strings.Contains(got, "AU") || strings.Contains(got, "BU") {
		t.Errorf("everyone, authenticated users or users admitted: %s", got)
	}
	if got := pipeSDDL(svc, svc); strings.Count(got, svc) != 1 {
		t.Errorf("the service's account as the group is listed twice: %s", got)
	}
}

// On the pipe the daemon trusts SYSTEM, Administrators (enabled in the
// token: tokenAccount keeps enabled groups only; TestPipeTokenIdentity)
// and its own account with every role; BUILTIN\Users and Everyone not.
func TestWindowsTrustedCallers(t *testing.T) {
	const svc = "S-1-5-80-1-2-3-4-5"
	trusted := windowsTrusted(svc)
	for sid, want := range map[string]bool{sidSystem: true, sidAdministrators: true, svc: true, "S-1-5-32-545": false, "S-1-1-0": false} {
		if trusted[sid] != want {
			t.Errorf("%s trusted: %v, want %v", sid, !want, want)
		}
	}
}

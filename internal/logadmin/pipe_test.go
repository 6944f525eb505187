package logadmin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A Windows pipe caller is named by its token: DOMAIN\user and SID, roles
// from admin.roles by account or enabled group (case-insensitive names, or
// SIDs), every role for SYSTEM, an elevated Administrators member and the
// service's own account; a token that cannot be read (an anonymous-level
// client) is anonymous. The audit line records the name, the SID as uid,
// and via "pipe", as the socket's lines record user and uid.
func TestPipeTokenIdentity(t *testing.T) {
	const (
		system   = "S-1-5-18"
		admins   = "S-1-5-32-544"
		service  = "S-1-5-80-1111"
		aliceSID = "S-1-5-21-1-2-3-1001"
		bobSID   = "S-1-5-21-1-2-3-1002"
		opsSID   = "S-1-5-21-1-2-3-2001"
	)
	dir := t.TempDir()
	a := testAccess(dir)
	a.TrustedSIDs = map[string]bool{system: true, admins: true, service: true}
	a.Users = map[string]Perm{`HOSPITAL\Alice`: PermView | PermReveal, "carol": PermView, bobSID: PermView}
	a.Groups = map[string]Perm{`hospital\ehrbridge-ops`: PermView | PermOperate}
	users := []OSGroup{{`BUILTIN\Users`, "S-1-5-32-545"}}
	for _, tc := range []struct {
		what string
		acc  *OSAccount
		err  error
		name string
		perm Perm
	}{
		{"account by name, other case", &OSAccount{Name: `hospital\alice`, SID: aliceSID, Groups: users}, nil, `hospital\alice`, PermView | PermReveal},
		{"group by name", &OSAccount{Name: `HOSPITAL\dave`, SID: "S-1-5-21-1-2-3-1004", Groups: append(users, OSGroup{`HOSPITAL\ehrbridge-ops`, opsSID})}, nil, `HOSPITAL\dave`, PermView | PermOperate},
		{"account by SID", &OSAccount{Name: `HOSPITAL\bob`, SID: bobSID}, nil, `HOSPITAL\bob`, PermView},
		{"a bare name matches no domain account", &OSAccount{Name: `OTHER\carol`, SID: "S-1-5-21-9-9-9-1005"}, nil, `OTHER\carol`, 0},
		{"SYSTEM", &OSAccount{Name: `NT AUTHORITY\SYSTEM`, SID: system}, nil, `NT AUTHORITY\SYSTEM`, PermAll},
		{"elevated administrator", &OSAccount{Name: `HOSPITAL\erin`, SID: "S-1-5-21-1-2-3-1006", Groups: []OSGroup{{`BUILTIN\Administrators`, admins}}}, nil, `HOSPITAL\erin`, PermAll},
		{"the service's account", &OSAccount{Name: `NT SERVICE\ehrbridge`, SID: service}, nil, `NT SERVICE\ehrbridge`, PermAll},
		{"a SID without a name", &OSAccount{SID: "S-1-5-21-1-2-3-1007"}, nil, "sid S-1-5-21-1-2-3-1007", 0},
		{"anonymous impersonation level", nil, errors.New("cannot open anonymous level token"), "anonymous", 0},
	} {
		req := httptest.NewRequest("GET", "/api/v1/log/stats", nil)
		req = req.WithContext(WithPeer(req.Context(), Peer{Via: "pipe", Token: func() (*OSAccount, error) { return tc.acc, tc.err }}))
		c := a.Authenticate(req)
		wantUID := ""
		if tc.acc != nil {
			wantUID = tc.acc.SID
		}
		if c.Name != tc.name || c.Perm != tc.perm || c.Via != "pipe" || c.UID != wantUID {
			t.Errorf("%s: %+v, want %s with %s", tc.what, c, tc.name, tc.perm)
		}
	}

	// Through Guard: a reveal by alice is allowed and audited under her
	// name and SID; dave (operator) is refused 403, audited.
	served := 0
	h := a.Guard("reveal", PermReveal, func(*http.Request) string { return "record 7" }, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served++ }))
	call := func(acc *OSAccount) int {
		req := httptest.NewRequest("GET", "/api/v1/log/records/7?reveal=1", nil)
		req = req.WithContext(WithPeer(req.Context(), Peer{Via: "pipe", Token: func() (*OSAccount, error) { return acc, nil }}))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	if code := call(&OSAccount{Name: `HOSPITAL\alice`, SID: aliceSID}); code != 200 || served != 1 {
		t.Errorf("alice's reveal: %d, served %d", code, served)
	}
	if code := call(&OSAccount{Name: `HOSPITAL\dave`, SID: "S-1-5-21-1-2-3-1004", Groups: []OSGroup{{`HOSPITAL\ehrbridge-ops`, opsSID}}}); code != 403 || served != 1 {
		t.Errorf("dave's reveal: %d, served %d", code, served)
	}
	lines := auditLines(t, dir)
	if len(lines) != 2 {
		t.Fatalf("audit lines: %+v", lines)
	}
	if ev := lines[0]; ev.User != `HOSPITAL\alice` || ev.OSUser != `HOSPITAL\alice` || ev.UID != aliceSID || ev.Via != "pipe" || ev.Outcome != "allowed" || ev.Object != "record 7" || ev.Action != "reveal" {
		t.Errorf("alice's audit line: %+v", ev)
	}
	if ev := lines[1]; ev.User != `HOSPITAL\dave` || ev.Via != "pipe" || ev.Outcome != "refused" || ev.Roles != "operator" {
		t.Errorf("dave's audit line: %+v", ev)
	}
}

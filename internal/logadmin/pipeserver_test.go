package logadmin

import "testing"

// The CLI talks to an admin pipe served by a service account, an elevated
// administrator, itself or the account EHRBRIDGE_ADMIN_PIPE_SERVER names;
// never to another user's process that took the pipe's name.
func TestPipeServerTrusted(t *testing.T) {
	const (
		me      = "S-1-5-21-1-2-3-1001"
		mallory = "S-1-5-21-1-2-3-1066"
		domSvc  = "S-1-5-21-1-2-3-3001"
		users   = "S-1-5-32-545"
	)
	for _, tc := range []struct {
		what   string
		user   string
		groups []string
		extra  string
		want   bool
	}{
		{"LocalSystem", "S-1-5-18", nil, "", true},
		{"LocalService", "S-1-5-19", nil, "", true},
		{"NetworkService", "S-1-5-20", nil, "", true},
		{`NT SERVICE\ehrbridge`, "S-1-5-80-1234-5678", nil, "", true},
		{"an elevated administrator", mallory, []string{users, "S-1-5-32-544"}, "", true},
		{"the caller itself", me, []string{users}, "", true},
		{"another user", mallory, []string{users}, "", false},
		{"another user, a domain service account named", mallory, []string{users}, domSvc, false},
		{"the domain service account named", domSvc, []string{users}, domSvc, true},
		{"a SID that only starts like a service's", "S-1-5-8", nil, "", false},
	} {
		if got := pipeServerTrusted(tc.user, tc.groups, me, tc.extra); got != tc.want {
			t.Errorf("%s: trusted %v, want %v", tc.what, got, tc.want)
		}
	}
}

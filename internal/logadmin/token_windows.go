//go:build windows

package logadmin

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// TokenAccount is a Windows token's user and enabled groups, by name and
// SID: who a pipe client is (the daemon) and who serves the pipe (the
// CLI).
func TokenAccount(tok windows.Token) (*OSAccount, error) {
	tu, err := tok.GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("GetTokenUser: %w", err)
	}
	acc := &OSAccount{SID: tu.User.Sid.String(), Name: sidName(tu.User.Sid)}
	tg, err := tok.GetTokenGroups()
	if err != nil {
		return nil, fmt.Errorf("GetTokenGroups: %w", err)
	}
	for _, g := range tg.AllGroups() {
		if g.Attributes&windows.SE_GROUP_ENABLED == 0 || g.Attributes&windows.SE_GROUP_USE_FOR_DENY_ONLY != 0 {
			continue
		}
		acc.Groups = append(acc.Groups, OSGroup{Name: sidName(g.Sid), SID: g.Sid.String()})
	}
	return acc, nil
}

// sidName is DOMAIN\name of a SID, "" when it has none that can be found.
func sidName(sid *windows.SID) string {
	name, domain, _, err := sid.LookupAccount("")
	switch {
	case err != nil:
		return ""
	case domain == "":
		return name
	}
	return domain + `\` + name
}

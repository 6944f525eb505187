package logadmin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os/user"
	"strconv"
	"strings"
)

// Perm is a set of permissions on the admin endpoint.
type Perm uint8

// The permissions the roles grant.
const (
	// PermView: counts, states, lists and record metadata (no payload).
	PermView Perm = 1 << iota
	// PermOperate: retry and requeue records.
	PermOperate
	// PermReveal: reveal payloads and take backups (which hold them).
	PermReveal

	// PermAll is what root and the daemon's own user hold.
	PermAll = PermView | PermOperate | PermReveal
)

// RolePerm is what a role ("viewer", "operator", "auditor") permits.
// Operator and auditor both include viewer; neither includes the other.
func RolePerm(role string) (Perm, bool) {
	switch role {
	case "viewer":
		return PermView, true
	case "operator":
		return PermView | PermOperate, true
	case "auditor":
		return PermView | PermReveal, true
	}
	return 0, false
}

// String names the roles a set amounts to, for audit lines.
func (p Perm) String() string {
	var out []string
	if p&PermView != 0 && p&(PermOperate|PermReveal) == 0 {
		out = append(out, "viewer")
	}
	if p&PermOperate != 0 {
		out = append(out, "operator")
	}
	if p&PermReveal != 0 {
		out = append(out, "auditor")
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "+")
}

// Peer is the OS identity of a local caller, as the kernel reported it
// for the connection (SO_PEERCRED on the Unix socket, the socket owner of
// a loopback TCP connection on Linux, the client's token on the Windows
// named pipe).
type Peer struct {
	UID uint32
	// Via names the channel: "socket", "loopback" or "pipe".
	Via string
	// Token, on Windows, reads the pipe client's identity from the OS
	// when a request has been read (the named pipe file system names the
	// writer of the last message read); nil on Linux, where UID is it.
	Token func() (*OSAccount, error)
}

// OSAccount is a Windows caller's identity from its access token.
type OSAccount struct {
	// Name is DOMAIN\user ("" when the SID has no name).
	Name string
	SID  string
	// Groups are the token's enabled groups (deny-only ones left out:
	// the Administrators group of a process that UAC did not elevate).
	Groups []OSGroup
}

// OSGroup is a group of a Windows token: DOMAIN\name (or BUILTIN\...) and SID.
type OSGroup struct{ Name, SID string }

type peerKey struct{}

// WithPeer marks a connection's context with its caller's OS identity.
func WithPeer(ctx context.Context, p Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

func peerOf(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// Caller is who made a request, as the audit log records it.
type Caller struct {
	// Name is the OS user name or the account name; "anonymous" when the
	// caller gave no identity.
	Name string `json:"user"`
	// UID is the OS user id of a local caller; "" for accounts.
	UID string `json:"uid,omitempty"`
	// Via is the channel: "socket", "loopback" (TCP, identified by the
	// OS), "account" (TCP, HTTP Basic), "tcp" (TCP, anonymous) or "cli".
	Via    string `json:"via"`
	Remote string `json:"remote,omitempty"`
	Perm   Perm   `json:"-"`
	// BadCredentials: the request carried credentials that did not match.
	BadCredentials bool `json:"-"`
}

// Account is a named account for the admin endpoint over TCP.
type Account struct {
	Name string
	Perm Perm
	sum  [32]byte
}

// NewAccount makes an account from its name, role and token. Only the
// token's SHA-256 is kept.
func NewAccount(name, role, token string) (Account, error) {
	p, ok := RolePerm(role)
	if !ok {
		return Account{}, fmt.Errorf("admin account %s: unknown role %q", name, role)
	}
	if len(token) < 16 {
		return Account{}, fmt.Errorf("admin account %s: the token is shorter than 16 characters", name)
	}
	return Account{Name: name, Perm: p, sum: sha256.Sum256([]byte(token))}, nil
}

// Access decides who may do what on the admin endpoint and audits it.
type Access struct {
	// Users and Groups give local OS users and groups (by name) their
	// permissions; a caller holds the union of its entries.
	Users, Groups map[string]Perm
	// Trusted uids hold every permission: root and the daemon's own user.
	Trusted map[uint32]bool
	// TrustedSIDs hold every permission on Windows, as the token's user or
	// an enabled group: SYSTEM, BUILTIN\Administrators (an elevated
	// process) and the service's own account.
	TrustedSIDs map[string]bool
	// Accounts authenticate TCP callers with HTTP Basic (name, token).
	Accounts []Account
	// PublicCounts: callers without a role may read counts (/status,
	// /metrics, /) but nothing else.
	PublicCounts bool
	// Audit receives a line for every API call, refusals included.
	Audit *Audit

	// lookupUser and lookupGroups are os/user's, replaced in tests.
	lookupUser func(uid string) (name string, groups []string, err error)
}

// Authenticate identifies a request's caller: HTTP Basic credentials of
// an account when the request carries them (a TLS reverse proxy on the
// same host connects over loopback as itself: the account is the
// person), else the OS identity of a local connection, else anonymous.
func (a *Access) Authenticate(r *http.Request) Caller {
	if name, secret, ok := r.BasicAuth(); ok {
		sum := sha256.Sum256([]byte(secret))
		for _, acc := range a.Accounts {
			// Compare every account's hash: the time does not say which
			// names exist.
			nameOK := subtle.ConstantTimeCompare([]byte(acc.Name), []byte(name)) == 1
			if subtle.ConstantTimeCompare(acc.sum[:], sum[:]) == 1 && nameOK {
				return Caller{Name: acc.Name, Via: "account", Remote: r.RemoteAddr, Perm: acc.Perm}
			}
		}
		return Caller{Name: "anonymous", Via: "account", Remote: r.RemoteAddr, BadCredentials: true}
	}
	if p, ok := peerOf(r.Context()); ok && p.Token != nil {
		acc, err := p.Token()
		if err != nil {
			// Typically a client that connected at the anonymous
			// impersonation level: it named no one.
			return Caller{Name: "anonymous", Via: p.Via}
		}
		c := a.tokenCaller(acc)
		c.Via = p.Via
		return c
	}
	if p, ok := peerOf(r.Context()); ok && !(p.Via == "loopback" && proxied(r)) {
		c := a.osCaller(p.UID)
		c.Via = p.Via
		if p.Via != "socket" {
			c.Remote = r.RemoteAddr
		}
		return c
	}
	return Caller{Name: "anonymous", Via: "tcp", Remote: r.RemoteAddr}
}

// proxied reports a request a proxy forwarded: the loopback connection's
// owner is then the proxy, not the person (a proxy running as root would
// otherwise pass every role on to anyone who reaches it).
func proxied(r *http.Request) bool {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-Ip"} {
		if r.Header.Get(h) != "" {
			return true
		}
	}
	return false
}

// osCaller names a uid and gives it its permissions.
func (a *Access) osCaller(uid uint32) Caller {
	id := strconv.FormatUint(uint64(uid), 10)
	c := Caller{Name: "uid " + id, UID: id}
	lookup := a.lookupUser
	if lookup == nil {
		lookup = lookupOSUser
	}
	name, groups, err := lookup(id)
	if err == nil {
		c.Name = name
	}
	if a.Trusted[uid] {
		c.Perm = PermAll
		return c
	}
	if err == nil {
		c.Perm |= a.Users[name]
		for _, g := range groups {
			c.Perm |= a.Groups[g]
		}
	}
	return c
}

// tokenCaller names a Windows caller and gives it its permissions: every
// permission when its SID or an enabled group is trusted, else the union of
// the admin.roles entries that name its account or one of its enabled
// groups, by DOMAIN\name (case-insensitive, as Windows compares account
// names) or by SID. A bare "alice" matches no one: a name without its
// domain could be another domain's alice.
func (a *Access) tokenCaller(acc *OSAccount) Caller {
	c := Caller{Name: acc.Name, UID: acc.SID}
	if c.Name == "" {
		c.Name = "sid " + acc.SID
	}
	if a.TrustedSIDs[acc.SID] {
		c.Perm = PermAll
		return c
	}
	for _, g := range acc.Groups {
		if a.TrustedSIDs[g.SID] {
			c.Perm = PermAll
			return c
		}
	}
	match := func(entry, name, sid string) bool {
		return entry == sid || (name != "" && strings.EqualFold(entry, name))
	}
	for entry, p := range a.Users {
		if match(entry, acc.Name, acc.SID) {
			c.Perm |= p
		}
	}
	for entry, p := range a.Groups {
		for _, g := range acc.Groups {
			if match(entry, g.Name, g.SID) {
				c.Perm |= p
			}
		}
	}
	return c
}

func lookupOSUser(uid string) (string, []string, error) {
	u, err := user.LookupId(uid)
	if err != nil {
		return "", nil, err
	}
	var names []string
	if gids, err := u.GroupIds(); err == nil {
		for _, gid := range gids {
			if g, err := user.LookupGroupId(gid); err == nil {
				names = append(names, g.Name)
			}
		}
	}
	return u.Username, names, nil
}

// Guard serves h to callers holding need, after writing the call's audit
// line; others get 401 (no identity) or 403 (no such role), also
// audited. object names what the call touches ("record 12"), never a
// value from it. A call whose audit line cannot be written is refused.
func (a *Access) Guard(action string, need Perm, object func(*http.Request) string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := a.Authenticate(r)
		obj := ""
		if object != nil {
			obj = object(r)
		}
		if c.Perm&need != need {
			a.refuse(w, c, action, obj, need)
			return
		}
		if err := a.Audit.Call(c, action, obj, "allowed"); err != nil {
			writeJSON(w, http.StatusInternalServerError, errorReply{Error: "the audit log cannot be written; refused"})
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

// Refuse audits and answers a call the caller may not make: 401 with a
// Basic challenge when the caller gave no identity, else 403.
func (a *Access) Refuse(w http.ResponseWriter, r *http.Request, action, object string, need Perm) {
	a.refuse(w, a.Authenticate(r), action, object, need)
}

func (a *Access) refuse(w http.ResponseWriter, c Caller, action, object string, need Perm) {
	_ = a.Audit.Call(c, action, object, "refused")
	if c.Name == "anonymous" {
		w.Header().Set("WWW-Authenticate", `Basic realm="ehrbridge admin", charset="UTF-8"`)
		msg := "authentication required: an admin account (HTTP Basic: name and token), or the admin socket (Windows: the named pipe, at impersonation level identification or higher)"
		if c.BadCredentials {
			msg = "wrong account name or token"
		}
		writeJSON(w, http.StatusUnauthorized, errorReply{Error: msg, Kind: "unauthorized"})
		return
	}
	writeJSON(w, http.StatusForbidden, errorReply{Error: fmt.Sprintf("%s has no role for %s (needs %s; admin.roles or admin.accounts)", c.Name, action, need), Kind: "forbidden"})
}

type callerKey struct{}

// CallerOf returns the caller Guard identified for a request.
func CallerOf(r *http.Request) (Caller, bool) {
	c, ok := r.Context().Value(callerKey{}).(Caller)
	return c, ok
}

package logadmin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// SignIn checks an account's name and token, as HTTP Basic would for an
// API call, for the console's sign-in form: the account's caller, or
// ok false. Every account's hash is compared, so the time taken does not
// say which names exist.
func (a *Access) SignIn(name, token string, remote string) (Caller, bool) {
	sum := sha256.Sum256([]byte(token))
	var found *Account
	for i := range a.Accounts {
		acc := &a.Accounts[i]
		nameOK := subtle.ConstantTimeCompare([]byte(acc.Name), []byte(name)) == 1
		if subtle.ConstantTimeCompare(acc.sum[:], sum[:]) == 1 && nameOK {
			found = acc
		}
	}
	if found == nil {
		return Caller{Name: "anonymous", Via: "console", Remote: remote, BadCredentials: true}, false
	}
	return Caller{Name: found.Name, Via: "console", Remote: remote, Perm: found.Perm}, true
}

// OSCaller is the caller the operating system names for a request on the
// admin socket or a loopback connection (see Authenticate), and whether
// there is one: the console offers it as a sign-in without a token. A
// request a proxy forwarded names no one (its connection is the proxy's).
func (a *Access) OSCaller(r *http.Request) (Caller, bool) {
	if _, _, ok := r.BasicAuth(); ok {
		return Caller{}, false
	}
	if _, ok := peerOf(r.Context()); !ok {
		return Caller{}, false
	}
	c := a.Authenticate(r)
	if c.Name == "anonymous" {
		return Caller{}, false
	}
	return c, true
}

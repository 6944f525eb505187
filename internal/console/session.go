package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// The console's session rules: a session ends after IdleTimeout without a
// request or MaxAge after sign-in, whichever comes first (a shared
// workstation on a ward is left signed in; a day's shift is at most 8 h).
const (
	IdleTimeout = 15 * time.Minute
	MaxAge      = 8 * time.Hour
	maxSessions = 1000
	cookieName  = "ehrbridge_console"
	// Failed sign-ins allowed per remote address in failWindow before the
	// form refuses for the rest of it.
	maxFailures = 10
	failWindow  = 5 * time.Minute
)

// session is one signed-in user. The caller is fixed at sign-in: a role
// taken away in the config ends with the next restart or sign-in.
type session struct {
	caller  logadmin.Caller
	csrf    string // sent back with every POST
	created time.Time
	seen    time.Time
}

// sessions is the in-memory session store: a restart signs everyone out.
// Sessions are held by the SHA-256 of their cookie, so a memory dump does
// not hand out live cookies.
type sessions struct {
	mu       sync.Mutex
	byHash   map[[32]byte]*session
	failures map[string][]time.Time // by remote host
	now      func() time.Time
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{byHash: map[[32]byte]*session{}, failures: map[string][]time.Time{}, now: now}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("console: no randomness: " + err.Error()) // crypto/rand never fails on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// start makes a session for c and returns its cookie value.
func (s *sessions) start(c logadmin.Caller) (string, *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expireLocked(now)
	if len(s.byHash) >= maxSessions {
		// The oldest goes: a flood of sign-ins cannot grow memory.
		var oldest [32]byte
		var t time.Time
		for h, ss := range s.byHash {
			if t.IsZero() || ss.seen.Before(t) {
				oldest, t = h, ss.seen
			}
		}
		delete(s.byHash, oldest)
	}
	id := randomToken()
	ss := &session{caller: c, csrf: randomToken(), created: now, seen: now}
	s.byHash[sha256.Sum256([]byte(id))] = ss
	return id, ss
}

// get returns the live session of a cookie value, touching it.
func (s *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.Sum256([]byte(id))
	ss := s.byHash[h]
	if ss == nil {
		return nil
	}
	now := s.now()
	if now.Sub(ss.seen) > IdleTimeout || now.Sub(ss.created) > MaxAge {
		delete(s.byHash, h)
		return nil
	}
	ss.seen = now
	return ss
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byHash, sha256.Sum256([]byte(id)))
}

func (s *sessions) expireLocked(now time.Time) {
	for h, ss := range s.byHash {
		if now.Sub(ss.seen) > IdleTimeout || now.Sub(ss.created) > MaxAge {
			delete(s.byHash, h)
		}
	}
}

// throttled says whether a remote address has used up its failed
// sign-ins; fail counts one more.
func (s *sessions) throttled(remote string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recentFailuresLocked(hostOf(remote))) >= maxFailures
}

func (s *sessions) fail(remote string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := hostOf(remote)
	s.failures[h] = append(s.recentFailuresLocked(h), s.now())
}

func (s *sessions) recentFailuresLocked(host string) []time.Time {
	now := s.now()
	kept := s.failures[host][:0]
	for _, t := range s.failures[host] {
		if now.Sub(t) < failWindow {
			kept = append(kept, t)
		}
	}
	if len(kept) == 0 {
		delete(s.failures, host)
		return nil
	}
	s.failures[host] = kept
	return kept
}

func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// csrfOK compares a submitted CSRF token with the session's in constant
// time.
func (ss *session) csrfOK(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) == 1
}

// sessionOf returns the request's live session, or nil.
func (c *Console) sessionOf(r *http.Request) (*session, string) {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return nil, ""
	}
	return c.sessions.get(ck.Value), ck.Value
}

func (c *Console) setCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: "/ui/", MaxAge: maxAge, HttpOnly: true,
		Secure: c.opts.TLS, SameSite: http.SameSiteStrictMode})
}

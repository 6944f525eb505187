package config

import (
	"net"
	"net/url"
	"strings"
)

// InsecureSetting is one plaintext connection the configuration allows
// with [InsecureKey]: Key is the opt-out ("sources.mllp[0].insecure_plaintext")
// and Excuses the setting it lets through ("sources.mllp[0].listen"). Only
// key paths: an address or URL could come from the environment, and a URL
// may carry credentials.
type InsecureSetting struct {
	Key     string `json:"key"`
	Excuses string `json:"excuses"`
}

// Insecure lists the plaintext connections the configuration allows with
// an opt-out, in file order; nil when it allows none. The daemon warns
// about each at start and lists them on /status.
func (c *Config) Insecure() []InsecureSetting {
	return append([]InsecureSetting(nil), c.insecure...)
}

// IsLoopback reports whether host (a name or an IP address, without port
// or brackets) is a loopback address: "localhost", 127.0.0.0/8 or ::1. An
// empty host, 0.0.0.0 and :: listen on every address and are not.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopback reports whether a host:port address is on a loopback address.
func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	return err == nil && IsLoopback(host)
}

// transport collects, for one section, the plaintext connections that its
// opt-out must excuse, to report each one that lacks it and an opt-out that
// excuses nothing.
type transport struct {
	v       *validator
	section string // e.g. "sources.mllp[0]"
	optOut  bool   // the section's insecure_plaintext
	used    bool
	idx     int // its entry in Config.insecure once used
}

// section starts the checks of the section at path whose opt-out is
// optOut.
func (v *validator) transport(section string, optOut bool) *transport {
	return &transport{v: v, section: section, optOut: optOut}
}

// key is the section's opt-out key.
func (t *transport) key() string { return joinPath(t.section, InsecureKey) }

// excuse records that the plaintext setting at path needs the opt-out,
// reporting a problem (with why and the secure fix) when it is not set.
func (t *transport) excuse(path, why, fix string) {
	if t.optOut {
		if !t.used {
			t.idx = len(t.v.c.insecure)
			t.v.c.insecure = append(t.v.c.insecure, InsecureSetting{Key: t.key(), Excuses: path})
		} else {
			t.v.c.insecure[t.idx].Excuses += ", " + path
		}
		t.used = true
		return
	}
	t.v.add(path, "%s: patient data would cross the network in clear; %s, or set %s: true to accept the risk", why, fix, t.key())
}

// listener checks a listen address served without TLS (tls false) or
// with it.
func (t *transport) listener(path, addr string, tls bool, fix string) {
	if addr == "" || tls || loopback(addr) {
		return
	}
	t.excuse(path, "plaintext listener on "+t.v.show(path, addr)+", which is not a loopback address", fix)
}

// url checks a URL the daemon connects to: http:// to a host that is not
// loopback needs the opt-out. Malformed URLs are left to the key's own
// check.
func (t *transport) url(path, raw string) {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || !strings.EqualFold(u.Scheme, "http") || u.Host == "" || IsLoopback(u.Hostname()) {
		return
	}
	t.excuse(path, "http:// URL to "+t.v.c.pos.show(path, quoteShort(u.Hostname()))+", which is not a loopback host", "use https://")
}

// done reports an opt-out that excuses nothing: left in place it would
// silently allow plaintext the day an address changes.
func (t *transport) done() {
	if t.optOut && !t.used {
		t.v.add(t.key(), "nothing in %s needs it (its addresses are loopback or use TLS): remove it", t.section)
	}
}

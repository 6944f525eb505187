package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
)

// validator collects the problems of the checks that run after decoding.
type validator struct {
	c     *Config
	base  string
	probs Problems
}

// add records a problem about the key at path.
func (v *validator) add(path, format string, args ...any) {
	v.probs = append(v.probs, v.c.pos.problem(path, format, args...))
}

// listener is an address something will listen on, to find two owners of
// the same port before the second bind fails at runtime.
type listener struct {
	path  string // e.g. "sources.mllp[0].listen"
	owner string // e.g. `source "adt"`
	addr  string
	host  string
	port  int
}

// validate checks values and cross-field rules. Values that are empty
// because decoding already reported them (a missing required key) are
// skipped so each mistake is reported once.
func (c *Config) validate(base string) Problems {
	v := &validator{c: c, base: base}

	if c.DataDir == "" {
		v.add("data_dir", "must not be empty")
	}
	v.oneOf("log.format", c.Log.Format, "text", "json")
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	if c.Log.Output == "" {
		v.add("log.output", `must not be empty (use "stderr", "stdout" or a file path)`)
	}

	var listeners []listener
	if strings.EqualFold(c.Admin.Listen, "off") {
		c.Admin.Listen = ""
	}
	adminT := v.transport("admin", c.Admin.InsecurePlaintext)
	if c.Admin.Listen != "" {
		if l, ok := v.listenAddr("admin.listen", "the admin server", c.Admin.Listen); ok {
			listeners = append(listeners, l)
			adminT.listener("admin.listen", l.addr, c.Admin.TLS != nil, "give admin.tls (cert_file, key_file), or listen on 127.0.0.1 and reach it through an SSH tunnel")
		}
	} else if c.Admin.TLS != nil {
		v.add("admin.tls", "admin.listen is off: there is no TCP listener to serve over TLS (the admin socket or pipe needs none)")
	}
	v.tlsServer("admin.tls", c.Admin.TLS)
	adminT.done()
	c.Admin.validate(v)

	c.Checkpoint.Validate(v.in("checkpoint"))

	if tz := c.Mappings.Timezone; tz != "" {
		if _, err := time.LoadLocation(tz); err != nil {
			v.add("mappings.timezone", "unknown time zone %s (use an IANA name such as America/Chicago)", v.show("mappings.timezone", tz))
		}
	}
	for i, p := range c.Mappings.Paths {
		if p == "" {
			v.add(fmt.Sprintf("mappings.paths[%d]", i), "must not be empty")
		}
	}

	names := map[string]string{} // name -> path of its first use
	// sourceName checks a source's name (at path p), unique across MLLP
	// and FHIR sources.
	sourceName := func(p, name string) {
		if name == "" {
			return
		}
		if msg := checkSourceName(name); msg != "" {
			v.add(p+".name", "invalid source name %s: %s", v.show(p+".name", name), msg)
		} else if first, dup := names[name]; dup {
			v.add(p+".name", "duplicate source name %s (first at %s)", v.show(p+".name", name), c.pos.where(first))
		} else {
			names[name] = p + ".name"
		}
	}
	for i := range c.Sources.MLLP {
		s := &c.Sources.MLLP[i]
		p := fmt.Sprintf("sources.mllp[%d]", i)
		sourceName(p, s.Name)
		tr := v.transport(p, s.InsecurePlaintext)
		if s.Listen != "" {
			if l, ok := v.listenAddr(p+".listen", "source "+v.show(p+".name", s.Name), s.Listen); ok {
				if other := conflict(listeners, l); other != nil {
					v.add(l.path, "address %s is already used by %s (%s)", v.show(l.path, l.addr), other.owner, v.at(other.path))
				}
				listeners = append(listeners, l)
				tr.listener(l.path, l.addr, s.TLS != nil, "give tls (cert_file, key_file), listen on a loopback address")
			}
		}
		tr.done()
		s.Validate(v.in(p))
		v.tlsServer(p+".tls", s.TLS)
	}
	for i := range c.Sources.FHIR {
		s := &c.Sources.FHIR[i]
		p := fmt.Sprintf("sources.fhir[%d]", i)
		sourceName(p, s.Name)
		if u, err := url.Parse(s.BaseURL); s.BaseURL != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
			v.add(p+".base_url", "must be the server's base URL like https://ehr.example/fhir/R4, got %s", v.show(p+".base_url", s.BaseURL))
		}
		s.FHIRSourceConfig.Validate(v.in(p))
		if s.Schedule == "" {
			s.Schedule = "@every 30s"
		}
		if _, err := ParseSchedule(s.Schedule); err != nil {
			v.add(p+".schedule", "%s is not a schedule: %v", v.show(p+".schedule", s.Schedule), err)
		}
		s.AuthConfig.Validate(v.in(p))
		tr := v.transport(p, s.InsecurePlaintext)
		tr.url(p+".base_url", s.BaseURL)
		tr.url(p+".smart_token_url", s.SMARTTokenURL)
		tr.done()
		if sub := s.Subscription; sub != nil {
			sp := p + ".subscription"
			str := v.transport(sp, sub.InsecurePlaintext)
			if sub.Listen != "" {
				if l, ok := v.listenAddr(sp+".listen", "the subscription endpoint of "+v.show(p+".name", s.Name), sub.Listen); ok {
					if other := conflict(listeners, l); other != nil {
						v.add(l.path, "address %s is already used by %s (%s)", v.show(l.path, l.addr), other.owner, v.at(other.path))
					}
					listeners = append(listeners, l)
					str.listener(l.path, l.addr, sub.TLS != nil, "give tls (cert_file, key_file), listen on a loopback address")
				}
			}
			str.done()
			if sub.Path == "" {
				sub.Path = "/fhir/notify"
			} else if !strings.HasPrefix(sub.Path, "/") {
				v.add(sp+".path", "must start with /, got %s", v.show(sp+".path", sub.Path))
			}
			if sub.Header == "" {
				sub.Header = "Authorization"
			} else if !httpHeaderRe.MatchString(sub.Header) {
				v.add(sp+".header", "%s is not an HTTP header name", v.show(sp+".header", sub.Header))
			}
			if !sub.Secret.IsSet() && (sub.TLS == nil || sub.TLS.ClientCAFile == "") {
				v.add(sp, "give secret_env or secret_file (the value the FHIR server sends in %s), or mutual TLS with tls.client_ca_file", sub.Header)
			}
			v.tlsServer(sp+".tls", sub.TLS)
		}
	}
	v.crm(&listeners)
	if wb := c.Writeback; wb != nil {
		if c.CRM == nil {
			v.add("writeback", "write-back reads notes from the CRM: configure crm as well")
		}
		if wb.Schedule == "" {
			wb.Schedule = "@every 30s"
		}
		if _, err := ParseSchedule(wb.Schedule); err != nil {
			v.add("writeback.schedule", "%s is not a schedule: %v (write a cron spec like \"*/1 * * * *\" or \"@every 30s\")", v.show("writeback.schedule", wb.Schedule), err)
		}
		targets := 0
		for _, set := range []bool{wb.Target.Dir != "", wb.Target.MLLP != "", wb.Target.FHIR != nil} {
			if set {
				targets++
			}
		}
		if targets > 1 {
			v.add("writeback.target", "give one of dir, mllp and fhir")
		}
		if f := wb.Target.FHIR; f != nil {
			f.FHIRTargetConfig.Validate(v.in("writeback.target.fhir"))
			tr := v.transport("writeback.target.fhir", f.InsecurePlaintext)
			tr.url("writeback.target.fhir.base_url", f.BaseURL)
			tr.url("writeback.target.fhir.smart_token_url", f.SMARTTokenURL)
			tr.done()
		}
		tr := v.transport("writeback.target", wb.Target.InsecurePlaintext)
		if wb.Target.MLLP != "" {
			if host, _, err := net.SplitHostPort(wb.Target.MLLP); err != nil {
				v.add("writeback.target.mllp", "must be host:port, got %s", v.show("writeback.target.mllp", wb.Target.MLLP))
			} else if wb.Target.TLS == nil && !IsLoopback(host) {
				tr.excuse("writeback.target.mllp", "plaintext MLLP to "+v.show("writeback.target.mllp", wb.Target.MLLP)+", which is not a loopback address", "give writeback.target.tls (ca_file; cert_file and key_file for mutual TLS)")
			}
		} else if wb.Target.TLS != nil {
			v.add("writeback.target.tls", "applies to writeback.target.mllp only")
		}
		tr.done()
		v.tlsClient("writeback.target.tls", wb.Target.TLS)
		switch b := wb.Target.MLLPMaxBackoff; {
		case b != 0 && wb.Target.MLLP == "":
			v.add("writeback.target.mllp_max_backoff", "applies to writeback.target.mllp only")
		case b == 0:
			wb.Target.MLLPMaxBackoff = Duration(30 * time.Second)
		case b < Duration(time.Second) || b > Duration(time.Hour):
			v.add("writeback.target.mllp_max_backoff", "must be between 1s and 1h")
		}
		switch r := wb.Target.Retention; {
		case r != 0 && (wb.Target.MLLP != "" || wb.Target.FHIR != nil):
			v.add("writeback.target.retention", "applies to writeback.target.dir (the file drop) only")
		case r != 0 && r < Duration(time.Hour):
			v.add("writeback.target.retention", "must be at least 1h (or 0: keep the files)")
		}
		switch n := wb.Target.AEMaxAttempts; {
		case n != 0 && wb.Target.MLLP == "":
			v.add("writeback.target.ae_max_attempts", "applies to writeback.target.mllp only")
		case n == 0:
			wb.Target.AEMaxAttempts = 10
		case n < 1 || n > 1000:
			v.add("writeback.target.ae_max_attempts", "must be between 1 and 1000, got %d", n)
		}
		v.readable("writeback.authors_file", wb.AuthorsFile)
		wb.Config.Validate(v.in("writeback"))
		v.readable("writeback.mdm_mapping", wb.MDMMapping)
	}
	return v.probs
}

// crm checks the CRM section.
func (v *validator) crm(listeners *[]listener) {
	c := v.c.CRM
	if c == nil {
		return
	}
	embed := c.Sandbox != nil && c.Sandbox.Embed
	named := 0
	for _, set := range []bool{c.Salesforce != nil, c.Dynamics != nil, c.Sandbox != nil} {
		if set {
			named++
		}
	}
	switch {
	case named == 0:
		v.add("crm", "name the CRM: salesforce (login_url, client_id and credentials), dynamics (url, tenant_id, client_id and a credential) or sandbox (embed: true, or the address of a running one)")
	case named > 1:
		v.add("crm", "give one of crm.salesforce, crm.dynamics and crm.sandbox")
	}
	if sb := c.Sandbox; sb != nil {
		sb.Validate(v.in("crm.sandbox"))
		addrs := []struct{ path, addr string }{{"crm.sandbox.listen", sb.Listen}}
		if sb.Flavor == sandbox.FlavorDataverse {
			addrs = append(addrs, struct{ path, addr string }{"crm.sandbox.tls_listen", sb.TLSListen})
		}
		tr := v.transport("crm.sandbox", sb.InsecurePlaintext)
		for _, a := range addrs {
			l, ok := v.listenAddr(a.path, "the CRM sandbox", a.addr)
			if ok && embed {
				if other := conflict(*listeners, l); other != nil {
					v.add(l.path, "address %s is already used by %s (%s)", v.show(l.path, l.addr), other.owner, v.at(other.path))
				}
				*listeners = append(*listeners, l)
			}
			if ok && a.path == "crm.sandbox.listen" {
				// Embedded, the sandbox listens there; apart, the
				// daemon connects there: plain HTTP either way.
				tr.listener(l.path, l.addr, false, "use a loopback address")
			}
		}
		tr.done()
	}
	if d := c.Dynamics; d != nil {
		d.Validate(v.in("crm.dynamics"))
	}
	if sf := c.Salesforce; sf != nil {
		sf.Validate(v.in("crm.salesforce"))
		tr := v.transport("crm.salesforce", sf.InsecurePlaintext)
		tr.url("crm.salesforce.login_url", sf.LoginURL)
		tr.done()
	}
	c.Pipeline.Validate(v.in("crm.pipeline"))
}

// in is the [configvalue.Reporter] of the section at path, for the
// Validate methods of the components' settings types.
func (v *validator) in(path string) configvalue.Reporter { return sectionReporter{v, path} }

// sectionReporter reports a component's problems at keys below its
// section, with the section's positions and environment hiding.
type sectionReporter struct {
	v    *validator
	path string
}

func (r sectionReporter) key(k string) string {
	if k == "" {
		return r.path
	}
	return joinPath(r.path, k)
}

// Add implements [configvalue.Reporter].
func (r sectionReporter) Add(k, format string, args ...any) { r.v.add(r.key(k), format, args...) }

// Show implements [configvalue.Reporter].
func (r sectionReporter) Show(k, text string) string { return r.v.c.pos.show(r.key(k), text) }

// Readable implements [configvalue.Reporter].
func (r sectionReporter) Readable(k, file string) { r.v.readable(r.key(k), file) }

// show quotes the string value at path for a message, or hides it if it
// came from the environment.
func (v *validator) show(path, value string) string {
	return v.c.pos.show(path, quoteShort(value))
}

// at describes where path was written, for messages about another key.
func (v *validator) at(path string) string {
	if _, ok := v.c.pos.m[path]; !ok {
		return "by default"
	}
	return "at " + v.c.pos.where(path)
}

// oneOf checks an enumerated setting.
func (v *validator) oneOf(path, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = strconv.Quote(a)
	}
	want := q[0]
	if len(q) > 1 {
		want = strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
	}
	if len(q) > 2 {
		want = "one of " + want
	}
	v.add(path, "must be %s, got %s", want, v.show(path, got))
}

// readable checks a file named in the config, resolved against the config
// file's directory; an empty path is left to the required-key check.
func (v *validator) readable(path, file string) {
	if file == "" {
		return
	}
	if msg := checkReadable(resolvePath(v.base, file)); msg != "" {
		v.add(path, "cannot read %s: %s", v.show(path, file), msg)
	}
}

// listenAddr parses a host:port listen address.
func (v *validator) listenAddr(path, owner, addr string) (listener, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		msg := err.Error()
		var ae *net.AddrError
		if errors.As(err, &ae) {
			msg = ae.Err
		}
		v.add(path, "invalid address %s: %s (want host:port, like :2575 or 127.0.0.1:2575)", v.show(path, addr), msg)
		return listener{}, false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || strings.ContainsAny(port, "+-") {
		v.add(path, "invalid address %s: the port must be a number from 0 to 65535", v.show(path, addr))
		return listener{}, false
	}
	return listener{path: path, owner: owner, addr: addr, host: host, port: n}, true
}

// conflict returns the listener among ls that l cannot bind next to: the
// same port on the same host or where either side listens on every
// address. Port 0 never conflicts since the kernel picks a free port.
func conflict(ls []listener, l listener) *listener {
	if l.port == 0 {
		return nil
	}
	for i := range ls {
		o := &ls[i]
		if o.port == l.port && (strings.EqualFold(o.host, l.host) || isWildcard(o.host) || isWildcard(l.host)) {
			return o
		}
	}
	return nil
}

// isWildcard reports whether host means "every local address".
func isWildcard(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

// checkSourceName returns why name cannot be a source name, or "" if it
// can. Names end up in record keys, so they are kept to a small alphabet
// that needs no escaping anywhere.
func checkSourceName(name string) string {
	const rule = `use lowercase letters, digits, "_" and "-", starting with a letter or digit`
	if len(name) > 64 {
		return "at most 64 characters"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return rule
		}
	}
	return ""
}

// httpHeaderRe is an HTTP header name.
var httpHeaderRe = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]{1,128}$`)

// tlsServer checks a listener's TLS section (nil: none).
func (v *validator) tlsServer(p string, t *TLSServer) {
	if t == nil {
		return
	}
	v.readable(p+".cert_file", t.CertFile)
	v.readable(p+".key_file", t.KeyFile)
	v.readable(p+".client_ca_file", t.ClientCAFile)
	if len(t.AllowedClients) > 0 && t.ClientCAFile == "" {
		v.add(p+".allowed_clients", "needs client_ca_file: without mutual TLS no client presents a certificate")
	}
	for i, name := range t.AllowedClients {
		if name == "" || strings.ContainsAny(name, "*?") {
			ip := fmt.Sprintf("%s.allowed_clients[%d]", p, i)
			v.add(ip, "%s: give a certificate's exact subject common name or DNS or URI name (no wildcards)", v.show(ip, name))
		}
	}
	v.oneOf(p+".min_version", t.MinVersion, "1.2", "1.3")
	if t.KeyPassphrase.IsSet() {
		key := p + ".key_passphrase_env"
		if t.KeyPassphrase.File != "" {
			key = p + ".key_passphrase_file"
		}
		// Reserved: the daemon cannot decrypt keys yet, and lint
		// must not pass a config that run would refuse.
		v.add(key, "encrypted private keys are not supported yet: store the key unencrypted, readable only by the service account")
	}
}

// tlsClient checks an outgoing connection's TLS section (nil: none).
func (v *validator) tlsClient(p string, t *TLSClient) {
	if t == nil {
		return
	}
	v.readable(p+".ca_file", t.CAFile)
	v.readable(p+".cert_file", t.CertFile)
	v.readable(p+".key_file", t.KeyFile)
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.add(p, "mutual TLS needs both cert_file and key_file")
	}
	v.oneOf(p+".min_version", t.MinVersion, "1.2", "1.3")
}

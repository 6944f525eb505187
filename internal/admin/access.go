package admin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// newAccess builds the admin endpoint's access policy from the config:
// roles of local OS users and groups, named accounts (their tokens
// resolved now), root and the daemon's own user trusted.
func newAccess(cfg *config.Config, audit *logadmin.Audit) (*logadmin.Access, error) {
	a := &logadmin.Access{Users: map[string]logadmin.Perm{}, Groups: map[string]logadmin.Perm{},
		Trusted: map[uint32]bool{0: true, uint32(os.Geteuid()): true}, TrustedSIDs: trustedSIDs(), PublicCounts: cfg.Admin.PublicCounts, Audit: audit}
	for _, r := range cfg.Admin.Roles {
		p, ok := logadmin.RolePerm(r.Role)
		if !ok {
			return nil, fmt.Errorf("admin.roles: unknown role %q", r.Role)
		}
		if r.User != "" {
			a.Users[r.User] |= p
		} else {
			a.Groups[r.Group] |= p
		}
	}
	for _, acc := range cfg.Admin.Accounts {
		tok, err := acc.Token.Resolve()
		if err != nil {
			return nil, fmt.Errorf("admin account %s: %w", acc.Name, err)
		}
		ac, err := logadmin.NewAccount(acc.Name, acc.Role, tok)
		if err != nil {
			return nil, err
		}
		a.Accounts = append(a.Accounts, ac)
	}
	return a, nil
}

// warnLegacyToken warns while the shared admin token file of releases
// before issue 28 is still in the data directory: it is no longer read.
func warnLegacyToken(dataDir string, log *slog.Logger) {
	if _, err := os.Stat(filepath.Join(dataDir, logadmin.TokenFileName)); err == nil {
		log.Warn("the shared admin token file is no longer read: local callers use the admin socket, TCP callers admin.accounts; remove the file",
			"file", logadmin.TokenFileName)
	}
}

// gate serves full to callers with the viewer role; callers without one
// get counts (PublicCounts) or a refusal, audited; wrong credentials are
// refused even with PublicCounts, so that their holder learns of it. Allowed reads are not
// audited: they show counts and states, no record's content, and a
// monitoring agent polls them.
func (a *Server) gate(action string, full, counts http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := a.access.Authenticate(r)
		switch {
		case c.Perm&logadmin.PermView != 0:
			full(w, r)
		case a.access.PublicCounts && counts != nil && !c.BadCredentials:
			counts(w, r)
		default:
			a.access.Refuse(w, r, action, "", logadmin.PermView)
		}
	}
}

// statusCounts is /status for callers without a role when public_counts
// is set: record counts, per-source counters and health, no addresses,
// URLs, mapping names or error texts.
func (a *Server) statusCounts(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Version    string              `json:"version"`
		CountsOnly bool                `json:"counts_only"`
		Checkpoint *logadmin.StatsView `json:"checkpoint,omitempty"`
		Commits    commitStatus        `json:"checkpoint_commits"`
		Storage    struct {
			Writable bool `json:"writable"`
		} `json:"storage"`
		Breaker string `json:"crm_breaker,omitempty"`
	}{Version: a.version, CountsOnly: true, Commits: commitStatusOf(a.cp.CommitStats())}
	out.Storage.Writable = a.st.StorageProblem() == ""
	if st, err := a.cp.Stats(); err == nil {
		v := logadmin.StatsViewOf(st, time.Now())
		out.Checkpoint = &v
	}
	if c := a.st.CRM(); c != nil {
		out.Breaker = breakerStatusOf(c.Breaker).State
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

// pageCounts is the status page for callers without a role when
// public_counts is set: the record counts only.
func (a *Server) pageCounts(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	var data pageData
	if st, err := a.cp.Stats(); err == nil {
		data = pageDataOf(st, 0)
	}
	data.Version, data.Forwarding, data.CountsOnly = a.version, "(counts only: sign in for details)", true
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = pageTmpl.Execute(w, data)
}

// connContext marks a connection with its caller's OS identity when the
// kernel can tell it: the admin socket (SO_PEERCRED) or, on Linux, a
// loopback TCP connection (the owner of its client end).
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn() // the OS identity of the TCP connection under it
	}
	if p, ok := connPeer(c); ok {
		return logadmin.WithPeer(ctx, p)
	}
	return ctx
}

// errNoSocket: the platform serves no admin socket.
var errNoSocket = errors.New("the admin socket is served on Linux and Windows (a named pipe) only")

// New makes the admin endpoint: TCP (admin.listen) and the admin socket
// (admin.socket), or nil when both are off. The default socket is skipped
// with a warning when it cannot be made (a read-only data directory, a
// path too long for a socket); one configured explicitly, or with a
// socket_group, must work. It binds; Serve serves.
func New(opts Options) (*Server, error) {
	cfg, log := opts.Config, opts.Logger
	warnLegacyToken(cfg.DataDir, log)
	sockPath := cfg.Admin.SocketPath(cfg.DataDir)
	if cfg.Admin.Listen == "" && sockPath == "" {
		return nil, nil
	}
	access, err := newAccess(cfg, logadmin.NewAudit(cfg.DataDir))
	if err != nil {
		return nil, err
	}
	var sock net.Listener
	if sockPath != "" {
		sock, err = listenAdminSocket(sockPath, cfg.Admin.SocketGroup)
		switch {
		case err == nil:
		case errors.Is(err, errNoSocket):
			if cfg.Admin.Socket != "" {
				log.Warn("admin.socket is set but " + errNoSocket.Error() + "; use admin.accounts over TCP")
			}
		case cfg.Admin.Socket != "" || cfg.Admin.SocketGroup != "":
			// Asked for by name: a socket the configured group cannot
			// reach would leave its members out silently.
			return nil, err
		default:
			log.Warn("the admin socket is not served; local callers need admin.accounts over TCP", "problem", err.Error())
		}
	}
	if cfg.Admin.Listen == "" && sock == nil {
		return nil, nil
	}
	var tc *tls.Config
	if cfg.Admin.Listen != "" {
		tc = opts.TLS
	}
	a, err := newServer(cfg.Admin.Listen, tc, sock, opts, access, logadmin.APIWithLaneKeys(opts.Log, access, laneKeys(opts.Mappings)))
	if err != nil {
		if sock != nil {
			sock.Close()
		}
		return nil, err
	}
	return a, nil
}

// LogListening says where the admin endpoint serves.
func (a *Server) LogListening(log *slog.Logger) {
	attrs := []any{}
	if a.l != nil {
		attrs = append(attrs, "listen", a.l.Addr().String(), "tls", a.tls)
	}
	if a.sock != nil {
		attrs = append(attrs, "socket", a.sock.Addr().String())
	}
	log.Info("admin endpoint listening", attrs...)
}

// laneKeys gives the log API the running set's forms of a patient's lane
// key, nil without a set.
func laneKeys(set func() *mappings.Set) func(authority, mrn string) []string {
	if set == nil {
		return nil
	}
	return func(authority, mrn string) []string { return set().PatientLaneKeys(authority, mrn) }
}

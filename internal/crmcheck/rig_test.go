package crmcheck_test

import (
	"context"
	"encoding/pem"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/crmcheck"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
)

// rig is the sandbox served on a free loopback port, recording every
// request's method and path.
type rig struct {
	sb  *sandbox.Server
	srv *httptest.Server

	mu   sync.Mutex
	reqs []string
}

func newRig(t *testing.T, opts sandbox.Options, withTLS bool) *rig {
	t.Helper()
	return newRigWrapped(t, opts, withTLS, nil)
}

// newRigWrapped serves the sandbox through wrap (fault injection).
func newRigWrapped(t *testing.T, opts sandbox.Options, withTLS bool, wrap func(http.Handler) http.Handler) *rig {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s, err := sandbox.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{sb: s}
	h := s.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	rec := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs = append(r.reqs, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	})
	if withTLS {
		r.srv = httptest.NewTLSServer(rec)
	} else {
		r.srv = httptest.NewServer(rec)
	}
	t.Cleanup(func() {
		r.srv.Close()
		_ = s.Close()
	})
	return r
}

func (r *rig) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

// certPEM is the TLS server's certificate, for crm.dynamics.ca_file.
func (r *rig) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw})
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// writeFile writes data to dir/name and returns the path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// copySet copies a shipped mapping set (with its code tables) to a new
// directory and returns it.
func copySet(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("..", "..", "configs", "mappings", name)
	dst := filepath.Join(t.TempDir(), name)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// edit replaces old (which must occur) with new in file.
func edit(t *testing.T, file, old, new string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s has no %q", file, old)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// posOf is file:line:col of the first occurrence of s in file (1-based).
func posOf(t *testing.T, file, s string) (line, col int) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		if c := strings.Index(l, s); c >= 0 {
			return i + 1, c + 1
		}
	}
	t.Fatalf("%s has no %q", file, s)
	return 0, 0
}

// config writes a config naming crmYAML (the crm section's body,
// indented by two spaces) and the mapping paths, with write-back to a
// file drop, and loads it.
func loadConfig(t *testing.T, dir, crmYAML string, mappingPaths ...string) *config.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString("data_dir: " + filepath.Join(dir, "data") + "\nadmin:\n  listen: \"off\"\n")
	if len(mappingPaths) > 0 {
		b.WriteString("mappings:\n  paths: [" + strings.Join(mappingPaths, ", ") + "]\n")
	}
	b.WriteString("crm:\n" + crmYAML)
	b.WriteString("writeback:\n  target:\n    dir: " + filepath.Join(dir, "outbox") + "\n")
	p := writeFile(t, dir, "ehrbridge.yaml", []byte(b.String()))
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	return cfg
}

func run(t *testing.T, cfg *config.Config) *crmcheck.Report {
	t.Helper()
	r, err := crmcheck.Run(context.Background(), cfg, crmcheck.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// find returns the items matching object, field and check ("" matches any).
func find(r *crmcheck.Report, object, field, check string) []crmcheck.Item {
	var out []crmcheck.Item
	for _, it := range r.Checks {
		if (object == "" || it.Object == object) && (field == "" || it.Field == field) && (check == "" || it.Check == check) {
			out = append(out, it)
		}
	}
	return out
}

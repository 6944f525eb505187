package logadmin

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// TokenFileName holds the admin API token inside the data directory.
const TokenFileName = "admin.token"

// EnsureToken returns the data directory's admin token, creating it (mode
// 0600) on first use so that it stays the same across restarts.
func EnsureToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, TokenFileName)
	if tok, err := ReadToken(dataDir); err == nil {
		return tok, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing admin token: %w", err)
	}
	return tok, nil
}

// ReadToken reads the admin token of a data directory.
func ReadToken(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, TokenFileName))
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", errors.New("admin token file is empty")
	}
	return tok, nil
}

// Handler serves the log API under /api/v1/log/ for a daemon, every call
// authenticated with the token.
func Handler(log *checkpoint.Log, audit *Audit, token string) http.Handler {
	mux := http.NewServeMux()
	svc := func(r *http.Request) *Local { return &Local{Log: log, Audit: audit, Via: "api", Remote: r.RemoteAddr} }
	mux.HandleFunc("GET /api/v1/log/stats", func(w http.ResponseWriter, r *http.Request) {
		v, err := svc(r).Stats()
		reply(w, v, err)
	})
	mux.HandleFunc("GET /api/v1/log/list", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
		limit, err := strconv.Atoi(q.Get("limit"))
		if err != nil || limit <= 0 || limit > 10000 {
			limit = 100
		}
		recs, confs, err := svc(r).List(q.Get("state"), after, limit)
		reply(w, listReply{Records: recs, Conflicts: confs}, err)
	})
	mux.HandleFunc("GET /api/v1/log/records/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if ok {
			v, err := svc(r).Show(id, r.URL.Query().Get("reveal") == "1")
			reply(w, v, err)
		}
	})
	mux.HandleFunc("GET /api/v1/log/conflicts/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if ok {
			v, err := svc(r).ShowConflict(id, r.URL.Query().Get("reveal") == "1")
			reply(w, v, err)
		}
	})
	mux.HandleFunc("POST /api/v1/log/records/{id}/retry", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if ok {
			reply(w, map[string]uint64{"requeued": id}, svc(r).Retry(id))
		}
	})
	mux.HandleFunc("GET /api/v1/log/backup", func(w http.ResponseWriter, r *http.Request) {
		// The copy holds every payload (as stored): audited like a reveal.
		if err := audit.Record("backup", "checkpoint log", "api", r.RemoteAddr); err != nil {
			writeJSON(w, http.StatusInternalServerError, errorReply{Error: "the audit log cannot be written; no backup"})
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if _, err := log.Backup(w); err != nil {
			// Headers are gone: cut the body short so the client sees an
			// incomplete copy (its length will not match).
			panic(http.ErrAbortHandler)
		}
	})
	mux.HandleFunc("POST /api/v1/log/retry-dead", func(w http.ResponseWriter, r *http.Request) {
		n, err := svc(r).RetryAllDead()
		reply(w, map[string]int{"requeued": n}, err)
	})
	mux.HandleFunc("POST /api/v1/log/retry-skipped", func(w http.ResponseWriter, r *http.Request) {
		n, gone, err := svc(r).RetrySkipped(r.URL.Query().Get("type"))
		reply(w, map[string]int{"requeued": n, "payload_gone": gone}, err)
	})
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			writeJSON(w, http.StatusUnauthorized, errorReply{Error: "missing or wrong admin token (see admin.token in the data directory)"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

type listReply struct {
	Records   []RecordView   `json:"records,omitempty"`
	Conflicts []ConflictView `json:"conflicts,omitempty"`
}

type errorReply struct {
	Error string `json:"error"`
	Kind  string `json:"kind,omitempty"`
}

func pathID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorReply{Error: "record id must be a number"})
		return 0, false
	}
	return id, true
}

func reply(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case errors.Is(err, checkpoint.ErrNotFound):
		writeJSON(w, http.StatusNotFound, errorReply{Error: err.Error(), Kind: "not_found"})
	case errors.Is(err, checkpoint.ErrTransition):
		writeJSON(w, http.StatusConflict, errorReply{Error: err.Error(), Kind: "transition"})
	case errors.Is(err, checkpoint.ErrPayloadGone):
		writeJSON(w, http.StatusConflict, errorReply{Error: err.Error(), Kind: "payload_gone"})
	default:
		writeJSON(w, http.StatusInternalServerError, errorReply{Error: err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Client calls a running daemon's log API.
type Client struct {
	BaseURL string // http://host:port
	Token   string
	HTTP    *http.Client
}

var _ Service = (*Client)(nil)

func (c *Client) do(method, path string, q url.Values, out any) error {
	u := strings.TrimSuffix(c.BaseURL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("asking the running daemon: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e errorReply
		_ = json.Unmarshal(body, &e)
		msg := e.Error
		if msg == "" {
			msg = resp.Status
		}
		switch e.Kind {
		case "not_found":
			return fmt.Errorf("%w (%s)", checkpoint.ErrNotFound, msg)
		case "transition":
			return fmt.Errorf("%w (%s)", checkpoint.ErrTransition, msg)
		case "payload_gone":
			return fmt.Errorf("%w (%s)", checkpoint.ErrPayloadGone, msg)
		}
		return fmt.Errorf("daemon: %s", msg)
	}
	return json.NewDecoder(bytes.NewReader(body)).Decode(out)
}

// Backup streams a consistent copy of the running daemon's log into w.
func (c *Client) Backup(w io.Writer) (int64, error) {
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(c.BaseURL, "/")+"/api/v1/log/backup", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{} // no timeout: a large log takes a while
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("asking the running daemon: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e errorReply
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		return 0, fmt.Errorf("daemon: %s %s", resp.Status, e.Error)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("the copy was cut short: %w", err)
	}
	return n, nil
}

// Stats implements Service.
func (c *Client) Stats() (StatsView, error) {
	var v StatsView
	return v, c.do("GET", "/api/v1/log/stats", nil, &v)
}

// List implements Service.
func (c *Client) List(state string, after uint64, limit int) ([]RecordView, []ConflictView, error) {
	var v listReply
	err := c.do("GET", "/api/v1/log/list", url.Values{"state": {state}, "after": {strconv.FormatUint(after, 10)}, "limit": {strconv.Itoa(limit)}}, &v)
	return v.Records, v.Conflicts, err
}

// Show implements Service.
func (c *Client) Show(id uint64, reveal bool) (RecordView, error) {
	var v RecordView
	return v, c.do("GET", fmt.Sprintf("/api/v1/log/records/%d", id), revealQuery(reveal), &v)
}

// ShowConflict implements Service.
func (c *Client) ShowConflict(id uint64, reveal bool) (ConflictView, error) {
	var v ConflictView
	return v, c.do("GET", fmt.Sprintf("/api/v1/log/conflicts/%d", id), revealQuery(reveal), &v)
}

// Retry implements Service.
func (c *Client) Retry(id uint64) error {
	var v map[string]uint64
	return c.do("POST", fmt.Sprintf("/api/v1/log/records/%d/retry", id), nil, &v)
}

// RetryAllDead implements Service.
func (c *Client) RetryAllDead() (int, error) {
	var v map[string]int
	err := c.do("POST", "/api/v1/log/retry-dead", nil, &v)
	return v["requeued"], err
}

// RetrySkipped implements Service.
func (c *Client) RetrySkipped(typ string) (int, int, error) {
	var v map[string]int
	var q url.Values
	if typ != "" {
		q = url.Values{"type": {typ}}
	}
	err := c.do("POST", "/api/v1/log/retry-skipped", q, &v)
	return v["requeued"], v["payload_gone"], err
}

func revealQuery(reveal bool) url.Values {
	if reveal {
		return url.Values{"reveal": {"1"}}
	}
	return nil
}

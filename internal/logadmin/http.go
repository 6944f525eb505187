package logadmin

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// TokenFileName is the shared admin token file ehrbridge wrote before
// issue 28. It is no longer read: local callers use the admin socket,
// TCP callers named accounts. The daemon warns while the file exists.
const TokenFileName = "admin.token"

// API serves the log API under /api/v1/log/ for a daemon. Every call is
// audited with its caller, refusals included; each needs a permission:
// reading (stats, list, show) PermView, retrying PermOperate, revealing a
// payload or taking a backup PermReveal.
func API(log *checkpoint.Log, access *Access) http.Handler {
	mux := http.NewServeMux()
	svc := func(r *http.Request) *Local {
		l := &Local{Log: log, Audit: access.Audit, Via: "api", Remote: r.RemoteAddr, Audited: true}
		if c, ok := CallerOf(r); ok {
			l.Via = c.Via
		}
		return l
	}
	guard := func(pattern, action string, need Perm, object func(*http.Request) string, h http.HandlerFunc) {
		mux.Handle(pattern, access.Guard(action, need, object, h))
	}
	// reveal=1 raises a show to a reveal: its own action and permission.
	show := func(pattern, kind string, h http.HandlerFunc) {
		object := func(r *http.Request) string { return kind + " " + r.PathValue("id") }
		view, reveal := access.Guard("show", PermView, object, h), access.Guard("reveal", PermReveal, object, h)
		mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("reveal") == "1" {
				reveal.ServeHTTP(w, r)
				return
			}
			view.ServeHTTP(w, r)
		}))
	}
	guard("GET /api/v1/log/stats", "stats", PermView, nil, func(w http.ResponseWriter, r *http.Request) {
		v, err := svc(r).Stats()
		reply(w, v, err)
	})
	guard("GET /api/v1/log/list", "list", PermView, func(r *http.Request) string { return "state " + r.URL.Query().Get("state") },
		func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
			limit, err := strconv.Atoi(q.Get("limit"))
			if err != nil || limit <= 0 || limit > 10000 {
				limit = 100
			}
			recs, confs, err := svc(r).List(q.Get("state"), after, limit)
			reply(w, listReply{Records: recs, Conflicts: confs}, err)
		})
	show("GET /api/v1/log/records/{id}", "record", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if ok {
			v, err := svc(r).Show(id, r.URL.Query().Get("reveal") == "1")
			reply(w, v, err)
		}
	})
	show("GET /api/v1/log/conflicts/{id}", "conflict", func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if ok {
			v, err := svc(r).ShowConflict(id, r.URL.Query().Get("reveal") == "1")
			reply(w, v, err)
		}
	})
	guard("POST /api/v1/log/records/{id}/retry", "retry", PermOperate, func(r *http.Request) string { return "record " + r.PathValue("id") },
		func(w http.ResponseWriter, r *http.Request) {
			id, ok := pathID(w, r)
			if ok {
				reply(w, map[string]uint64{"requeued": id}, svc(r).Retry(id))
			}
		})
	// The copy holds every payload (as stored): a reveal's permission.
	guard("GET /api/v1/log/backup", "backup", PermReveal, func(*http.Request) string { return "checkpoint log" },
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			if _, err := log.Backup(w); err != nil {
				// Headers are gone: cut the body short so the client sees
				// an incomplete copy (its length will not match).
				panic(http.ErrAbortHandler)
			}
		})
	guard("POST /api/v1/log/retry-dead", "retry-dead", PermOperate, func(*http.Request) string { return "dead records" },
		func(w http.ResponseWriter, r *http.Request) {
			n, err := svc(r).RetryAllDead()
			reply(w, map[string]int{"requeued": n}, err)
		})
	guard("POST /api/v1/log/retry-skipped", "retry-skipped", PermOperate,
		func(r *http.Request) string { return "skipped records " + r.URL.Query().Get("type") },
		func(w http.ResponseWriter, r *http.Request) {
			n, gone, err := svc(r).RetrySkipped(r.URL.Query().Get("type"))
			reply(w, map[string]int{"requeued": n, "payload_gone": gone}, err)
		})
	// Anything else under the prefix: still audited, as a refusal when
	// the caller holds no role, else as the 404 it is.
	mux.Handle("/api/v1/log/", access.Guard("unknown", PermView, func(r *http.Request) string { return r.Method + " " + r.URL.Path },
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusNotFound, errorReply{Error: "no such call", Kind: "not_found"})
		})))
	return mux
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

// The daemon's refusals, as the Client returns them.
var (
	// ErrUnauthorized: the call carried no identity the daemon knows (no
	// account, a wrong token, not a local caller it can name).
	ErrUnauthorized = errors.New("the daemon does not know the caller")
	// ErrForbidden: the caller holds no role for the call.
	ErrForbidden = errors.New("the daemon refused")
)

// Client calls a running daemon's log API.
type Client struct {
	BaseURL string // http://host:port; with Socket, any http:// URL
	// Socket is the admin socket's path: when set, requests go there and
	// the daemon knows the caller from the OS.
	Socket string
	// Account and Secret are an admin account's name and token (HTTP
	// Basic), for TCP.
	Account, Secret string
	// TLS configures an https:// BaseURL (nil: the system's roots).
	TLS  *tls.Config
	HTTP *http.Client
}

// httpClient is the client to send with: c.HTTP, or one over the socket
// when Socket is set, with timeout (0: none).
func (c *Client) httpClient(timeout time.Duration) *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	hc := &http.Client{Timeout: timeout}
	if c.Socket != "" {
		path := c.Socket
		hc.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialLocal(ctx, path)
		}}
	} else if c.TLS != nil {
		hc.Transport = &http.Transport{TLSClientConfig: c.TLS, Proxy: http.ProxyFromEnvironment}
	}
	return hc
}

func (c *Client) authorize(req *http.Request) {
	if c.Account != "" {
		req.SetBasicAuth(c.Account, c.Secret)
	}
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
	c.authorize(req)
	hc := c.httpClient(30 * time.Second)
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
		case "unauthorized":
			return fmt.Errorf("%w: %s", ErrUnauthorized, msg)
		case "forbidden":
			return fmt.Errorf("%w: %s", ErrForbidden, msg)
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
	c.authorize(req)
	hc := c.httpClient(0) // no timeout: a large log takes a while
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

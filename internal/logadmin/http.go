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
func API(log *checkpoint.Log, access *Access) http.Handler { return APIWithLaneKeys(log, access, nil) }

// APIWithLaneKeys is API whose patient searches also try the lane keys
// laneKeys gives (the running mapping set's: Local.LaneKeys).
func APIWithLaneKeys(log *checkpoint.Log, access *Access, laneKeys func(authority, mrn string) []string) http.Handler {
	mux := http.NewServeMux()
	svc := func(r *http.Request) *Local {
		l := &Local{Log: log, Audit: access.Audit, Via: "api", Remote: r.RemoteAddr, Audited: true, LaneKeys: laneKeys}
		if c, ok := CallerOf(r); ok {
			l.Via, l.Caller = c.Via, c
		}
		return l
	}
	caller := func(r *http.Request) Caller {
		c, _ := CallerOf(r)
		return c
	}
	recordObject := func(r *http.Request) string { return "record " + r.PathValue("id") }
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
				reply(w, map[string]uint64{"requeued": id}, svc(r).RetryBy(caller(r), id))
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
			n, err := svc(r).RetryAllDeadBy(caller(r))
			reply(w, map[string]int{"requeued": n}, err)
		})
	guard("POST /api/v1/log/retry-skipped", "retry-skipped", PermOperate,
		func(r *http.Request) string { return "skipped records " + r.URL.Query().Get("type") },
		func(w http.ResponseWriter, r *http.Request) {
			n, gone, err := svc(r).RetrySkipped(r.URL.Query().Get("type"))
			reply(w, map[string]int{"requeued": n, "payload_gone": gone}, err)
		})
	// The message browser (browse.go). A find's patient goes in the body,
	// never in the URL; its audit line names the filters, not the patient.
	guard("POST /api/v1/log/find", "find", PermView, func(r *http.Request) string {
		q, _ := peekFind(r)
		return q.object()
	}, func(w http.ResponseWriter, r *http.Request) {
		q, err := peekFind(r)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorReply{Error: err.Error()})
			return
		}
		v, err := svc(r).Find(caller(r), q)
		reply(w, v, err)
	})
	guard("GET /api/v1/log/records/{id}/trace", "trace", PermView, recordObject, func(w http.ResponseWriter, r *http.Request) {
		if id, ok := pathID(w, r); ok {
			v, err := svc(r).Trace(caller(r), id)
			reply(w, v, err)
		}
	})
	guard("POST /api/v1/log/retry", "retry", PermOperate, func(r *http.Request) string {
		var b retryBody
		_ = peekJSON(r, &b)
		return idsObject(b.IDs)
	}, func(w http.ResponseWriter, r *http.Request) {
		var b retryBody
		if err := peekJSON(r, &b); err != nil {
			writeJSON(w, http.StatusBadRequest, errorReply{Error: err.Error()})
			return
		}
		v, err := svc(r).RetryIDs(caller(r), b.IDs)
		reply(w, v, err)
	})
	guard("POST /api/v1/log/records/{id}/close", "close", PermOperate, recordObject, func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		var b closeBody
		if err := peekJSON(r, &b); err != nil {
			writeJSON(w, http.StatusBadRequest, errorReply{Error: err.Error()})
			return
		}
		reply(w, map[string]uint64{"closed": id}, svc(r).CloseRecord(caller(r), id, b.Reason))
	})
	guard("POST /api/v1/log/records/{id}/release", "release", PermOperate, recordObject, func(w http.ResponseWriter, r *http.Request) {
		if id, ok := pathID(w, r); ok {
			reply(w, map[string]uint64{"released": id}, svc(r).Release(caller(r), id))
		}
	})
	guard("POST /api/v1/log/conflicts/{id}/resolve", "resolve", PermOperate,
		func(r *http.Request) string {
			var b resolveBody
			_ = peekJSON(r, &b)
			return "conflict " + r.PathValue("id") + " " + b.Resolution
		}, func(w http.ResponseWriter, r *http.Request) {
			id, ok := pathID(w, r)
			if !ok {
				return
			}
			var b resolveBody
			if err := peekJSON(r, &b); err != nil {
				writeJSON(w, http.StatusBadRequest, errorReply{Error: err.Error()})
				return
			}
			if b.Resolution != "keep" && b.Resolution != "accept" {
				writeJSON(w, http.StatusBadRequest, errorReply{Error: `resolution must be "keep" or "accept"`})
				return
			}
			v, err := svc(r).ResolveConflict(caller(r), id, b.Resolution == "accept")
			reply(w, v, err)
		})
	// Anything else under the prefix: still audited, as a refusal when
	// the caller holds no role, else as the 404 it is.
	mux.Handle("/api/v1/log/", access.Guard("unknown", PermView, func(r *http.Request) string { return r.Method + " " + r.URL.Path },
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusNotFound, errorReply{Error: "no such call", Kind: "not_found"})
		})))
	return mux
}

type retryBody struct {
	IDs []uint64 `json:"ids"`
}

type closeBody struct {
	Reason string `json:"reason"`
}

type resolveBody struct {
	Resolution string `json:"resolution"` // keep, accept
}

// maxBody bounds a request body of the log API.
const maxBody = 1 << 20

// peekJSON decodes a request's JSON body and leaves it in place, so that
// the guard (naming the call's object) and the handler both read it.
func peekJSON(r *http.Request, v any) error {
	if r.Body == nil {
		return errors.New("the call needs a JSON body")
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return err
	}
	if len(b) > maxBody {
		return errors.New("request body too large")
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	if err := json.Unmarshal(b, v); err != nil {
		return errors.New("the body is not the JSON this call takes")
	}
	return nil
}

func peekFind(r *http.Request) (FindRequest, error) {
	var q FindRequest
	err := peekJSON(r, &q)
	return q, err
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
	case errors.Is(err, ErrBadRequest):
		writeJSON(w, http.StatusBadRequest, errorReply{Error: err.Error(), Kind: "bad_request"})
	case errors.Is(err, ErrForbidden):
		writeJSON(w, http.StatusForbidden, errorReply{Error: err.Error(), Kind: "forbidden"})
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
	// ErrBadRequest: the call's arguments are wrong (an unknown state, no
	// reason to close a record with).
	ErrBadRequest = errors.New("bad request")
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
	return c.send(method, path, q, nil, out)
}

// doBody sends body as JSON.
func (c *Client) doBody(method, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return c.send(method, path, nil, b, out)
}

func (c *Client) send(method, path string, q url.Values, body []byte, out any) error {
	u := strings.TrimSuffix(c.BaseURL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.authorize(req)
	hc := c.httpClient(30 * time.Second)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("asking the running daemon: %w", err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, 256<<20))
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
		case "bad_request":
			return fmt.Errorf("%w: %s", ErrBadRequest, msg)
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

// Find implements Service.
func (c *Client) Find(_ Caller, q FindRequest) (FindView, error) {
	var v FindView
	return v, c.doBody("POST", "/api/v1/log/find", q, &v)
}

// Trace implements Service.
func (c *Client) Trace(_ Caller, id uint64) (TraceView, error) {
	var v TraceView
	return v, c.do("GET", fmt.Sprintf("/api/v1/log/records/%d/trace", id), nil, &v)
}

// RetryIDs implements Service.
func (c *Client) RetryIDs(_ Caller, ids []uint64) (RetryView, error) {
	var v RetryView
	return v, c.doBody("POST", "/api/v1/log/retry", retryBody{IDs: ids}, &v)
}

// CloseRecord implements Service.
func (c *Client) CloseRecord(_ Caller, id uint64, reason string) error {
	var v map[string]uint64
	return c.doBody("POST", fmt.Sprintf("/api/v1/log/records/%d/close", id), closeBody{Reason: reason}, &v)
}

// ResolveConflict implements Service.
func (c *Client) ResolveConflict(_ Caller, id uint64, accept bool) (ConflictView, error) {
	b := resolveBody{Resolution: "keep"}
	if accept {
		b.Resolution = "accept"
	}
	var v ConflictView
	return v, c.doBody("POST", fmt.Sprintf("/api/v1/log/conflicts/%d/resolve", id), b, &v)
}

// Release implements Service.
func (c *Client) Release(_ Caller, id uint64) error {
	var v map[string]uint64
	return c.doBody("POST", fmt.Sprintf("/api/v1/log/records/%d/release", id), struct{}{}, &v)
}

func revealQuery(reveal bool) url.Values {
	if reveal {
		return url.Values{"reveal": {"1"}}
	}
	return nil
}

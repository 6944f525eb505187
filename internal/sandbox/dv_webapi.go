package sandbox

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The Dataverse side: the Web API under /api/data/v9.x/ as the Dynamics
// connector and dynamics-web-api use it, authenticated by tokens from the
// identity endpoints (dv_identity.go), with Dataverse's service protection
// limits and the sandbox's injected faults in Dataverse's shapes.

// dvToken is an issued Dataverse access token.
type dvToken struct {
	client  string
	expires time.Time
}

// dvUsage counts one client's requests and operations in the current
// window and its requests in flight.
type dvUsage struct {
	windowStart time.Time
	requests    int
	ops         int // operations run: a request, or each request of a $batch
	inFlight    int
}

// Service protection limits as "Service protection API limits" (Microsoft
// Learn, developer/data-platform/api-limits) documents them, per user in a
// 5-minute window: the number of requests (6000; 0x80072322), the combined
// execution time (1,200,000 ms; 0x80072321) and concurrent requests (52;
// 0x80072326). A $batch is one request, but the operations in it add to
// the execution time ("You could send fewer requests by bundling them in
// batch operations. The combined execution time limit will counter
// this."). The sandbox does not time requests: each operation, alone or in
// a batch, is taken to run dvOpMillis, so the execution-time limit is
// reached after twice DataverseRequestLimit operations (1,200,000 ms at
// the default 6000). Like Dataverse, it refuses the requests after the
// window's budget is spent; the batch that spends it runs whole.
const dvOpMillis = 100

// writeDVError writes {"error":{"code","message"}} with its status.
func writeDVError(w http.ResponseWriter, e *dvError) {
	w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": e})
}

func writeDVJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// dvAPI wraps the Web API: the request count, latency, injected faults,
// the bearer token and the service protection limits.
func (s *Server) dvAPI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if !s.waitLatency(r) {
			return
		}
		if f := s.takeFault(); f != nil {
			s.count("fault")
			if f.limit || f.status == http.StatusTooManyRequests {
				left := max(f.until.Sub(s.opts.Now()), time.Second)
				w.Header().Set("Retry-After", strconv.Itoa(int((left+time.Second-1)/time.Second)))
				writeDVError(w, dverr(http.StatusTooManyRequests, dvTooMany, "Number of requests exceeded the limit of %d over time window of 300 seconds.", s.opts.DataverseRequestLimit))
				return
			}
			writeDVError(w, dverr(f.status, dvUnavailable, "Service temporarily unavailable (injected fault)"))
			return
		}
		client, ok := s.dvAuthorized(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize`)
			writeDVError(w, dverr(http.StatusUnauthorized, dvUnauthorized, "The user is not authenticated: the access token is missing, invalid or expired."))
			return
		}
		release, limited := s.dvAdmit(client)
		if limited != nil {
			w.Header().Set("Retry-After", strconv.Itoa(limited.retryAfter))
			writeDVError(w, limited.err)
			return
		}
		defer release()
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), dvClientKey{}, client)))
	})
}

// dvClientKey keys the client dvAPI admitted in the request's context.
type dvClientKey struct{}

func (s *Server) dvAuthorized(r *http.Request) (string, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, found := s.dvTokens[tok]
	if !found || !s.opts.Now().Before(t.expires) {
		return "", false
	}
	return t.client, true
}

type dvLimited struct {
	err        *dvError
	retryAfter int
}

// dvAdmit applies the service protection limits to one request of a
// client: requests per window and requests in flight.
func (s *Server) dvAdmit(client string) (release func(), limited *dvLimited) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, limited := s.dvWindow(client)
	if limited != nil {
		return nil, limited
	}
	if u.inFlight >= s.opts.DataverseConcurrency {
		return nil, &dvLimited{retryAfter: 1,
			err: dverr(http.StatusTooManyRequests, dvTooConcurrent, "Number of concurrent requests exceeded the limit of %d.", s.opts.DataverseConcurrency)}
	}
	u.requests++
	u.ops++
	u.inFlight++
	return func() {
		s.mu.Lock()
		u.inFlight--
		s.mu.Unlock()
	}, nil
}

// dvCountOp adds one operation of a $batch to the execution time in the
// window of the client dvAPI admitted the batch for (the batch itself is
// one request).
func (s *Server) dvCountOp(ctx context.Context) {
	client, ok := ctx.Value(dvClientKey{}).(string)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, _ := s.dvWindow(client)
	u.ops++
}

// dvWindow returns a client's usage in the current window, or the answer
// when its requests in the window are spent. Called with s.mu held.
func (s *Server) dvWindow(client string) (*dvUsage, *dvLimited) {
	now := s.opts.Now()
	u := s.dvUsage[client]
	if u == nil {
		u = &dvUsage{windowStart: now}
		s.dvUsage[client] = u
	}
	window := s.opts.DataverseWindow
	if now.Sub(u.windowStart) >= window {
		u.windowStart, u.requests, u.ops = now, 0, 0
	}
	left := u.windowStart.Add(window).Sub(now)
	retry := int((left + time.Second - 1) / time.Second)
	if u.requests >= s.opts.DataverseRequestLimit {
		return u, &dvLimited{retryAfter: retry,
			err: dverr(http.StatusTooManyRequests, dvTooMany, "Number of requests exceeded the limit of %d over time window of %d seconds.", s.opts.DataverseRequestLimit, int(window/time.Second))}
	}
	if u.ops >= 2*s.opts.DataverseRequestLimit {
		return u, &dvLimited{retryAfter: retry,
			err: dverr(http.StatusTooManyRequests, dvTooLong, "Combined execution time of incoming requests exceeded limit of %s milliseconds over time window of %d seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
				thousands(2*s.opts.DataverseRequestLimit*dvOpMillis), int(window/time.Second))}
	}
	return u, nil
}

// thousands writes n with comma separators, as Dataverse's messages do.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// dvBase is the Web API root as the client addressed it.
func dvBase(r *http.Request, version string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/api/data/" + version + "/"
}

// dvRoute serves /api/data/v9.x/...
func (s *Server) dvRoute(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api/data/")
	version, rest, _ := strings.Cut(rest, "/")
	if !ok || (version != "v9.0" && version != "v9.1" && version != "v9.2") {
		writeDVError(w, dverr(http.StatusNotFound, dvNoSegment, "Resource not found for the segment '%s'.", version))
		return
	}
	path, err := url.PathUnescape(rest)
	if err != nil {
		path = rest // a client that sent a raw "%": read it as written
	}
	s.dvServe(w, r, version, path)
}

// dvServe handles one Web API request whose path (below the version)
// is given unescaped; $batch calls it for each part.
func (s *Server) dvServe(w http.ResponseWriter, r *http.Request, version, path string) {
	switch {
	case path == "" && r.Method == http.MethodGet:
		s.count("dv_service")
		s.lockFor(r)
		var sets []map[string]string
		for _, name := range s.st.dvNames() {
			t := s.st.dv[name]
			sets = append(sets, map[string]string{"name": t.Prefix, "kind": "EntitySet", "url": t.Prefix})
		}
		s.unlockFor(r)
		writeDVJSON(w, http.StatusOK, map[string]any{"@odata.context": dvBase(r, version) + "$metadata", "value": sets})
		return
	case path == "WhoAmI" || path == "WhoAmI()":
		s.count("dv_whoami")
		writeDVJSON(w, http.StatusOK, map[string]any{"@odata.context": dvBase(r, version) + "$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
			"BusinessUnitId": "00000000-5a4d-4b00-8000-000000000b01", "UserId": SandboxUserID,
			"OrganizationId": "00000000-5a4d-4b00-8000-000000000c01"})
		return
	case path == "EntityDefinitions" || strings.HasPrefix(path, "EntityDefinitions("):
		s.dvMetadata(w, r, version, path)
		return
	case path == "$batch" && r.Method == http.MethodPost:
		s.count("dv_batch")
		s.dvBatch(w, r, version)
		return
	}
	set, pred, err := splitEntityRef(path)
	if err != nil || set == "" || !validName(set) {
		writeDVError(w, dverr(http.StatusBadRequest, dvBadRequest, "Bad Request - Error in query syntax."))
		return
	}
	single := pred.id != "" || len(pred.key.cols) > 0
	if derr := dvCheckKeyChars(pred.key); derr != nil {
		writeDVError(w, derr)
		return
	}
	switch {
	case !single && r.Method == http.MethodPost:
		s.count("dv_create")
		s.dvCreateReq(w, r, version, set)
	case !single && r.Method == http.MethodGet:
		s.count("dv_query")
		s.dvQuery(w, r, version, set)
	case single && r.Method == http.MethodGet:
		s.count("dv_get")
		s.dvGet(w, r, version, set, pred)
	case single && r.Method == http.MethodPatch:
		s.count("dv_upsert")
		s.dvUpsert(w, r, version, set, pred)
	case single && r.Method == http.MethodDelete:
		s.count("dv_delete")
		s.dvDeleteReq(w, r, set, pred)
	default:
		writeDVError(w, dverr(http.StatusMethodNotAllowed, dvBadRequest, "The request method %s is not supported here.", r.Method))
	}
}

// readDVBody decodes a JSON object body.
func readDVBody(w http.ResponseWriter, r *http.Request) (Record, *dvError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, dverr(http.StatusBadRequest, dvBadRequest, "The request body could not be read.")
	}
	var rec Record
	if err := json.Unmarshal(body, &rec); err != nil || rec == nil {
		return nil, dverr(http.StatusBadRequest, dvBadRequest, "The request body is not a JSON object.")
	}
	return rec, nil
}

// wantsRepresentation reports Prefer: return=representation.
func wantsRepresentation(r *http.Request) bool {
	for _, p := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(p, ",") {
			if strings.EqualFold(strings.TrimSpace(part), "return=representation") {
				return true
			}
		}
	}
	return false
}

// selectParam reads $select, nil when absent.
func selectParam(r *http.Request) ([]string, *dvError) {
	src := r.URL.Query().Get("$select")
	if src == "" {
		return nil, nil
	}
	sel, err := parseSelect(src)
	if err != nil {
		return nil, dverr(http.StatusBadRequest, dvBadRequest, "Could not find a property named in $select.")
	}
	return sel, nil
}

// dvWritten answers a write: 204 with OData-EntityId, or the row with
// Prefer: return=representation. A drop-after-commit fault cuts the
// connection instead.
func (s *Server) dvWritten(w http.ResponseWriter, r *http.Request, version string, t *objectStore, id string, created bool) {
	if !inBatch(r) && s.dropAfterCommit() {
		s.count("dropped")
		s.journal.add(JournalEntry{Object: t.Prefix, ID: id, Method: r.Method, Outcome: "dropped"})
		drop(w)
		return
	}
	entity := dvBase(r, version) + t.Prefix + "(" + id + ")"
	w.Header().Set("OData-EntityId", entity)
	if !wantsRepresentation(r) {
		w.Header().Set("OData-Version", "4.0")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	sel, derr := selectParam(r)
	if derr != nil {
		writeDVError(w, derr)
		return
	}
	s.lockFor(r)
	view := dvView(t, t.Records[id], sel)
	s.unlockFor(r)
	view["@odata.context"] = dvBase(r, version) + "$metadata#" + t.Prefix + "/$entity"
	w.Header().Set("Preference-Applied", "return=representation")
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeDVJSON(w, status, view)
}

func (s *Server) dvCreateReq(w http.ResponseWriter, r *http.Request, version, set string) {
	body, derr := readDVBody(w, r)
	if derr != nil {
		writeDVError(w, derr)
		return
	}
	s.lockFor(r)
	t := s.st.dvTableOfSet(set, true)
	if t == nil {
		s.unlockFor(r)
		writeDVError(w, dverr(http.StatusNotFound, dvNoSegment, "Resource not found for the segment '%s'.", set))
		return
	}
	id, derr := s.st.dvCreate(t, body)
	s.unlockFor(r)
	s.journalDV(r, set, dvPredicate{}, id, true, body, derr)
	if derr != nil {
		writeDVError(w, derr)
		return
	}
	s.dvWritten(w, r, version, t, id, true)
}

// dvUpsert is PATCH of set(id) or set(key=...): update, or create when
// missing; If-Match: * forbids the create, If-None-Match: * the update.
func (s *Server) dvUpsert(w http.ResponseWriter, r *http.Request, version, set string, pred dvPredicate) {
	body, derr := readDVBody(w, r)
	if derr != nil {
		writeDVError(w, derr)
		return
	}
	updateOnly := r.Header.Get("If-Match") == "*"
	createOnly := r.Header.Get("If-None-Match") == "*"
	s.lockFor(r)
	t := s.st.dvTableOfSet(set, true)
	if t == nil {
		s.unlockFor(r)
		writeDVError(w, dverr(http.StatusNotFound, dvNoSegment, "Resource not found for the segment '%s'.", set))
		return
	}
	var ids []string
	if pred.id != "" {
		if t.Records[pred.id] != nil {
			ids = []string{pred.id}
		}
	} else {
		s.st.learnKey(t, pred.key.cols)
		for i, c := range pred.key.cols {
			if v, ok := body[c]; ok && !dvEqual(v, pred.key.vals[i]) {
				s.unlockFor(r)
				s.journalDV(r, set, pred, "", false, body, dverr(http.StatusBadRequest, dvBadRequest, "key mismatch"))
				writeDVError(w, dverr(http.StatusBadRequest, dvBadRequest, "The value of %s in the body does not match the key in the URL.", c))
				return
			}
		}
		ids = dvFind(t, pred.key)
	}
	var id string
	created := false
	switch {
	case len(ids) > 1:
		derr = dverr(http.StatusBadRequest, dvDuplicate, "More than one record matches the key values in %s entity.", t.Name)
	case len(ids) == 1 && createOnly:
		derr = dverr(http.StatusPreconditionFailed, dvDuplicate, "A record with matching key values already exists.")
	case len(ids) == 1:
		id = ids[0]
		derr = s.st.dvUpdate(t, id, body)
	case updateOnly:
		derr = dvMissing(t, pred)
	default:
		withKey := copyRecord(body)
		if pred.id != "" {
			withKey[primaryKey(t)] = pred.id
		}
		for i, c := range pred.key.cols {
			withKey[c] = pred.key.vals[i]
		}
		id, derr = s.st.dvCreate(t, withKey)
		created = true
	}
	s.unlockFor(r)
	s.journalDV(r, set, pred, id, created, body, derr)
	if derr != nil {
		writeDVError(w, derr)
		return
	}
	s.dvWritten(w, r, version, t, id, created)
}

func (s *Server) dvGet(w http.ResponseWriter, r *http.Request, version, set string, pred dvPredicate) {
	sel, derr := selectParam(r)
	if derr == nil {
		derr = s.st.dvCheckSelect(set, sel)
	}
	if derr != nil {
		writeDVError(w, derr)
		return
	}
	s.lockFor(r)
	t := s.st.dvTableOfSet(set, false)
	var view map[string]any
	if t == nil {
		derr = dverr(http.StatusNotFound, dvNoSegment, "Resource not found for the segment '%s'.", set)
	} else {
		var id string
		if id, derr = s.st.dvRowOf(t, pred); derr == nil {
			view = dvView(t, t.Records[id], sel)
		}
	}
	s.unlockFor(r)
	if derr != nil {
		writeDVError(w, derr)
		return
	}
	view["@odata.context"] = dvBase(r, version) + "$metadata#" + t.Prefix + "/$entity"
	writeDVJSON(w, http.StatusOK, view)
}

func (s *Server) dvDeleteReq(w http.ResponseWriter, r *http.Request, set string, pred dvPredicate) {
	s.lockFor(r)
	t := s.st.dvTableOfSet(set, false)
	var derr *dvError
	if t == nil {
		derr = dverr(http.StatusNotFound, dvNoSegment, "Resource not found for the segment '%s'.", set)
	} else {
		var id string
		if id, derr = s.st.dvRowOf(t, pred); derr == nil {
			derr = s.st.dvDelete(t, id)
		}
	}
	s.unlockFor(r)
	s.journalDV(r, set, pred, "", false, nil, derr)
	if derr != nil {
		writeDVError(w, derr)
		return
	}
	if !inBatch(r) && s.dropAfterCommit() {
		s.count("dropped")
		s.journal.add(JournalEntry{Object: set, Key: pred.String(), Method: r.Method, Outcome: "dropped"})
		drop(w)
		return
	}
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusNoContent)
}

// maxPageSize reads Prefer: odata.maxpagesize=N; default 5000.
func maxPageSize(r *http.Request) (int, bool) {
	for _, p := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(p, ",") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(part), "odata.maxpagesize="); ok {
				if n, err := strconv.Atoi(v); err == nil && n > 0 {
					return min(n, 5000), true
				}
			}
		}
	}
	return 5000, false
}

// dvQuery serves GET set?$select&$filter&$orderby&$top with paging, as
// Dataverse pages: the rows are ordered by $orderby (the primary key
// without one), and the next page's $skiptoken is a paging cookie that
// holds the last row of the page, so the next page starts "with the next
// record after the last one on the preceding page", each request evaluated
// as it comes (rows changed meanwhile move; with a unique order none is
// skipped); $top is ignored
// when Prefer: odata.maxpagesize is given (learn.microsoft.com
// power-apps/developer/data-platform/webapi/query/page-results, "Ordering
// and paging" and "Don't use the $top query option while paging records").
func (s *Server) dvQuery(w http.ResponseWriter, r *http.Request, version, set string) {
	q := r.URL.Query()
	sel, derr := selectParam(r)
	if derr == nil {
		derr = s.st.dvCheckSelect(set, sel)
	}
	if derr != nil {
		writeDVError(w, derr)
		return
	}
	var filter dvFilter
	if src := q.Get("$filter"); src != "" {
		f, err := parseFilter(src)
		if err != nil {
			writeDVError(w, dverr(http.StatusBadRequest, dvBadRequest, "Invalid $filter: %v", err))
			return
		}
		filter = f
	}
	var order []dvOrder
	if src := q.Get("$orderby"); src != "" {
		o, err := parseOrderBy(src)
		if err != nil {
			writeDVError(w, dverr(http.StatusBadRequest, dvBadRequest, "Invalid $orderby."))
			return
		}
		order = o
	}
	top := -1
	if src := q.Get("$top"); src != "" {
		n, err := strconv.Atoi(src)
		if err != nil || n < 0 {
			writeDVError(w, dverr(http.StatusBadRequest, dvBadRequest, "Invalid $top."))
			return
		}
		top = n
	}
	pk := strings.ToLower(logicalOfSet(set)) + "id"
	if len(order) == 0 {
		// "If you don't add any order elements to your query, Dataverse
		// adds an order based on the primary key" (same page). With an
		// order on a column that is not unique, the page after a cookie
		// skips the rows equal to its last one, as Dataverse's paging
		// is not deterministic then: order by a unique column last.
		order = []dvOrder{{col: pk}}
	}
	var after Record // the last row of the previous page
	if tok := q.Get("$skiptoken"); tok != "" {
		last, ok := pagingCookieRow(tok, order)
		if !ok {
			writeDVError(w, dverr(http.StatusBadRequest, dvBadRequest, "Invalid $skiptoken."))
			return
		}
		after = last
	}
	pageSize, preferred := maxPageSize(r)
	if preferred {
		top = -1
	}
	s.lockFor(r)
	t := s.st.dvTableOfSet(set, false)
	var rows []Record
	if t != nil {
		for _, id := range t.Order {
			if rec := t.Records[id]; filter == nil || filter(rec) {
				rows = append(rows, copyRecord(rec))
			}
		}
	}
	s.unlockFor(r)
	if t == nil && logicalOfSet(set) == "" {
		writeDVError(w, dverr(http.StatusNotFound, dvNoSegment, "Resource not found for the segment '%s'.", set))
		return
	}
	sortRows(rows, order)
	if top >= 0 && top < len(rows) {
		rows = rows[:top]
	}
	start := 0
	if after != nil {
		start = sort.Search(len(rows), func(i int) bool { return rowCompare(rows[i], after, order) > 0 })
	}
	end := min(start+pageSize, len(rows))
	page := rows[start:end]
	views := make([]map[string]any, 0, len(page))
	for _, rec := range page {
		if t != nil {
			views = append(views, dvView(t, rec, sel))
		} else {
			views = append(views, map[string]any{pk: rec[pk]})
		}
	}
	ctx := dvBase(r, version) + "$metadata#" + set
	if sel != nil {
		ctx += "(" + strings.Join(sel, ",") + ")"
	}
	out := map[string]any{"@odata.context": ctx, "value": views}
	if end < len(rows) {
		next := url.Values{}
		for k, v := range q {
			if k != "$skiptoken" {
				next[k] = v
			}
		}
		pageNo := 2
		if after != nil {
			pageNo = pagingCookiePage(q.Get("$skiptoken")) + 1
		}
		next.Set("$skiptoken", pagingCookie(pageNo, rows[end-1], order))
		out["@odata.nextLink"] = dvBase(r, version) + set + "?" + next.Encode()
	}
	if preferred {
		w.Header().Set("Preference-Applied", fmt.Sprintf("odata.maxpagesize=%d", pageSize))
	}
	writeDVJSON(w, http.StatusOK, out)
}

// pagingCookie is the $skiptoken of page pageNo: the order columns'
// values of the last row before it (Dataverse's cookie holds the last
// record's key the same way; clients pass it back unread).
func pagingCookie(pageNo int, last Record, order []dvOrder) string {
	vals := make([]any, len(order))
	for i, o := range order {
		vals[i] = last[o.col]
	}
	b, _ := json.Marshal(vals)
	return fmt.Sprintf(`<cookie pagenumber="%d" pagingcookie="%s" istracking="False" />`, pageNo, base64.RawURLEncoding.EncodeToString(b))
}

// pagingCookieRow reads the last row's order values from a paging cookie.
func pagingCookieRow(tok string, order []dvOrder) (Record, bool) {
	_, after, ok := strings.Cut(tok, `pagingcookie="`)
	if !ok {
		return nil, false
	}
	enc, _, ok := strings.Cut(after, `"`)
	if !ok {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return nil, false
	}
	var vals []any
	if err := json.Unmarshal(b, &vals); err != nil || len(vals) != len(order) {
		return nil, false
	}
	row := Record{}
	for i, o := range order {
		row[o.col] = vals[i]
	}
	return row, true
}

// pagingCookiePage reads a paging cookie's page number (1 when absent).
func pagingCookiePage(tok string) int {
	_, after, _ := strings.Cut(tok, `pagenumber="`)
	num, _, _ := strings.Cut(after, `"`)
	if n, err := strconv.Atoi(num); err == nil && n > 0 {
		return n
	}
	return 1
}

// journalDV keeps one Dataverse write in the journal (journal.go).
func (s *Server) journalDV(r *http.Request, set string, pred dvPredicate, id string, created bool, fields Record, derr *dvError) {
	e := JournalEntry{Object: set, Key: pred.String(), Method: r.Method, Status: http.StatusNoContent, Created: created, ID: id,
		Batch: batchSeq(r), Fields: fields}
	if derr != nil {
		e.Status, e.Error, e.Created = derr.status, derr.Code, false
	}
	s.journal.add(e)
}

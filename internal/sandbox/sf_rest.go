package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

func unescapePath(p string) (string, error) { return url.PathUnescape(p) }

// maxBody bounds request bodies (Salesforce allows a few MB).
const maxBody = 16 << 20

// readRecord decodes a JSON object body, numbers as float64 as
// encoding/json gives them.
func readRecord(w http.ResponseWriter, r *http.Request) (Record, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, errf("JSON_PARSER_ERROR", nil, "The request body could not be read")
	}
	var rec Record
	if err := json.Unmarshal(body, &rec); err != nil || rec == nil {
		return nil, errf("JSON_PARSER_ERROR", nil, "The request body is not a JSON object")
	}
	delete(rec, "attributes")
	return rec, nil
}

// sobjects serves /sobjects/{Object}, /sobjects/{Object}/{Id} and
// /sobjects/{Object}/{ExtField}/{value}.
func (s *Server) sobjects(w http.ResponseWriter, r *http.Request, version string, rest []string) {
	if len(rest) == 0 || !validName(rest[0]) {
		writeErrors(w, http.StatusNotFound, errf("NOT_FOUND", nil, "The requested resource does not exist"))
		return
	}
	object := rest[0]
	switch {
	case len(rest) == 1 && r.Method == http.MethodPost:
		s.count("sobject_create")
		s.createOne(w, r, object)
	case len(rest) == 2 && r.Method == http.MethodGet && rest[1] == "describe":
		s.count("describe")
		s.describe(w, version, object)
	case len(rest) == 2 && r.Method == http.MethodGet:
		s.count("sobject_get")
		s.getOne(w, r, version, object, rest[1], "")
	case len(rest) == 2 && r.Method == http.MethodPatch:
		s.count("sobject_update")
		s.updateOne(w, r, object, rest[1])
	case len(rest) == 2 && r.Method == http.MethodDelete:
		s.count("sobject_delete")
		s.deleteOne(w, r, object, rest[1])
	case len(rest) == 3 && r.Method == http.MethodGet:
		s.count("sobject_get")
		s.getOne(w, r, version, object, rest[2], rest[1])
	case len(rest) == 3 && (r.Method == http.MethodPatch || r.Method == http.MethodPost):
		s.count("sobject_upsert")
		s.upsertOne(w, r, version, object, rest[1], rest[2])
	default:
		writeErrors(w, http.StatusNotFound, errf("NOT_FOUND", nil, "The requested resource does not exist"))
	}
}

type saveResult struct {
	ID      string      `json:"id"`
	Success bool        `json:"success"`
	Errors  []*apiError `json:"errors"`
	Created *bool       `json:"created,omitempty"`
}

func (s *Server) createOne(w http.ResponseWriter, r *http.Request, object string) {
	rec, apiErr := readRecord(w, r)
	if apiErr != nil {
		writeErrors(w, http.StatusBadRequest, apiErr)
		return
	}
	s.st.mu.Lock()
	id, apiErr := s.st.create(object, rec)
	s.st.mu.Unlock()
	if apiErr != nil {
		writeRecordError(w, apiErr)
		return
	}
	s.reply(w, http.StatusCreated, saveResult{ID: id, Success: true, Errors: []*apiError{}})
}

func (s *Server) getOne(w http.ResponseWriter, r *http.Request, version, object, id, keyField string) {
	if apiErr := s.st.schema.checkGet(object, keyField, r.URL.Query().Get("fields")); apiErr != nil {
		writeRecordError(w, apiErr)
		return
	}
	s.st.mu.Lock()
	o := s.st.object(object, false)
	var rec Record
	var several []string
	if o != nil {
		if keyField == "" {
			rec = o.Records[id]
		} else if ids := o.find(keyField, id, s.st.schema.folds(object, keyField)); len(ids) == 1 {
			rec = o.Records[ids[0]]
		} else if len(ids) > 1 {
			// Several records hold the key: 300 and their URLs, as for
			// upsert ("If the value is not unique, REST API returns a 300
			// response with the list of matching records",
			// https://developer.salesforce.com/docs/atlas.en-us.224.0.api_rest.meta/api_rest/dome_upsert.htm,
			// the page covering both GET and upsert by external ID; the
			// GET resource's own page,
			// https://developer.salesforce.com/docs/platform/api-rest/guide/resources-sobject-upsert-get.html,
			// says nothing of several matches).
			for _, x := range ids {
				several = append(several, "/services/data/"+version+"/sobjects/"+o.Name+"/"+x)
			}
		}
	}
	if rec != nil {
		rec = copyRecord(rec)
	}
	s.st.mu.Unlock()
	if several != nil {
		writeJSON(w, http.StatusMultipleChoices, several)
		return
	}
	if rec == nil {
		writeErrors(w, http.StatusNotFound, errf("NOT_FOUND", nil, "The requested resource does not exist"))
		return
	}
	if fields := r.URL.Query().Get("fields"); fields != "" {
		sel := Record{"Id": rec["Id"]}
		for _, f := range strings.Split(fields, ",") {
			v, _ := rec.Get(strings.TrimSpace(f))
			sel[strings.TrimSpace(f)] = v
		}
		rec = sel
	}
	rec["attributes"] = map[string]string{"type": o.Name, "url": "/services/data/" + version + "/sobjects/" + o.Name + "/" + fmt.Sprint(rec["Id"])}
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) updateOne(w http.ResponseWriter, r *http.Request, object, id string) {
	rec, apiErr := readRecord(w, r)
	if apiErr != nil {
		writeErrors(w, http.StatusBadRequest, apiErr)
		return
	}
	s.st.mu.Lock()
	apiErr = s.st.update(object, id, rec)
	s.st.mu.Unlock()
	if apiErr != nil {
		writeRecordError(w, apiErr)
		return
	}
	s.reply(w, http.StatusNoContent, nil)
}

func (s *Server) deleteOne(w http.ResponseWriter, r *http.Request, object, id string) {
	s.st.mu.Lock()
	apiErr := s.st.remove(object, id)
	s.st.mu.Unlock()
	if apiErr != nil {
		writeErrors(w, http.StatusNotFound, apiErr)
		return
	}
	s.reply(w, http.StatusNoContent, nil)
}

func (s *Server) upsertOne(w http.ResponseWriter, r *http.Request, version, object, keyField, key string) {
	rec, apiErr := readRecord(w, r)
	if apiErr != nil {
		writeErrors(w, http.StatusBadRequest, apiErr)
		return
	}
	s.st.mu.Lock()
	id, created, urls, apiErr := s.st.upsert(object, keyField, key, rec, true)
	s.st.mu.Unlock()
	s.journalSF(object, keyField, key, id, created, rec, apiErr, 0)
	switch {
	case urls != nil:
		full := make([]string, len(urls))
		for i, u := range urls {
			full[i] = "/services/data/" + version + u
		}
		writeJSON(w, http.StatusMultipleChoices, full)
		return
	case apiErr != nil && apiErr.Code == "NOT_FOUND":
		writeErrors(w, http.StatusNotFound, apiErr)
		return
	case apiErr != nil:
		writeErrors(w, http.StatusBadRequest, apiErr)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	s.reply(w, status, saveResult{ID: id, Success: true, Errors: []*apiError{}, Created: &created})
}

// maxCollection is the sObject Collections limit.
const maxCollection = 200

type collectionRequest struct {
	AllOrNone bool              `json:"allOrNone"`
	Records   []json.RawMessage `json:"records"`
}

// collectionError is a per-record error in a collection result.
type collectionError struct {
	StatusCode string   `json:"statusCode"`
	Message    string   `json:"message"`
	Fields     []string `json:"fields"`
}

type collectionResult struct {
	ID      *string           `json:"id"`
	Success bool              `json:"success"`
	Errors  []collectionError `json:"errors"`
	Created *bool             `json:"created,omitempty"`
}

// collections serves /composite/sobjects (POST create, PATCH update,
// DELETE ?ids=) and /composite/sobjects/{Object}/{ExtField} (PATCH upsert).
func (s *Server) collections(w http.ResponseWriter, r *http.Request, version string, rest []string) {
	switch {
	case len(rest) == 0 && r.Method == http.MethodDelete:
		s.count("collection_delete")
		s.collectionDelete(w, r)
		return
	case len(rest) == 0 && (r.Method == http.MethodPost || r.Method == http.MethodPatch):
		if r.Method == http.MethodPost {
			s.count("collection_create")
		} else {
			s.count("collection_update")
		}
	case len(rest) == 2 && r.Method == http.MethodPatch && validName(rest[0]) && validName(rest[1]):
		s.count("collection_upsert")
	default:
		writeErrors(w, http.StatusNotFound, errf("NOT_FOUND", nil, "The requested resource does not exist"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var req collectionRequest
	if err != nil || json.Unmarshal(body, &req) != nil {
		writeErrors(w, http.StatusBadRequest, errf("JSON_PARSER_ERROR", nil, "The request body is not a collection: {\"allOrNone\":...,\"records\":[...]}"))
		return
	}
	if len(req.Records) == 0 {
		writeErrors(w, http.StatusBadRequest, errf("INVALID_FIELD", nil, "records: the list must not be empty"))
		return
	}
	if len(req.Records) > maxCollection {
		writeErrors(w, http.StatusBadRequest, errf("EXCEEDED_ID_LIMIT", nil, "Number of records in request exceeds limit: %d", maxCollection))
		return
	}
	type item struct {
		object string
		id     string
		fields Record
	}
	items := make([]item, len(req.Records))
	for i, raw := range req.Records {
		var rec Record
		if json.Unmarshal(raw, &rec) != nil || rec == nil {
			writeErrors(w, http.StatusBadRequest, errf("JSON_PARSER_ERROR", nil, "records[%d] is not a JSON object", i))
			return
		}
		attrs, _ := rec["attributes"].(map[string]any)
		typ, _ := attrs["type"].(string)
		if typ == "" {
			writeErrors(w, http.StatusBadRequest, errf("INVALID_TYPE", nil, "records[%d]: each record needs \"attributes\": {\"type\": ...}", i))
			return
		}
		if len(rest) == 2 && !strings.EqualFold(typ, rest[0]) {
			writeErrors(w, http.StatusBadRequest, errf("INVALID_TYPE", nil, "records[%d]: the list can hold only %s records", i, rest[0]))
			return
		}
		delete(rec, "attributes")
		id := ""
		for _, k := range []string{"id", "Id"} {
			if v, ok := rec[k].(string); ok {
				id = v
				delete(rec, k)
			}
		}
		items[i] = item{object: typ, id: id, fields: rec}
	}

	s.st.mu.Lock()
	backup := s.st.begin()
	jseq := s.journal.next()
	results := make([]collectionResult, len(items))
	failed := false
	seenKeys := map[string]int{}
	fold := len(rest) == 2 && s.st.schema.folds(rest[0], rest[1])
	keyOf := func(k string) string {
		if fold {
			return strings.ToLower(k)
		}
		return k
	}
	if len(rest) == 2 {
		// A key repeated in one request fails on each of its records:
		// "If the key is matched multiple times, then an error is
		// generated and the object record is neither inserted or
		// updated" (Apex upsert,
		// https://developer.salesforce.com/docs/atlas.en-us.apexcode.meta/apexcode/langCon_apex_dml_examples_upsert.htm).
		// That a key repeated within one request counts as several
		// matches, and the DUPLICATE_VALUE code and message below, are
		// the sandbox's choice: the collections upsert page publishes
		// neither.
		for _, it := range items {
			if v, ok := it.fields.Get(rest[1]); ok {
				if key, isStr := v.(string); isStr {
					seenKeys[keyOf(key)]++
				}
			}
		}
	}
	for i, it := range items {
		var e *apiError
		var id string
		var created bool
		switch {
		case len(rest) == 2:
			v, _ := it.fields.Get(rest[1])
			key, _ := v.(string)
			if key == "" {
				e = errf("REQUIRED_FIELD_MISSING", []string{rest[1]}, "Required fields are missing: [%s]", rest[1])
				break
			}
			if seenKeys[keyOf(key)] > 1 {
				e = errf("DUPLICATE_VALUE", []string{rest[1]}, "Duplicate external id specified: %s", key)
				break
			}
			var urls []string
			// "Only external ids are supported" (sObject Collections
			// upsert, https://developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-sobjects-collections-upsert.html):
			// no idLookup field. How Salesforce answers another field
			// here is not published; the sandbox gives each record the
			// single-record upsert's NOT_FOUND.
			id, created, urls, e = s.st.upsert(rest[0], rest[1], key, it.fields, false)
			if urls != nil {
				e = errf("DUPLICATE_EXTERNAL_ID", []string{rest[1]}, "%s: more than one record found for external id field: %v", key, urls)
			}
			s.journalSF(rest[0], rest[1], key, id, created, it.fields, e, jseq)
		case r.Method == http.MethodPost:
			if it.id != "" {
				e = errf("INVALID_FIELD", []string{"id"}, "cannot specify Id in an insert call")
				break
			}
			id, e = s.st.create(it.object, it.fields)
			created = true
		default:
			if it.id == "" {
				e = errf("MISSING_ARGUMENT", []string{"id"}, "Id not specified in an update call")
				break
			}
			id, e = it.id, s.st.update(it.object, it.id, it.fields)
			if e != nil && e.Code == "NOT_FOUND" {
				e = errf("ENTITY_IS_DELETED", nil, "entity is deleted")
			}
		}
		if e != nil {
			failed = true
			results[i] = collectionResult{Success: false, Errors: []collectionError{{StatusCode: e.Code, Message: e.Message, Fields: orEmpty(e.Fields)}}}
			continue
		}
		idCopy := id
		results[i] = collectionResult{ID: &idCopy, Success: true, Errors: []collectionError{}}
		if len(rest) == 2 {
			c := created
			results[i].Created = &c
		}
	}
	if failed && req.AllOrNone {
		s.st.rollback(backup)
		s.journal.add(JournalEntry{Seq: jseq, Object: "collection", Outcome: "rolled back"})
		for i := range results {
			if results[i].Success {
				results[i] = collectionResult{Success: false, Errors: []collectionError{{StatusCode: "ALL_OR_NONE_OPERATION_ROLLED_BACK",
					Message: "Record rolled back because not all records were valid and the request was using AllOrNone header", Fields: []string{}}}}
			}
		}
	}
	s.st.end()
	s.st.mu.Unlock()
	s.reply(w, http.StatusOK, results)
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Server) collectionDelete(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ids := strings.Split(q.Get("ids"), ",")
	if q.Get("ids") == "" || len(ids) > maxCollection {
		writeErrors(w, http.StatusBadRequest, errf("INVALID_FIELD", nil, "ids: give 1 to %d record ids", maxCollection))
		return
	}
	allOrNone, _ := strconv.ParseBool(q.Get("allOrNone"))
	s.st.mu.Lock()
	backup := s.st.begin()
	results := make([]collectionResult, len(ids))
	failed := false
	for i, id := range ids {
		object := s.st.objectOfID(id)
		var e *apiError
		if object == "" {
			e = errf("ENTITY_IS_DELETED", nil, "entity is deleted")
		} else {
			e = s.st.remove(object, id)
		}
		if e != nil {
			failed = true
			results[i] = collectionResult{Success: false, Errors: []collectionError{{StatusCode: e.Code, Message: e.Message, Fields: []string{}}}}
			continue
		}
		idCopy := id
		results[i] = collectionResult{ID: &idCopy, Success: true, Errors: []collectionError{}}
	}
	if failed && allOrNone {
		s.st.rollback(backup)
		for i := range results {
			if results[i].Success {
				results[i] = collectionResult{Success: false, Errors: []collectionError{{StatusCode: "ALL_OR_NONE_OPERATION_ROLLED_BACK", Message: "Record rolled back", Fields: []string{}}}}
			}
		}
	}
	s.st.end()
	s.st.mu.Unlock()
	s.reply(w, http.StatusOK, results)
}

// cursorTTL is how long a query's nextRecordsUrl stays valid.
const cursorTTL = 15 * time.Minute

// query serves /query?q= and /query/{cursor}.
func (s *Server) query(w http.ResponseWriter, r *http.Request, version string, rest []string) {
	var cur *cursor
	switch len(rest) {
	case 0:
		q, err := ParseSOQL(r.URL.Query().Get("q"))
		if err != nil {
			code, msg := "MALFORMED_QUERY", err.Error()
			if se, ok := err.(*SOQLError); ok {
				code, msg = se.Code, se.Message
			}
			writeErrors(w, http.StatusBadRequest, errf(code, nil, "%s", msg))
			return
		}
		if apiErr := s.st.schema.checkQuery(q); apiErr != nil {
			writeErrors(w, http.StatusBadRequest, apiErr)
			return
		}
		s.st.mu.Lock()
		all := s.st.records(q.Object)
		if o := s.st.object(q.Object, false); o != nil {
			q.Object = o.Name // attributes.type in the object's own spelling
		}
		s.st.mu.Unlock()
		matched := q.Apply(all)
		if q.Count {
			writeJSON(w, http.StatusOK, map[string]any{"totalSize": len(matched), "done": true, "records": []Record{}})
			return
		}
		cur = &cursor{object: q.Object, records: matched, created: s.opts.Now(), version: version, query: q}
	case 1:
		id, _, _ := strings.Cut(rest[0], "-")
		s.mu.Lock()
		cur = s.cursors[id]
		if cur != nil && s.opts.Now().Sub(cur.created) > cursorTTL {
			delete(s.cursors, id)
			cur = nil
		}
		s.mu.Unlock()
		if cur == nil {
			writeErrors(w, http.StatusBadRequest, errf("INVALID_QUERY_LOCATOR", nil, "invalid query locator"))
			return
		}
	default:
		writeErrors(w, http.StatusNotFound, errf("NOT_FOUND", nil, "The requested resource does not exist"))
		return
	}
	pageSize := s.opts.QueryPageSize
	if opt := r.Header.Get("Sforce-Query-Options"); opt != "" {
		if n, err := strconv.Atoi(strings.TrimPrefix(strings.ReplaceAll(opt, " ", ""), "batchSize=")); err == nil && n >= 200 && n <= 2000 {
			pageSize = n
		}
	}
	s.mu.Lock()
	start := cur.next
	end := min(start+pageSize, len(cur.records))
	cur.next = end
	done := end >= len(cur.records)
	id := ""
	if !done {
		for k, c := range s.cursors {
			if c == cur {
				id = k
			}
		}
		if id == "" {
			id = fmt.Sprintf("01g%015d", len(s.cursors)+1+int(s.apiRequests.Load()))
			s.cursors[id] = cur
		}
	} else {
		for k, c := range s.cursors {
			if c == cur {
				delete(s.cursors, k)
			}
		}
	}
	s.mu.Unlock()
	prefix := "/services/data/" + cur.version
	page := make([]Record, 0, end-start)
	for _, rec := range cur.records[start:end] {
		page = append(page, cur.query.Project(rec, prefix))
	}
	resp := map[string]any{"totalSize": len(cur.records), "done": done, "records": page}
	if !done {
		resp["nextRecordsUrl"] = fmt.Sprintf("%s/query/%s-%d", prefix, id, end)
	}
	writeJSON(w, http.StatusOK, resp)
}

// reply answers a write that has been applied, unless a drop-after-commit
// fault cuts the connection first; v nil writes no body.
func (s *Server) reply(w http.ResponseWriter, status int, v any) {
	if _, inComposite := w.(*subResponse); !inComposite && s.dropAfterCommit() {
		s.journal.add(JournalEntry{Outcome: "dropped"})
		drop(w)
		return
	}
	if v == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, v)
}

// The Composite resource's limits: 25 subrequests, at most 5 of them
// sObject Collections or queries
// (https://developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-composite-post.html;
// ../shared/crm-metadata/salesforce/docs_facts.json REST.composite).
const (
	maxSubrequests           = 25
	maxCollectionSubrequests = 5
)

// collectionOrQuery tells whether a subrequest URL is an sObject
// Collections or query request, the kind limited to 5 per Composite call.
func collectionOrQuery(path string) bool {
	rest, ok := strings.CutPrefix(path, "/services/data/")
	if !ok {
		return false
	}
	_, rest, _ = strings.Cut(rest, "/") // the version
	return strings.HasPrefix(rest, "composite/sobjects") || rest == "query" || strings.HasPrefix(rest, "query/") ||
		rest == "queryAll" || strings.HasPrefix(rest, "queryAll/")
}

// compositeLimitError answers a Composite call over a limit as Salesforce
// does: 200 with a single compositeResponse element, 400 LIMIT_EXCEEDED,
// referenceId null (observed: https://github.com/guardian/support-service-lambdas/pull/766
// "The request can’t contain more than 25 operations."). Salesforce's
// answer to more than 5 collections or queries is not published: the
// sandbox answers it in the same shape, with a text of its own.
func (s *Server) compositeLimitError(w http.ResponseWriter, msg string) {
	s.reply(w, http.StatusOK, map[string]any{"compositeResponse": []any{map[string]any{
		"body":        []*apiError{errf("LIMIT_EXCEEDED", nil, "%s", msg)},
		"httpHeaders": map[string]string{}, "httpStatusCode": http.StatusBadRequest, "referenceId": nil,
	}}})
}

// subResponse captures a composite subrequest's answer.
type subResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *subResponse) Header() http.Header { return r.header }
func (r *subResponse) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *subResponse) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// composite serves POST /composite: up to 25 subrequests, at most 5 of
// them collections or queries, as one API call, each answered in
// compositeResponse in request order. Unless the call sets
// "collateSubrequests": false, they run in a shuffled order (seeded by
// Options.Seed), as Salesforce gives no order to collated subrequests
// (the default since API 49.0,
// https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/requests_composite.htm):
// a client relying on order fails here as it would there. @{reference}
// dependencies are not supported. allOrNone is not supported (ehrbridge
// sends false); a drop-after-commit fault applies to the whole call.
func (s *Server) composite(w http.ResponseWriter, r *http.Request, version string) {
	var req struct {
		AllOrNone          bool  `json:"allOrNone"`
		CollateSubrequests *bool `json:"collateSubrequests"`
		CompositeRequest   []struct {
			Method      string          `json:"method"`
			URL         string          `json:"url"`
			ReferenceID string          `json:"referenceId"`
			Body        json.RawMessage `json:"body"`
		} `json:"compositeRequest"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil || json.Unmarshal(body, &req) != nil {
		writeErrors(w, http.StatusBadRequest, errf("JSON_PARSER_ERROR", nil, "The request body is not a composite request"))
		return
	}
	if len(req.CompositeRequest) == 0 {
		writeErrors(w, http.StatusBadRequest, errf("INVALID_FIELD", nil, "compositeRequest: give 1 to %d subrequests", maxSubrequests))
		return
	}
	if len(req.CompositeRequest) > maxSubrequests {
		s.compositeLimitError(w, fmt.Sprintf("The request can’t contain more than %d operations.", maxSubrequests))
		return
	}
	heavy := 0
	for _, sub := range req.CompositeRequest {
		if u, err := url.Parse(sub.URL); err == nil && collectionOrQuery(u.Path) {
			heavy++
		}
	}
	if heavy > maxCollectionSubrequests {
		s.compositeLimitError(w, fmt.Sprintf("The request can’t contain more than %d sObject Collections or query operations.", maxCollectionSubrequests))
		return
	}
	if req.AllOrNone {
		writeErrors(w, http.StatusBadRequest, errf("INVALID_FIELD", nil, "allOrNone composite requests are not supported by the ehrbridge sandbox"))
		return
	}
	type subResult struct {
		Body           json.RawMessage   `json:"body"`
		HTTPHeaders    map[string]string `json:"httpHeaders"`
		HTTPStatusCode int               `json:"httpStatusCode"`
		ReferenceID    string            `json:"referenceId"`
	}
	out := make([]subResult, len(req.CompositeRequest))
	order := make([]int, len(req.CompositeRequest))
	for i := range order {
		order[i] = i
	}
	if req.CollateSubrequests == nil || *req.CollateSubrequests {
		s.mu.Lock()
		s.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		s.mu.Unlock()
	}
	for _, i := range order {
		sub := req.CompositeRequest[i]
		rec := &subResponse{header: http.Header{}}
		u, err := url.Parse(sub.URL)
		if err != nil || !strings.HasPrefix(u.Path, "/services/data/") {
			writeErrors(rec, http.StatusBadRequest, errf("INVALID_FIELD", nil, "subrequest url must start with /services/data/"))
		} else {
			var rd io.Reader = http.NoBody
			if len(sub.Body) > 0 {
				rd = bytes.NewReader(sub.Body)
			}
			sr, _ := http.NewRequestWithContext(r.Context(), sub.Method, sub.URL, rd)
			sr.Header = r.Header.Clone()
			s.route(rec, sr)
		}
		b := bytes.TrimSpace(rec.body.Bytes())
		if len(b) == 0 {
			b = []byte("null")
		}
		out[i] = subResult{Body: b, HTTPHeaders: map[string]string{}, HTTPStatusCode: rec.status, ReferenceID: sub.ReferenceID}
	}
	s.reply(w, http.StatusOK, map[string]any{"compositeResponse": out})
}

// journalSF keeps one Salesforce upsert in the journal (journal.go);
// batch is the collection request's sequence number, 0 for none.
func (s *Server) journalSF(object, keyField, key, id string, created bool, fields Record, e *apiError, batch int64) {
	je := JournalEntry{Object: object, Key: keyField + "=" + key, Method: http.MethodPatch, Status: http.StatusOK, Created: created, ID: id,
		Batch: batch, Fields: fields}
	if e != nil {
		je.Status, je.Error, je.Created = http.StatusBadRequest, e.Code, false
	}
	s.journal.add(je)
}

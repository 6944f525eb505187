package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"strings"
)

// $batch: a multipart/mixed body of requests (application/http parts) and
// change sets (nested multipart/mixed parts, applied atomically, whose
// requests may refer to each other's results by Content-ID as "$n").
// Without Prefer: odata.continue-on-error the batch stops at the first
// failed request or change set.

// maxBatchParts bounds the requests in one batch, as Dataverse does.
const maxBatchParts = 1000

type ctxKey int

// ctxStoreLocked marks a request run inside a change set, whose store lock
// the change set holds.
const ctxStoreLocked ctxKey = 1

// lockFor and unlockFor take the store lock unless the request runs in a
// change set that holds it.
func (s *Server) lockFor(r *http.Request) {
	if r.Context().Value(ctxStoreLocked) == nil {
		s.st.mu.Lock()
	}
}

func (s *Server) unlockFor(r *http.Request) {
	if r.Context().Value(ctxStoreLocked) == nil {
		s.st.mu.Unlock()
	}
}

// inBatch reports whether a request is a part of a batch (drop-after-commit
// then applies to the batch as a whole).
func inBatch(r *http.Request) bool { return r.Header.Get("X-Sandbox-Batch-Part") != "" }

// batchPart is one request of a batch.
type batchPart struct {
	contentID string
	method    string
	target    string // as written: absolute URL, path, or $n
	header    http.Header
	body      []byte
}

// batchItem is a top-level item: one request, or a change set.
type batchItem struct {
	req       *batchPart
	changeset []*batchPart
}

// partResult is one answered request.
type partResult struct {
	contentID string
	rec       *httptest.ResponseRecorder
}

func (s *Server) dvBatch(w http.ResponseWriter, r *http.Request, version string) {
	items, err := readBatch(http.MaxBytesReader(w, r.Body, maxBody), r.Header.Get("Content-Type"))
	if err != nil {
		writeDVError(w, dverr(http.StatusBadRequest, dvBadRequest, "The batch request is malformed: %v", err))
		return
	}
	continueOnError := false
	for _, p := range r.Header.Values("Prefer") {
		continueOnError = continueOnError || strings.Contains(p, "odata.continue-on-error")
	}
	refs := map[string]string{} // Content-ID → entity URL
	seq := s.journal.next()
	r = r.WithContext(context.WithValue(r.Context(), journalBatchKey{}, seq))
	type answered struct {
		changeset bool
		results   []partResult
	}
	var out []answered
	for _, it := range items {
		if it.req != nil {
			res := s.runPart(r, version, it.req, refs, false)
			out = append(out, answered{results: []partResult{res}})
			if res.rec.Code >= 400 && !continueOnError {
				break
			}
			continue
		}
		s.st.mu.Lock()
		j := s.st.begin()
		var results []partResult
		failed := false
		for _, p := range it.changeset {
			res := s.runPart(r, version, p, refs, true)
			if res.rec.Code >= 400 {
				s.st.rollback(j)
				results, failed = []partResult{res}, true
				break
			}
			results = append(results, res)
		}
		s.st.end()
		s.st.mu.Unlock()
		out = append(out, answered{changeset: true, results: results})
		if failed && !continueOnError {
			break
		}
	}
	if s.dropAfterCommit() {
		s.count("dropped")
		s.journal.add(JournalEntry{Seq: seq, Object: "$batch", Parts: len(out), Outcome: "dropped"})
		drop(w)
		return
	}
	s.journal.add(JournalEntry{Seq: seq, Object: "$batch", Parts: len(out), Outcome: "answered"})
	var body bytes.Buffer
	boundary := "batchresponse_" + s.st.lockedGUID()
	for _, a := range out {
		fmt.Fprintf(&body, "--%s\r\n", boundary)
		if !a.changeset {
			writeResponsePart(&body, a.results[0])
			continue
		}
		cs := "changesetresponse_" + s.st.lockedGUID()
		fmt.Fprintf(&body, "Content-Type: multipart/mixed; boundary=%s\r\n\r\n", cs)
		for _, res := range a.results {
			fmt.Fprintf(&body, "--%s\r\n", cs)
			writeResponsePart(&body, res)
		}
		fmt.Fprintf(&body, "--%s--\r\n", cs)
	}
	fmt.Fprintf(&body, "--%s--\r\n", boundary)
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+boundary)
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body.Bytes())
}

// lockedGUID makes a GUID under the store lock.
func (s *store) lockedGUID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newGUID()
}

// writeResponsePart writes one application/http response part.
func writeResponsePart(b *bytes.Buffer, res partResult) {
	b.WriteString("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n")
	if res.contentID != "" {
		fmt.Fprintf(b, "Content-ID: %s\r\n", res.contentID)
	}
	b.WriteString("\r\n")
	fmt.Fprintf(b, "HTTP/1.1 %d %s\r\n", res.rec.Code, http.StatusText(res.rec.Code))
	for _, h := range []string{"Content-Type", "OData-Version", "OData-EntityId", "Location", "Preference-Applied", "Retry-After"} {
		if v := res.rec.Header().Get(h); v != "" {
			fmt.Fprintf(b, "%s: %s\r\n", h, v)
		}
	}
	if v := res.rec.Header().Get("OData-EntityId"); v != "" {
		fmt.Fprintf(b, "Location: %s\r\n", v)
	}
	b.WriteString("\r\n")
	b.Write(bytes.TrimRight(res.rec.Body.Bytes(), "\n"))
	b.WriteString("\r\n")
}

// runPart answers one request of a batch, resolving "$n" references.
func (s *Server) runPart(outer *http.Request, version string, p *batchPart, refs map[string]string, locked bool) partResult {
	rec := httptest.NewRecorder()
	res := partResult{contentID: p.contentID, rec: rec}
	target := p.target
	if strings.HasPrefix(target, "$") {
		id, rest, _ := strings.Cut(target[1:], "/")
		u, ok := refs[id]
		if !ok {
			writeDVError(rec, dverr(http.StatusBadRequest, dvBadRequest, "Content-ID reference $%s is unknown.", id))
			return res
		}
		target = u
		if rest != "" {
			target += "/" + rest
		}
	}
	path := target
	if u, err := url.Parse(target); err == nil {
		path = u.EscapedPath()
		if u.RawQuery != "" {
			path += "?" + u.RawQuery
		}
	}
	rawPath, query, _ := strings.Cut(path, "?")
	if i := strings.Index(rawPath, "/api/data/"); i >= 0 {
		rest := rawPath[i+len("/api/data/"):]
		_, rawPath, _ = strings.Cut(rest, "/")
	}
	rawPath = strings.TrimPrefix(rawPath, "/")
	unescaped, err := url.PathUnescape(rawPath)
	if err != nil {
		unescaped = rawPath
	}
	body := p.body
	if len(bytes.TrimSpace(body)) > 0 && len(refs) > 0 {
		body = resolveBindRefs(body, refs)
	}
	ctx := outer.Context()
	if locked {
		ctx = context.WithValue(ctx, ctxStoreLocked, true)
	}
	req, err := http.NewRequestWithContext(ctx, p.method, dvBase(outer, version)+rawPath+"?"+query, bytes.NewReader(body))
	if err != nil {
		writeDVError(rec, dverr(http.StatusBadRequest, dvBadRequest, "A batch part's request line is malformed."))
		return res
	}
	req.Host, req.TLS = outer.Host, outer.TLS
	for k, v := range p.header {
		req.Header[k] = v
	}
	req.Header.Set("X-Sandbox-Batch-Part", "1")
	// The $batch was counted as one request by dvAPI; each of its
	// requests adds to the execution time (dv_webapi.go, dvOpMillis).
	s.dvCountOp(outer.Context())
	s.dvServe(rec, req, version, unescaped)
	if res.contentID != "" {
		if e := rec.Header().Get("OData-EntityId"); e != "" {
			refs[res.contentID] = e
		}
	}
	return res
}

// resolveBindRefs replaces "$n" values of @odata.bind properties.
func resolveBindRefs(body []byte, refs map[string]string) []byte {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	changed := false
	for k, v := range m {
		sv, ok := v.(string)
		if !ok || !strings.HasSuffix(k, "@odata.bind") || !strings.HasPrefix(sv, "$") {
			continue
		}
		if u, ok := refs[sv[1:]]; ok {
			m[k], changed = u, true
		}
	}
	if !changed {
		return body
	}
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}

// readBatch parses a $batch body.
func readBatch(body io.Reader, contentType string) ([]batchItem, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return nil, fmt.Errorf("the Content-Type must be multipart/mixed with a boundary")
	}
	mr := multipart.NewReader(body, params["boundary"])
	var items []batchItem
	n := 0
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return items, nil
		}
		if err != nil {
			return nil, err
		}
		pt, pparams, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		switch pt {
		case "multipart/mixed":
			cr := multipart.NewReader(part, pparams["boundary"])
			var cs []*batchPart
			for {
				sub, err := cr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					return nil, err
				}
				p, err := readHTTPPart(sub)
				if err != nil {
					return nil, err
				}
				cs = append(cs, p)
				n++
			}
			items = append(items, batchItem{changeset: cs})
		case "application/http":
			p, err := readHTTPPart(part)
			if err != nil {
				return nil, err
			}
			items = append(items, batchItem{req: p})
			n++
		default:
			return nil, fmt.Errorf("a batch part has Content-Type %q", pt)
		}
		if n > maxBatchParts {
			return nil, fmt.Errorf("more than %d requests", maxBatchParts)
		}
	}
}

// readHTTPPart reads an application/http part: a request line, headers
// and the body (the rest of the part; clients send no Content-Length).
func readHTTPPart(part *multipart.Part) (*batchPart, error) {
	br := bufio.NewReader(part)
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	for err == nil && strings.TrimSpace(line) == "" {
		line, err = tp.ReadLine()
	}
	if err != nil {
		return nil, fmt.Errorf("a batch part has no request line")
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return nil, fmt.Errorf("a batch part's request line is malformed")
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("a batch part's headers are malformed")
	}
	body, err := io.ReadAll(br)
	if err != nil {
		return nil, err
	}
	return &batchPart{contentID: part.Header.Get("Content-ID"), method: strings.ToUpper(f[0]), target: f[1],
		header: http.Header(hdr), body: bytes.TrimRight(body, "\r\n")}, nil
}

package dynamics

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/internal/logging"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// Sink applies mapped ops to Dataverse: an upsert is a PATCH of the row by
// its alternate key (the op's key field), an update the same with If-Match:
// * (never creates), a delete a DELETE by the key (a missing row is fine).
// Ops go in $batch requests of BatchSize with Prefer:
// odata.continue-on-error, several at a time; an op that references a
// record another op of the call writes comes after it: later in the same
// $batch when the call fits in one, else in a later round. It implements
// connectors.Sink.
type Sink struct {
	Client *Client
}

var _ connectors.Sink = (*Sink)(nil)

// Probe asks Dataverse whether it answers (Client.Probe), for the
// pipeline's breaker.
func (s *Sink) Probe(ctx context.Context) error { return s.Client.Probe(ctx) }

// Apply implements connectors.Sink.
func (s *Sink) Apply(ctx context.Context, ops []connectors.Op) []connectors.Result {
	results := make([]connectors.Result, len(ops))
	plan := connectors.NewPlan(ops)
	size := s.Client.cfg.BatchSize
	if len(ops) <= size {
		// One $batch: Dataverse runs its requests in order, so ops placed
		// by level find the records they reference. A trickle costs one
		// request per round.
		idx := make([]int, 0, len(ops))
		for lv := 0; lv <= plan.Max; lv++ {
			for i := range ops {
				if plan.Level[i] == lv {
					idx = append(idx, i)
				}
			}
		}
		s.apply(ctx, ops, idx, results)
		plan.PropagateFailures(ops, results)
		return results
	}
	var down atomic.Pointer[connectors.Error]
	for lv := 0; lv <= plan.Max; lv++ {
		var idx []int
		for i := range ops {
			if plan.Level[i] == lv {
				idx = append(idx, i)
			}
		}
		var chunks [][]int
		for len(idx) > 0 {
			n := min(size, len(idx))
			chunks = append(chunks, idx[:n])
			idx = idx[n:]
		}
		s.applyChunks(ctx, ops, chunks, results, &down)
	}
	plan.PropagateFailures(ops, results)
	return results
}

// applyChunks sends chunks, MaxConcurrent at a time. Once a request
// failed as a whole and transiently (5xx or no answer after the client's
// retries: Dataverse is failing), the chunks not yet sent are not sent:
// their ops get that error, and are retried with the rest when the
// pipeline's breaker finds Dataverse answering again.
func (s *Sink) applyChunks(ctx context.Context, ops []connectors.Op, chunks [][]int, results []connectors.Result, down *atomic.Pointer[connectors.Error]) {
	sem := make(chan struct{}, s.Client.cfg.MaxConcurrent)
	var wg sync.WaitGroup
	var caught atomic.Pointer[logging.WorkerPanic]
	for _, chunk := range chunks {
		sem <- struct{}{}
		if e := down.Load(); e != nil {
			<-sem
			for _, i := range chunk {
				results[i] = connectors.Result{Err: e}
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			defer logging.CatchWorkerPanic(&caught) // raised below, for the pipeline's recovery
			var e *connectors.Error
			if err := s.apply(ctx, ops, chunk, results); errors.As(err, &e) && e.Kind == connectors.Transient {
				down.CompareAndSwap(nil, e)
			}
		}()
	}
	wg.Wait()
	if p := caught.Load(); p != nil {
		panic(p)
	}
}

// request is one op as an HTTP request below the API root.
type request struct {
	method, path string
	header       http.Header
	body         []byte
	action       string
}

// unsafeKeyAdvice ends a KEY_CHARACTERS error: which characters, and
// the fix.
var unsafeKeyAdvice = "holds a character Dataverse cannot address a row by (" +
	strings.Join(strings.Split(mappings.KeyUnsafeChars, ""), " ") + "): escape it with keysafe() in the mapping"

func (s *Sink) request(op *connectors.Op) (request, error) {
	c := s.Client
	if op.KeyField == "" || op.Key == "" {
		return request{}, errorf("NO_KEY", "the op has no alternate key")
	}
	// Dataverse cannot address a row by a key value holding one of these
	// characters, percent-encoded or not (Microsoft Learn, "Define
	// alternate keys using Power Apps"): say so, and how to fix it, instead
	// of sending a request that fails. The message names no value.
	if strings.ContainsAny(op.Key, mappings.KeyUnsafeChars) {
		return request{}, errorf("KEY_CHARACTERS", "the key of %s.%s %s", op.Object, op.KeyField, unsafeKeyAdvice)
	}
	for _, f := range op.Fields {
		if f.Value.Kind == mappings.Ref && strings.ContainsAny(f.Value.Ref.Key, mappings.KeyUnsafeChars) {
			return request{}, errorf("KEY_CHARACTERS", "the key of the reference %s of %s %s", f.Name, op.Object, unsafeKeyAdvice)
		}
	}
	r := request{action: op.Action, path: c.EntitySet(op.Object) + KeyPredicate(strings.ToLower(op.KeyField), op.Key), header: http.Header{}}
	switch op.Action {
	case mappings.Delete:
		r.method = http.MethodDelete
		return r, nil
	case mappings.Update:
		r.header.Set("If-Match", "*")
	case mappings.Upsert:
	default:
		return request{}, errorf("UNKNOWN_ACTION", "action %s", op.Action)
	}
	r.method = http.MethodPatch
	body, err := json.Marshal(s.fields(op))
	if err != nil {
		return request{}, errorf("BAD_FIELDS", "the op's fields cannot be encoded")
	}
	r.body = body
	r.header.Set("Content-Type", "application/json; charset=utf-8")
	return r, nil
}

// fields renders an op's fields: references as nav@odata.bind to the
// referenced row by its alternate key.
func (s *Sink) fields(op *connectors.Op) map[string]any {
	out := make(map[string]any, len(op.Fields))
	for _, f := range op.Fields {
		switch v := f.Value; v.Kind {
		case mappings.Ref:
			out[f.Name+"@odata.bind"] = "/" + s.Client.EntitySet(v.Ref.Object) + KeyPredicate(strings.ToLower(v.Ref.KeyField), v.Ref.Key)
		case mappings.Null:
			out[f.Name] = nil
		case mappings.Number:
			out[f.Name] = json.Number(v.Text)
		case mappings.Bool:
			out[f.Name] = v.Text == "true"
		default:
			out[f.Name] = v.Text
		}
	}
	return out
}

// apply sends the ops of one chunk: alone, or as one $batch. It returns
// the error of a request that failed as a whole.
func (s *Sink) apply(ctx context.Context, ops []connectors.Op, idx []int, results []connectors.Result) error {
	reqs := make([]request, 0, len(idx))
	var sendIdx []int
	for _, i := range idx {
		r, err := s.request(&ops[i])
		if err != nil {
			results[i] = connectors.Result{Err: err}
			continue
		}
		reqs = append(reqs, r)
		sendIdx = append(sendIdx, i)
	}
	switch len(reqs) {
	case 0:
		return nil
	case 1:
		resp, err := s.Client.do(ctx, reqs[0].method, reqs[0].path, reqs[0].header, reqs[0].body)
		if err != nil {
			results[sendIdx[0]] = connectors.Result{Err: err}
			return err
		}
		results[sendIdx[0]] = outcome(reqs[0].action, resp.status, resp.header, resp.body)
		return nil
	}
	answers, err := s.batch(ctx, reqs)
	for n, i := range sendIdx {
		switch {
		case err != nil:
			results[i] = connectors.Result{Err: err}
		case n >= len(answers):
			// The batch stopped before this request: not applied.
			results[i] = connectors.Result{Err: &connectors.Error{Kind: connectors.Transient, Code: "NOT_RUN"}}
		default:
			a := answers[n]
			results[i] = outcome(reqs[n].action, a.status, a.header, a.body)
		}
	}
	return err
}

// outcome is the result of one answered write.
func outcome(action string, status int, header http.Header, body []byte) connectors.Result {
	switch {
	case status/100 == 2:
		return connectors.Result{ID: entityID(header.Get("OData-EntityId"))}
	case status == http.StatusNotFound && (action == mappings.Delete || action == mappings.Update):
		// Update never creates; delete tolerates absence.
		return connectors.Result{}
	}
	return connectors.Result{Err: classify(status, body)}
}

// batch sends requests as one $batch without change sets, so each
// succeeds or fails alone, and returns the answers in order.
func (s *Sink) batch(ctx context.Context, reqs []request) ([]*response, error) {
	c := s.Client
	var rb [12]byte
	_, _ = rand.Read(rb[:])
	boundary := "batch_" + hex.EncodeToString(rb[:])
	var b bytes.Buffer
	for _, r := range reqs {
		fmt.Fprintf(&b, "--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n", boundary)
		fmt.Fprintf(&b, "%s %s%s HTTP/1.1\r\n", r.method, c.base, r.path)
		for k, vs := range r.header {
			for _, v := range vs {
				fmt.Fprintf(&b, "%s: %s\r\n", k, v)
			}
		}
		b.WriteString("\r\n")
		b.Write(r.body)
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	hdr := http.Header{"Content-Type": {"multipart/mixed; boundary=" + boundary}, "Prefer": {"odata.continue-on-error"}}
	resp, err := c.do(ctx, http.MethodPost, "$batch", hdr, b.Bytes())
	if err != nil {
		return nil, err
	}
	if resp.status != http.StatusOK {
		return nil, classify(resp.status, resp.body)
	}
	answers, perr := readBatchResponse(resp.header.Get("Content-Type"), resp.body)
	if perr != nil {
		c.cfg.Logger.Warn("a Dataverse $batch answer could not be read", "parts", len(answers), "err", perr)
		return nil, &connectors.Error{Kind: connectors.Transient, Code: "BAD_BATCH_ANSWER"}
	}
	return answers, nil
}

// readBatchResponse reads the application/http parts of a $batch answer
// (those in a change set response too), in order.
func readBatchResponse(contentType string, body []byte) ([]*response, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return nil, fmt.Errorf("not multipart/mixed")
	}
	var out []*response
	var walk func(r io.Reader, boundary string) error
	walk = func(r io.Reader, boundary string) error {
		mr := multipart.NewReader(r, boundary)
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			pt, pp, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
			if pt == "multipart/mixed" {
				if err := walk(part, pp["boundary"]); err != nil {
					return err
				}
				continue
			}
			resp, err := readHTTPResponse(part)
			if err != nil {
				return err
			}
			out = append(out, resp)
		}
	}
	err = walk(bytes.NewReader(body), params["boundary"])
	return out, err
}

// readHTTPResponse reads "HTTP/1.1 204 No Content", headers and a body.
func readHTTPResponse(r io.Reader) (*response, error) {
	br := bufio.NewReader(r)
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	for err == nil && strings.TrimSpace(line) == "" {
		line, err = tp.ReadLine()
	}
	if err != nil {
		return nil, fmt.Errorf("a part has no status line")
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return nil, fmt.Errorf("a part's status line is malformed")
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return nil, fmt.Errorf("a part's status is not a number")
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("a part's headers are malformed")
	}
	body, err := io.ReadAll(br)
	if err != nil {
		return nil, err
	}
	return &response{status: status, header: http.Header(hdr), body: bytes.TrimSpace(body)}, nil
}

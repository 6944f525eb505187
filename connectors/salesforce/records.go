package salesforce

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/mappings"
)

// MaxBatch is the sObject Collections limit.
const MaxBatch = 200

// Result is the outcome of one record of a collection call.
type Result struct {
	ID      string
	Created bool
	// Err is nil on success, else an *Error (per-record errors of a
	// collection, or the whole call's failure).
	Err error
}

// collectionResult is one element of a collection answer.
type collectionResult struct {
	ID      string    `json:"id"`
	Success bool      `json:"success"`
	Created bool      `json:"created"`
	Errors  []sfError `json:"errors"`
}

// Upsert writes records by the external id field keyField, each holding
// its key there, through sObject Collections: up to MaxBatch records per
// request, allOrNone false so that one bad record fails alone. Records
// with the same key are merged in order (later fields win) into one, as a
// collection refuses a key twice; each gets the merged record's result.
// The returned error is for context cancellation only: per-record and
// whole-request failures are in the results.
func (c *Client) Upsert(ctx context.Context, object, keyField string, records []map[string]any) ([]Result, error) {
	results := make([]Result, len(records))
	merged, indexes := mergeByKey(records, keyField, results)
	path := "/composite/sobjects/" + url.PathEscape(object) + "/" + url.PathEscape(keyField)
	for start := 0; start < len(merged); start += MaxBatch {
		end := min(start+MaxBatch, len(merged))
		body := struct {
			AllOrNone bool             `json:"allOrNone"`
			Records   []map[string]any `json:"records"`
		}{Records: make([]map[string]any, 0, end-start)}
		for _, m := range merged[start:end] {
			rec := make(map[string]any, len(m)+1)
			for k, v := range m {
				rec[k] = v
			}
			rec["attributes"] = map[string]string{"type": object}
			body.Records = append(body.Records, rec)
		}
		var out []collectionResult
		_, err := c.do(ctx, http.MethodPatch, path, body, &out)
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
		chunk := make([]Result, end-start)
		c.fill(chunk, end-start, out, err)
		for n, idxs := range indexes[start:end] {
			for _, idx := range idxs {
				results[idx] = chunk[n]
			}
		}
	}
	return results, nil
}

// recordError classifies a collection record's first error.
func recordError(errs []sfError) *Error {
	if len(errs) == 0 {
		return &Error{Kind: Transient, Code: "UNKNOWN"}
	}
	code := cmp.Or(errs[0].StatusCode, errs[0].ErrorCode)
	return &Error{Kind: classify(code, 0), Code: code, Message: errs[0].Message, Fields: errs[0].Fields}
}

// Query runs a SOQL query and follows nextRecordsUrl to the end.
func (c *Client) Query(ctx context.Context, soql string) ([]map[string]any, error) {
	var all []map[string]any
	path := "/query?q=" + url.QueryEscape(soql)
	for path != "" {
		var page struct {
			Done           bool             `json:"done"`
			NextRecordsURL string           `json:"nextRecordsUrl"`
			Records        []map[string]any `json:"records"`
		}
		if _, err := c.do(ctx, http.MethodGet, path, nil, &page); err != nil {
			return all, err
		}
		for _, r := range page.Records {
			delete(r, "attributes")
			all = append(all, r)
		}
		path = ""
		if !page.Done {
			if !strings.HasPrefix(page.NextRecordsURL, "/services/") {
				return all, &Error{Kind: Transient, Code: "BAD_RESPONSE", Message: "query page without a usable nextRecordsUrl"}
			}
			path = page.NextRecordsURL
		}
	}
	return all, nil
}

// Count runs a SELECT COUNT() query and returns the number of rows it
// matches (the answer's totalSize; COUNT() returns no records).
func (c *Client) Count(ctx context.Context, soql string) (int, error) {
	var page struct {
		TotalSize *int `json:"totalSize"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/query?q="+url.QueryEscape(soql), nil, &page); err != nil {
		return 0, err
	}
	if page.TotalSize == nil {
		return 0, &Error{Kind: Transient, Code: "BAD_RESPONSE", Message: "COUNT() answer without totalSize"}
	}
	return *page.TotalSize, nil
}

// FindID returns the id of the record whose keyField is key, "" when there
// is none. Several matches are a permanent error.
func (c *Client) FindID(ctx context.Context, object, keyField, key string) (string, error) {
	var rec struct {
		ID string `json:"Id"`
	}
	status, err := c.do(ctx, http.MethodGet, "/sobjects/"+url.PathEscape(object)+"/"+url.PathEscape(keyField)+"/"+pathValue(key)+"?fields=Id", nil, &rec)
	var e *Error
	switch {
	case errors.As(err, &e) && status == http.StatusNotFound:
		return "", nil
	case status == http.StatusMultipleChoices:
		return "", &Error{Kind: Permanent, Code: "MULTIPLE_CHOICES", Status: status, Message: "more than one record has this external id"}
	case err != nil:
		return "", err
	}
	return rec.ID, nil
}

// Fields renders mapped field values as a Salesforce request body: text,
// numbers and booleans as JSON, a null to clear the field, and a
// reference as a relationship by external id: PatientId → "Patient":
// {"attributes":{"type":"Account"},"SourceSystemIdentifier":"..."},
// Parent__c → "Parent__r": {...}.
func Fields(fields []mappings.Field) map[string]any {
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		v := f.Value
		switch v.Kind {
		case mappings.Absent:
		case mappings.Null:
			out[f.Name] = nil
		case mappings.String:
			out[f.Name] = v.Text
		case mappings.Number:
			out[f.Name] = json.Number(v.Text)
		case mappings.Bool:
			out[f.Name] = v.Text == "true"
		case mappings.Ref:
			out[relationshipName(f.Name)] = map[string]any{
				"attributes":   map[string]string{"type": v.Ref.Object},
				v.Ref.KeyField: v.Ref.Key,
			}
		}
	}
	return out
}

// relationshipName is the relationship of a lookup field: X__c → X__r,
// PatientId → Patient.
func relationshipName(field string) string {
	switch {
	case strings.HasSuffix(field, "__c"):
		return strings.TrimSuffix(field, "__c") + "__r"
	case strings.HasSuffix(field, "Id") && len(field) > 2:
		return strings.TrimSuffix(field, "Id")
	}
	return field
}

// Update changes existing records by id through sObject Collections
// (PATCH /composite/sobjects), up to MaxBatch per request; each record
// holds its "Id".
func (c *Client) Update(ctx context.Context, object string, records []map[string]any) ([]Result, error) {
	results := make([]Result, len(records))
	for start := 0; start < len(records); start += MaxBatch {
		chunk := records[start:min(start+MaxBatch, len(records))]
		body := struct {
			AllOrNone bool             `json:"allOrNone"`
			Records   []map[string]any `json:"records"`
		}{Records: make([]map[string]any, len(chunk))}
		for i, r := range chunk {
			rec := make(map[string]any, len(r)+1)
			for k, v := range r {
				rec[k] = v
			}
			rec["attributes"] = map[string]string{"type": object}
			body.Records[i] = rec
		}
		var out []collectionResult
		_, err := c.do(ctx, http.MethodPatch, "/composite/sobjects", body, &out)
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
		c.fill(results[start:], len(chunk), out, err)
	}
	return results, nil
}

// Delete removes records by id (DELETE /composite/sobjects?ids=), up to
// MaxBatch per request. A record already gone counts as deleted.
func (c *Client) Delete(ctx context.Context, ids []string) ([]Result, error) {
	results := make([]Result, len(ids))
	for start := 0; start < len(ids); start += MaxBatch {
		chunk := ids[start:min(start+MaxBatch, len(ids))]
		var out []collectionResult
		_, err := c.do(ctx, http.MethodDelete, "/composite/sobjects?allOrNone=false&ids="+url.QueryEscape(strings.Join(chunk, ",")), nil, &out)
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
		c.fill(results[start:], len(chunk), out, err)
		for i := range chunk {
			if e, ok := results[start+i].Err.(*Error); ok && (e.Code == "ENTITY_IS_DELETED" || e.Code == "INVALID_CROSS_REFERENCE_KEY") {
				results[start+i] = Result{ID: chunk[i]}
			}
		}
	}
	return results, nil
}

// fill turns a collection answer into results.
func (c *Client) fill(results []Result, n int, out []collectionResult, err error) {
	if err == nil && len(out) != n {
		err = &Error{Kind: Transient, Code: "BAD_RESPONSE", Message: fmt.Sprintf("%d results for %d records", len(out), n)}
	}
	for i := range n {
		switch {
		case err != nil:
			results[i] = Result{Err: err}
		case out[i].Success:
			results[i] = Result{ID: out[i].ID, Created: out[i].Created}
		default:
			results[i] = Result{Err: recordError(out[i].Errors)}
		}
	}
}

// Composite limits: at most MaxSubrequests subrequests per call, of which
// at most MaxCollectionSubrequests are sObject Collections or queries
// (https://developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-composite-post.html;
// /work/shared/crm-metadata/salesforce/docs_facts.json REST.composite).
// Every subrequest UpsertGroups sends is a collection, so the second
// limit is the one that binds.
const (
	MaxSubrequests           = 25
	MaxCollectionSubrequests = 5
)

// UpsertGroup is the records of one object, upserted by keyField.
type UpsertGroup struct {
	Object, KeyField string
	Records          []map[string]any
}

// UpsertGroups upserts several groups, in order, packing their collection
// requests (up to MaxBatch records each) into Composite calls of up to
// MaxCollectionSubrequests: a call counts once against the org's API
// allocation, however many objects it writes. Each call sets
// "collateSubrequests": false, since Salesforce otherwise (the default
// since API 49.0) runs subrequests in any order, and a group may reference
// records an earlier group writes; the calls go one after another. Records repeating a key
// within a group are merged as in Upsert. Results follow the groups'
// records. Once a call failed as a whole and transiently (5xx, no answer,
// after the client's retries), the calls after it are not sent: their
// records get that failure. The error is for context cancellation only.
func (c *Client) UpsertGroups(ctx context.Context, groups []UpsertGroup) ([][]Result, error) {
	results := make([][]Result, len(groups))
	type sub struct {
		group   int
		indexes [][]int // the group's record indexes behind each merged record
		body    map[string]any
		path    string
	}
	var subs []sub
	for gi, g := range groups {
		results[gi] = make([]Result, len(g.Records))
		merged, indexes := mergeByKey(g.Records, g.KeyField, results[gi])
		path := "/services/data/v" + c.cfg.APIVersion + "/composite/sobjects/" + url.PathEscape(g.Object) + "/" + url.PathEscape(g.KeyField)
		for start := 0; start < len(merged); start += MaxBatch {
			end := min(start+MaxBatch, len(merged))
			recs := make([]map[string]any, 0, end-start)
			for _, m := range merged[start:end] {
				rec := make(map[string]any, len(m)+1)
				for k, v := range m {
					rec[k] = v
				}
				rec["attributes"] = map[string]string{"type": g.Object}
				recs = append(recs, rec)
			}
			subs = append(subs, sub{group: gi, indexes: indexes[start:end], path: path,
				body: map[string]any{"allOrNone": false, "records": recs}})
		}
	}
	var down error // a call failed as a whole, transiently: Salesforce is failing
	for start := 0; start < len(subs); start += MaxCollectionSubrequests {
		chunk := subs[start:min(start+MaxCollectionSubrequests, len(subs))]
		if down != nil {
			// Not sent: its records get the failure, and are retried
			// when the pipeline's breaker finds Salesforce answering.
			for _, s := range chunk {
				for _, idxs := range s.indexes {
					for _, idx := range idxs {
						results[s.group][idx] = Result{Err: down}
					}
				}
			}
			continue
		}
		req := struct {
			AllOrNone          bool             `json:"allOrNone"`
			CollateSubrequests bool             `json:"collateSubrequests"`
			CompositeRequest   []map[string]any `json:"compositeRequest"`
		}{CollateSubrequests: false, CompositeRequest: make([]map[string]any, len(chunk))}
		for i, s := range chunk {
			req.CompositeRequest[i] = map[string]any{"method": http.MethodPatch, "url": s.path, "referenceId": fmt.Sprintf("g%d", start+i), "body": s.body}
		}
		var out struct {
			CompositeResponse []struct {
				Body           json.RawMessage `json:"body"`
				HTTPStatusCode int             `json:"httpStatusCode"`
			} `json:"compositeResponse"`
		}
		_, err := c.do(ctx, http.MethodPost, "/composite", req, &out)
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
		if err != nil && KindOf(err) == Transient {
			down = err
		}
		switch {
		case err != nil, len(out.CompositeResponse) == len(chunk):
		case len(out.CompositeResponse) == 1 && out.CompositeResponse[0].HTTPStatusCode >= 400:
			// The call as a whole was refused (LIMIT_EXCEEDED over the
			// Composite limits): one element answers for all subrequests.
			err = subrequestError(out.CompositeResponse[0].HTTPStatusCode, out.CompositeResponse[0].Body, c.cfg.ThrottlePause)
		default:
			err = &Error{Kind: Transient, Code: "BAD_RESPONSE", Message: "composite answer does not match the request"}
		}
		for i, s := range chunk {
			var subErr error = err
			var recs []collectionResult
			if err == nil {
				sr := out.CompositeResponse[i]
				if sr.HTTPStatusCode >= 200 && sr.HTTPStatusCode < 300 {
					if json.Unmarshal(sr.Body, &recs) != nil || len(recs) != len(s.indexes) {
						subErr = &Error{Kind: Transient, Code: "BAD_RESPONSE", Message: "collection answer does not match the request"}
					}
				} else {
					subErr = subrequestError(sr.HTTPStatusCode, sr.Body, c.cfg.ThrottlePause)
				}
			}
			for n, idxs := range s.indexes {
				var r Result
				switch {
				case subErr != nil:
					r.Err = subErr
				case recs[n].Success:
					r.ID, r.Created = recs[n].ID, recs[n].Created
				default:
					r.Err = recordError(recs[n].Errors)
				}
				for _, idx := range idxs {
					results[s.group][idx] = r
				}
			}
		}
	}
	return results, nil
}

// mergeByKey merges records repeating a key (later fields win) and
// returns the merged records with the indexes behind each; records
// without a key get a MISSING_KEY result.
func mergeByKey(records []map[string]any, keyField string, results []Result) ([]map[string]any, [][]int) {
	var merged []map[string]any
	var indexes [][]int
	pos := map[string]int{}
	for i, r := range records {
		key, ok := r[keyField].(string)
		if !ok || key == "" {
			results[i].Err = &Error{Kind: Permanent, Code: "MISSING_KEY", Message: "the record has no value for " + keyField}
			continue
		}
		k := strings.ToLower(key)
		j, seen := pos[k]
		if !seen {
			j = len(merged)
			pos[k] = j
			merged = append(merged, map[string]any{})
			indexes = append(indexes, nil)
		}
		for f, v := range r {
			merged[j][f] = v
		}
		indexes[j] = append(indexes[j], i)
	}
	return merged, indexes
}

// subrequestError classifies a failed composite subrequest.
func subrequestError(status int, body json.RawMessage, throttlePause time.Duration) *Error {
	resp := &http.Response{StatusCode: status, Header: http.Header{}}
	return parseError(resp, body, throttlePause)
}

package salesforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

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
	type merged struct {
		fields  map[string]any
		indexes []int
	}
	var order []*merged
	byKey := map[string]*merged{}
	for i, r := range records {
		key, ok := r[keyField].(string)
		if !ok || key == "" {
			results[i].Err = &Error{Kind: Permanent, Code: "MISSING_KEY", Message: "the record has no value for " + keyField}
			continue
		}
		k := strings.ToLower(key) // external ids match case-insensitively
		m := byKey[k]
		if m == nil {
			m = &merged{fields: map[string]any{}}
			byKey[k] = m
			order = append(order, m)
		}
		for f, v := range r {
			m.fields[f] = v
		}
		m.indexes = append(m.indexes, i)
	}
	path := "/composite/sobjects/" + url.PathEscape(object) + "/" + url.PathEscape(keyField)
	for start := 0; start < len(order); start += MaxBatch {
		chunk := order[start:min(start+MaxBatch, len(order))]
		body := struct {
			AllOrNone bool             `json:"allOrNone"`
			Records   []map[string]any `json:"records"`
		}{Records: make([]map[string]any, len(chunk))}
		for i, m := range chunk {
			rec := make(map[string]any, len(m.fields)+1)
			for k, v := range m.fields {
				rec[k] = v
			}
			rec["attributes"] = map[string]string{"type": object}
			body.Records[i] = rec
		}
		var out []collectionResult
		_, err := c.do(ctx, http.MethodPatch, path, body, &out)
		if err == nil && len(out) != len(chunk) {
			err = &Error{Kind: Transient, Code: "BAD_RESPONSE", Message: fmt.Sprintf("%d results for %d records", len(out), len(chunk))}
		}
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
		for i, m := range chunk {
			var r Result
			switch {
			case err != nil:
				r.Err = err
			case out[i].Success:
				r.ID, r.Created = out[i].ID, out[i].Created
			default:
				r.Err = recordError(out[i].Errors)
			}
			for _, idx := range m.indexes {
				results[idx] = r
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
	code := orDefault(errs[0].StatusCode, errs[0].ErrorCode)
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

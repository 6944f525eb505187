package salesforce

import (
	"context"
	"fmt"
	"strings"

	"github.com/ehrbridge/ehrbridge/connectors"
)

// NoteReader reads write-back's notes with SOQL and writes their status
// with an sObject update.
type NoteReader struct{ Client *Client }

var _ connectors.NoteReader = (*NoteReader)(nil)

// Flavor implements connectors.NoteReader.
func (*NoteReader) Flavor() string { return "salesforce" }

// IDField implements connectors.NoteReader.
func (*NoteReader) IDField(string) string { return "Id" }

// Find implements connectors.NoteReader.
func (c *NoteReader) Find(ctx context.Context, q connectors.Query) ([]map[string]any, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT %s FROM %s", strings.Join(q.Fields, ", "), q.Object)
	for i, w := range q.Where {
		if i == 0 {
			b.WriteString(" WHERE ")
		} else {
			b.WriteString(" AND ")
		}
		fmt.Fprintf(&b, "%s %s %s", w.Field, w.Op, soqlValue(w.Value))
	}
	if q.OrderBy != "" {
		fmt.Fprintf(&b, " ORDER BY %s", q.OrderBy)
		if q.Desc {
			b.WriteString(" DESC NULLS LAST")
		}
	}
	if q.Limit > 0 {
		fmt.Fprintf(&b, " LIMIT %d", q.Limit)
	}
	recs, err := c.Client.Query(ctx, b.String())
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, len(recs))
	for i, r := range recs {
		out[i] = r
	}
	return out, nil
}

// soqlValue is a SOQL literal: text quoted, backslash-escaped.
func soqlValue(v any) string {
	return connectors.Literal(v, func(s string) string {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	})
}

// Update implements connectors.NoteReader.
func (c *NoteReader) Update(ctx context.Context, object, id string, fields map[string]any) error {
	rec := map[string]any{"Id": id}
	for k, v := range fields {
		rec[k] = v
	}
	res, err := c.Client.Update(ctx, object, []map[string]any{rec})
	if err != nil {
		return err
	}
	return res[0].Err
}

package dynamics

import (
	"context"
	"net/url"
	"strconv"
	"strings"

	"github.com/ehrbridge/ehrbridge/connectors"
)

// NoteReader reads write-back's notes with OData queries and writes their
// status with a PATCH of the row.
type NoteReader struct{ Client *Client }

var _ connectors.NoteReader = (*NoteReader)(nil)

// Flavor implements connectors.NoteReader.
func (*NoteReader) Flavor() string { return "dataverse" }

// IDField implements connectors.NoteReader: Dataverse's primary key is
// <logical name>id, an activity's (task, ...) activityid.
func (*NoteReader) IDField(object string) string {
	switch strings.ToLower(object) {
	case "task", "email", "phonecall", "appointment", "letter", "fax":
		return "activityid"
	}
	return strings.ToLower(object) + "id"
}

// Find implements connectors.NoteReader.
func (c *NoteReader) Find(ctx context.Context, q connectors.Query) ([]map[string]any, error) {
	parts := []string{"$select=" + odataEscape(strings.Join(q.Fields, ","))}
	var filters []string
	for _, w := range q.Where {
		op := map[string]string{"=": "eq", "!=": "ne", ">": "gt", ">=": "ge"}[w.Op]
		filters = append(filters, w.Field+" "+op+" "+odataValue(w.Value))
	}
	if len(filters) > 0 {
		parts = append(parts, "$filter="+odataEscape(strings.Join(filters, " and ")))
	}
	if q.OrderBy != "" {
		// The primary key after the column makes the order deterministic,
		// as Dataverse asks of any paged query ("Ordering and paging" in
		// learn.microsoft.com/power-apps/developer/data-platform/webapi/
		// query/page-results): modifiedon has whole seconds.
		o, dir := q.OrderBy, " asc"
		if q.Desc {
			dir = " desc"
		}
		o += dir + "," + c.IDField(q.Object) + dir
		parts = append(parts, "$orderby="+odataEscape(o))
	}
	if q.Limit > 0 {
		parts = append(parts, "$top="+strconv.Itoa(q.Limit))
	}
	return c.Client.Query(ctx, q.Object, strings.Join(parts, "&"), q.Limit)
}

// odataEscape percent-encodes a query option's value (spaces as %20).
func odataEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// odataValue is an OData literal: GUIDs bare, text quoted (” for ').
func odataValue(v any) string {
	return connectors.Literal(v, func(s string) string {
		if isGUID(s) {
			return s
		}
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	})
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// Update implements connectors.NoteReader.
func (c *NoteReader) Update(ctx context.Context, object, id string, fields map[string]any) error {
	return c.Client.Update(ctx, object, id, fields)
}

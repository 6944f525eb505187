package writeback

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors/dynamics"
	"github.com/ehrbridge/ehrbridge/connectors/salesforce"
)

// CRM is where the notes live: the few reads and the one write
// write-back makes, over Salesforce (SOQL, sObject update) or Dataverse
// (OData queries, PATCH).
type CRM interface {
	// Find returns the records of q.Object matching every condition.
	Find(ctx context.Context, q Query) ([]map[string]any, error)
	// Update writes fields on the record with id.
	Update(ctx context.Context, object, id string, fields map[string]any) error
	// IDField is the primary key field of an object (Id; contactid).
	IDField(object string) string
	// Flavor is "salesforce" or "dataverse", for the defaults of Config.
	Flavor() string
}

// Query is one read: fields of object's records matching Where (all of
// them), ordered by OrderBy (descending with Desc, nulls last), at most
// Limit (0: no limit).
type Query struct {
	Object  string
	Fields  []string
	Where   []Cond
	OrderBy string
	Desc    bool
	Limit   int
}

// Cond compares a field with a value: Op is "=", "!=" or ">". Values are
// text, bool, int or time.Time.
type Cond struct {
	Field, Op string
	Value     any
}

// SalesforceCRM reads notes with SOQL and writes their status with an
// sObject update.
type SalesforceCRM struct{ Client *salesforce.Client }

// Flavor implements CRM.
func (*SalesforceCRM) Flavor() string { return "salesforce" }

// IDField implements CRM.
func (*SalesforceCRM) IDField(string) string { return "Id" }

// Find implements CRM.
func (c *SalesforceCRM) Find(ctx context.Context, q Query) ([]map[string]any, error) {
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
	return literal(v, func(s string) string {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	})
}

// literal writes v as a query literal, its text through text: SOQL and
// OData agree on everything else.
func literal(v any, text func(string) string) string {
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case time.Time:
		return x.UTC().Format("2006-01-02T15:04:05Z")
	case string:
		return text(x)
	}
	return "null"
}

// Update implements CRM.
func (c *SalesforceCRM) Update(ctx context.Context, object, id string, fields map[string]any) error {
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

// DataverseCRM reads notes with OData queries and writes their status
// with a PATCH of the row.
type DataverseCRM struct{ Client *dynamics.Client }

// Flavor implements CRM.
func (*DataverseCRM) Flavor() string { return "dataverse" }

// IDField implements CRM: Dataverse's primary key is <logical name>id, an
// activity's (task, ...) activityid.
func (*DataverseCRM) IDField(object string) string {
	switch strings.ToLower(object) {
	case "task", "email", "phonecall", "appointment", "letter", "fax":
		return "activityid"
	}
	return strings.ToLower(object) + "id"
}

// Find implements CRM.
func (c *DataverseCRM) Find(ctx context.Context, q Query) ([]map[string]any, error) {
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
	return literal(v, func(s string) string {
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

// Update implements CRM.
func (c *DataverseCRM) Update(ctx context.Context, object, id string, fields map[string]any) error {
	return c.Client.Update(ctx, object, id, fields)
}

package sandbox

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Dataverse tables live beside the Salesforce objects in the same store
// (one lock, one journal, one data file), in store.dv by logical name.
// A row's primary key column is <logical name>id (a GUID); createdon,
// modifiedon and versionnumber are kept as Dataverse keeps them. A lookup
// set with @odata.bind is stored as _<navigation property>_value, the way
// Dataverse returns lookups, by the lookup column's name. The tables of
// dvschema.json have their published columns and navigation properties
// (dv_schema.go); others accept any column. Alternate keys are learned: a set of
// columns used in an upsert's key is a key of the table from then on, so
// a create that repeats its values is refused as a duplicate.

// SandboxUserID is the Dataverse side's user (WhoAmI), the owner of the
// rows it creates unless a row names another.
const SandboxUserID = "00000000-5a4d-4b00-8000-000000000a01"

// dvError is a Dataverse error: HTTP status and {"error":{"code","message"}}.
type dvError struct {
	status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *dvError) Error() string { return e.Code + ": " + e.Message }

// Dataverse error codes the sandbox answers with.
const (
	dvNotFound      = "0x80040217" // ObjectDoesNotExist
	dvDuplicate     = "0x80040237" // DuplicateRecord
	dvInvalidArg    = "0x80040203" // InvalidArgument
	dvBadRequest    = "0x80060888" // the OData request is malformed
	dvUnauthorized  = "0x80072560"
	dvTooMany       = "0x80072322" // number of requests exceeded the limit
	dvTooLong       = "0x80072321" // combined execution time exceeded the limit
	dvTooConcurrent = "0x80072326" // number of concurrent requests exceeded the limit
	dvUnavailable   = "0x80040216" // unexpected: the sandbox's injected 5xx
)

func dverr(status int, code, format string, args ...any) *dvError {
	return &dvError{status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// dvTable returns a Dataverse table by logical name, creating it when
// create is set. Its Prefix holds the entity set name.
func (s *store) dvTable(logical string, create bool) *objectStore {
	if s.dv == nil {
		s.dv = map[string]*objectStore{}
	}
	t := s.dv[logical]
	if t == nil && create {
		t = &objectStore{Name: logical, Prefix: entitySetOf(logical), Records: map[string]Record{}}
		s.dv[logical] = t
	}
	return t
}

// dvLookup finds a table by logical or entity set name (case-insensitive).
func (s *store) dvLookup(name string) *objectStore {
	name = strings.ToLower(name)
	if t := s.dv[name]; t != nil {
		return t
	}
	for _, t := range s.dv {
		if t.Prefix == name {
			return t
		}
	}
	return nil
}

// entitySetOf is a table's entity set name: its logical name in the
// plural, as Dataverse makes it for tables whose names it did not pick
// by hand.
func entitySetOf(logical string) string {
	switch {
	case strings.HasSuffix(logical, "y") && len(logical) > 1 && !strings.ContainsRune("aeiou", rune(logical[len(logical)-2])):
		return logical[:len(logical)-1] + "ies"
	case strings.HasSuffix(logical, "s"), strings.HasSuffix(logical, "x"), strings.HasSuffix(logical, "ch"), strings.HasSuffix(logical, "sh"):
		return logical + "es"
	}
	return logical + "s"
}

// logicalOfSet guesses the logical name of an entity set not seen yet.
func logicalOfSet(set string) string {
	set = strings.ToLower(set)
	for _, cut := range []struct{ suffix, repl string }{{"ies", "y"}, {"sses", "ss"}, {"xes", "x"}, {"ches", "ch"}, {"shes", "sh"}, {"s", ""}} {
		if base, ok := strings.CutSuffix(set, cut.suffix); ok && base != "" {
			if entitySetOf(base+cut.repl) == set {
				return base + cut.repl
			}
		}
	}
	return ""
}

// dvTableOfSet resolves an entity set name from a URL: a known table, or
// a new one named by de-pluralising.
func (s *store) dvTableOfSet(set string, create bool) *objectStore {
	set = strings.ToLower(set)
	for _, t := range s.dv {
		if t.Prefix == set {
			return t
		}
	}
	logical := logicalOfSet(set)
	if logical == "" || !validName(logical) {
		return nil
	}
	return s.dvTable(logical, create)
}

// primaryKey is a table's primary key column: <logical name>id, or
// activityid for the activity tables (task, email, ...).
func primaryKey(t *objectStore) string {
	switch t.Name {
	case "task", "email", "phonecall", "appointment", "letter", "fax", "activitypointer":
		return "activityid"
	}
	return t.Name + "id"
}

// newGUID makes a GUID from the store's sequence, so ids are unique and
// repeatable in tests.
func (s *store) newGUID() string {
	s.seq++
	return fmt.Sprintf("%08x-5a4d-4b00-8000-%012x", uint32(s.seq>>48)^0x5eed, s.seq&0xffffffffffff)
}

// isGUID reports whether v is a GUID in its canonical form.
func isGUID(v string) bool {
	if len(v) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := v[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// dvStamp is Dataverse's date-time format.
func (s *store) dvStamp() string { return s.now().UTC().Format("2006-01-02T15:04:05Z") }

// dvKey is an alternate key: column names and values, in URL order.
type dvKey struct {
	cols []string
	vals []any
}

func (k dvKey) String() string {
	parts := make([]string, len(k.cols))
	for i, c := range k.cols {
		parts[i] = fmt.Sprintf("%s=%v", c, k.vals[i])
	}
	return strings.Join(parts, ",")
}

// dvEqual compares a stored value with a key or filter literal: strings
// case-insensitively (Dataverse's default collation), numbers by value.
func dvEqual(stored, lit any) bool {
	switch a := stored.(type) {
	case string:
		b, ok := lit.(string)
		return ok && strings.EqualFold(a, b)
	case float64:
		b, ok := lit.(float64)
		return ok && a == b
	case bool:
		b, ok := lit.(bool)
		return ok && a == b
	case nil:
		return lit == nil
	}
	return false
}

// dvFind returns the ids of rows matching every column of the key.
func dvFind(t *objectStore, k dvKey) []string {
	var out []string
	for _, id := range t.Order {
		r := t.Records[id]
		match := true
		for i, c := range k.cols {
			if !dvEqual(r[c], k.vals[i]) {
				match = false
				break
			}
		}
		if match {
			out = append(out, id)
		}
	}
	return out
}

// learnKey remembers the columns of an alternate key.
func (s *store) learnKey(t *objectStore, cols []string) {
	if s.dvKeys == nil {
		s.dvKeys = map[string][][]string{}
	}
	sorted := append([]string(nil), cols...)
	sort.Strings(sorted)
	for _, k := range s.dvKeys[t.Name] {
		if strings.Join(k, ",") == strings.Join(sorted, ",") {
			return
		}
	}
	s.dvKeys[t.Name] = append(s.dvKeys[t.Name], sorted)
}

// dvDuplicate reports a row other than id with the same values of a
// learned key as fields.
func (s *store) dvDuplicate(t *objectStore, id string, fields Record) *dvError {
	for _, cols := range s.dvKeys[t.Name] {
		k := dvKey{cols: cols}
		complete := true
		for _, c := range cols {
			v, ok := fields[c]
			if !ok || v == nil {
				complete = false
				break
			}
			k.vals = append(k.vals, v)
		}
		if !complete {
			continue
		}
		for _, other := range dvFind(t, k) {
			if other != id {
				return dverr(412, dvDuplicate, "A record with matching key values already exists.")
			}
		}
	}
	return nil
}

// dvBind is one @odata.bind: the lookup column and the row it points at.
type dvBind struct {
	nav, target string
}

// dvResolveBinds turns "nav@odata.bind": "/set(id)" or "/set(key='v')"
// (also absolute URLs and, in a batch, "$n" Content-ID references already
// replaced by the caller) into _nav_value columns.
func (s *store) dvResolveBinds(table *objectStore, fields Record) (Record, *dvError) {
	return s.dvColumns(table, fields, true)
}

// dvColumns checks a body against the table's schema and turns it into
// columns; with resolve false it checks only (references are not looked
// up, their lookup columns are left empty), for tests that check what a
// mapping set sends without the rows it refers to.
func (s *store) dvColumns(table *objectStore, fields Record, resolve bool) (Record, *dvError) {
	out := Record{}
	schema := s.dvTables().tables[table.Name]
	for _, name := range sortedKeys(fields) {
		v := fields[name]
		nav, isBind := strings.CutSuffix(name, "@odata.bind")
		if !isBind {
			if strings.Contains(name, "@") {
				continue // annotations (@odata.type, ...) are not columns
			}
			if !validName(name) {
				return nil, dverr(400, dvBadRequest, "Invalid property '%s' was found in entity.", name)
			}
			if schema != nil && !schema.knowsColumn(name) {
				return nil, dvUnknownColumn(table, name)
			}
			if schema != nil {
				checked, derr := dvCheckValue(table.Name, schema.cols[strings.ToLower(name)], v)
				if derr != nil {
					return nil, derr
				}
				v = checked
			}
			out[strings.ToLower(name)] = v
			continue
		}
		var declared *dvNav
		if schema != nil && !siteOwn(nav) {
			n, ok := schema.Navigation[nav]
			if !ok && !schema.def.PartialAttributes {
				return nil, dvUndeclaredNav(table, nav)
			}
			if ok {
				declared = &n
			}
		}
		ref, ok := v.(string)
		if !ok {
			return nil, dverr(400, dvBadRequest, "The value of %s must be an entity reference URL.", name)
		}
		if ref == "" || ref == "null" {
			out["_"+strings.ToLower(nav)+"_value"] = nil
			continue
		}
		if i := strings.Index(ref, "/api/data/"); i >= 0 {
			ref = ref[i:]
			if j := strings.IndexByte(ref[len("/api/data/"):], '/'); j >= 0 {
				ref = ref[len("/api/data/")+j:]
			}
		}
		if u, err := url.PathUnescape(ref); err == nil {
			ref = u // a client may percent-encode the key value, as in URLs
		}
		set, pred, err := splitEntityRef(strings.TrimPrefix(ref, "/"))
		if err != nil {
			return nil, dverr(400, dvBadRequest, "The reference of %s is not an entity URL.", name)
		}
		if derr := dvCheckKeyChars(pred.key); derr != nil {
			return nil, derr
		}
		target, known := "", s.dvTables().bySet[strings.ToLower(set)]
		if known != nil {
			target = known.name
		}
		var t *objectStore
		if resolve {
			if t = s.dvTableOfSet(set, false); t == nil {
				return nil, dverr(404, dvNotFound, "Entity set %s of the reference %s does not exist.", set, name)
			}
			target = t.Name
		}
		// A navigation property points at one table (owner and customer
		// lookups at several): a reference to a row of another table is
		// refused. Dataverse's text for this is not published; this one
		// is the sandbox's.
		if declared != nil && target != "" && declared.Target != "owner" && declared.Target != "customer" && declared.Target != target {
			return nil, dvPayload(table.Prefix, "Microsoft.OData.ODataException: The navigation property '%s' refers to the table '%s'; the reference is to a row of '%s'.", nav, declared.Target, target)
		}
		id := ""
		if resolve {
			var derr *dvError
			if id, derr = s.dvRowOf(t, pred); derr != nil {
				return nil, dverr(404, dvNotFound, "The record referenced by %s does not exist.", name)
			}
		}
		// A polymorphic lookup is bound through a navigation property per
		// target table (regardingobjectid_contact) and read back as the
		// lookup's own column (_regardingobjectid_value).
		col := strings.ToLower(nav)
		if base, ok := strings.CutSuffix(col, "_"+target); ok && base != "" && target != "" {
			col = base
		}
		if declared != nil {
			col = declared.Column
		}
		out["_"+col+"_value"] = id
	}
	return out, nil
}

// dvMissing is the 404 for a predicate that names no row: by GUID
// "<table> With Id = <guid> Does Not Exist", by alternate key without the
// key's values, which are patient data (MRNs).
func dvMissing(t *objectStore, pred dvPredicate) *dvError {
	if pred.id != "" {
		return dverr(404, dvNotFound, "%s With Id = %s Does Not Exist", t.Name, pred.id)
	}
	return dverr(404, dvNotFound, "A record with the specified key values does not exist in %s entity", t.Name)
}

// dvRowOf finds the row a key predicate names: a GUID or alternate key.
func (s *store) dvRowOf(t *objectStore, pred dvPredicate) (string, *dvError) {
	if pred.id != "" {
		if t.Records[pred.id] == nil {
			return "", dvMissing(t, pred)
		}
		return pred.id, nil
	}
	ids := dvFind(t, pred.key)
	switch len(ids) {
	case 0:
		return "", dvMissing(t, pred)
	case 1:
		return ids[0], nil
	}
	return "", dverr(400, dvDuplicate, "More than one record matches the key values in %s entity", t.Name)
}

// dvCreate adds a row and returns its id. The primary key may be given.
func (s *store) dvCreate(t *objectStore, fields Record) (string, *dvError) {
	cols, err := s.dvResolveBinds(t, fields)
	if err != nil {
		return "", err
	}
	if derr := s.dvRule(t); derr != nil {
		return "", derr
	}
	pk := primaryKey(t)
	id := ""
	if v, ok := cols[pk]; ok {
		sv, isStr := v.(string)
		if !isStr || !isGUID(sv) {
			return "", dverr(400, dvBadRequest, "The primary key %s must be a GUID.", pk)
		}
		id = strings.ToLower(sv)
		if t.Records[id] != nil {
			return "", dverr(412, dvDuplicate, "Cannot insert duplicate key.")
		}
	} else {
		id = s.newGUID()
	}
	if derr := s.dvDuplicate(t, id, cols); derr != nil {
		return "", derr
	}
	now := s.dvStamp()
	r := Record{pk: id, "createdon": now, "modifiedon": now, "versionnumber": float64(s.seq), "_ownerid_value": SandboxUserID}
	for k, v := range cols {
		if k != pk {
			r[k] = v
		}
	}
	t.Records[id] = r
	t.Order = append(t.Order, id)
	s.note(t.Name, id, nil, 0, true)
	s.dirty = true
	return id, nil
}

// dvUpdate changes a row.
func (s *store) dvUpdate(t *objectStore, id string, fields Record) *dvError {
	r := t.Records[id]
	if r == nil {
		return dverr(404, dvNotFound, "%s With Id = %s Does Not Exist", t.Name, id)
	}
	cols, err := s.dvResolveBinds(t, fields)
	if err != nil {
		return err
	}
	pk := primaryKey(t)
	if v, ok := cols[pk]; ok && !dvEqual(r[pk], v) {
		return dverr(400, dvBadRequest, "The primary key %s cannot be changed.", pk)
	}
	if derr := s.dvRule(t); derr != nil {
		return derr
	}
	merged := copyRecord(r)
	for k, v := range cols {
		merged[k] = v
	}
	if derr := s.dvDuplicate(t, id, merged); derr != nil {
		return derr
	}
	s.note(t.Name, id, copyRecord(r), 0, true)
	for k, v := range cols {
		r[k] = v
	}
	s.seq++
	r["modifiedon"], r["versionnumber"] = s.dvStamp(), float64(s.seq)
	s.dirty = true
	return nil
}

// dvDelete removes a row.
func (s *store) dvDelete(t *objectStore, id string) *dvError {
	if t.Records[id] == nil {
		return dverr(404, dvNotFound, "%s With Id = %s Does Not Exist", t.Name, id)
	}
	s.drop(t, id, true)
	return nil
}

// dvParseTime reads a Dataverse date-time (or date) for comparisons.
func dvParseTime(v string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// dvNames lists the Dataverse tables, sorted.
func (s *store) dvNames() []string {
	out := make([]string, 0, len(s.dv))
	for name := range s.dv {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

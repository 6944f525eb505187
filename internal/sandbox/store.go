package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// apiError is one Salesforce error: {"errorCode","message","fields"} in a
// REST error body, {"statusCode","message","fields"} in a collection
// result.
type apiError struct {
	Code    string   `json:"errorCode"`
	Message string   `json:"message"`
	Fields  []string `json:"fields,omitempty"`
	// saveError marks the error of a record's save (a validation rule):
	// Salesforce's error envelope then always carries "fields", [] when
	// the error names none (the error shows at the top of the page).
	saveError bool
}

// MarshalJSON writes "fields" always for a save error, else only when it
// names fields.
func (e *apiError) MarshalJSON() ([]byte, error) {
	type plain apiError
	if !e.saveError {
		return json.Marshal((*plain)(e))
	}
	return json.Marshal(struct {
		Code    string   `json:"errorCode"`
		Message string   `json:"message"`
		Fields  []string `json:"fields"`
	}{e.Code, e.Message, orEmpty(e.Fields)})
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// ErrorCode is Salesforce's errorCode; FieldNames the fields it names.
func (e *apiError) ErrorCode() string    { return e.Code }
func (e *apiError) FieldNames() []string { return e.Fields }

func errf(code string, fields []string, format string, args ...any) *apiError {
	return &apiError{Code: code, Message: fmt.Sprintf(format, args...), Fields: fields}
}

// store holds the org's records: objects by lower-case name, records by
// id, in creation order.
type store struct {
	mu      sync.Mutex
	objects map[string]*objectStore
	seq     uint64
	now     func() time.Time
	dirty   bool
	// journal, while a collection request runs, records how to undo each
	// change, for allOrNone.
	journal *[]undo
	// dv holds the Dataverse tables by logical name (dv_store.go), dvKeys
	// their learned alternate keys.
	dv     map[string]*objectStore
	dvKeys map[string][][]string
	// schema is the org's Salesforce schema (sf_schema.go); nil accepts
	// any object and field.
	schema *sfSchema
	// dvSchema is the Dataverse schema (dv_schema.go); nil is the
	// published one.
	dvSchema *dvSchemaSet
	// rules are the injected validation rules by side and object
	// (rulefault.go).
	rules map[string]ruleFault
}

// undo restores one record: to before (nil: it did not exist).
type undo struct {
	object string
	id     string
	before Record
	pos    int  // its place in Order, for a deleted record
	dv     bool // a Dataverse row
}

// begin starts journaling changes; rollback undoes them, end stops.
func (s *store) begin() *[]undo {
	j := &[]undo{}
	s.journal = j
	return j
}

func (s *store) end() { s.journal = nil }

func (s *store) note(object, id string, before Record, pos int, dv bool) {
	if s.journal != nil {
		*s.journal = append(*s.journal, undo{object: object, id: id, before: before, pos: pos, dv: dv})
	}
}

func (s *store) rollback(j *[]undo) {
	for i := len(*j) - 1; i >= 0; i-- {
		u := (*j)[i]
		o := s.object(u.object, true)
		if u.dv {
			o = s.dvTable(u.object, true)
		}
		_, exists := o.Records[u.id]
		switch {
		case u.before == nil:
			delete(o.Records, u.id)
			o.Order = removeID(o.Order, u.id)
		case !exists:
			o.Records[u.id] = u.before
			pos := min(u.pos, len(o.Order))
			o.Order = append(o.Order[:pos], append([]string{u.id}, o.Order[pos:]...)...)
		default:
			o.Records[u.id] = u.before
		}
	}
	s.dirty = true
}

func removeID(order []string, id string) []string {
	for i, x := range order {
		if x == id {
			return append(order[:i], order[i+1:]...)
		}
	}
	return order
}

// objectOfID finds the object a record id belongs to, or "".
func (s *store) objectOfID(id string) string {
	for _, o := range s.objects {
		if _, ok := o.Records[id]; ok {
			return o.Name
		}
	}
	return ""
}

type objectStore struct {
	Name    string            `json:"name"`
	Prefix  string            `json:"prefix"`
	Records map[string]Record `json:"records"`
	Order   []string          `json:"order"`
}

// Standard key prefixes; other objects get a00, a01, ... in order of
// first use, as custom objects do.
var knownPrefixes = map[string]string{
	"account": "001", "contact": "003", "case": "500", "task": "00T", "event": "00U", "user": "005",
	"clinicalencounter": "0dd", "careobservation": "0jk", "healthcondition": "0ha", "allergyintolerance": "0ai",
	"serviceappointment": "08p", "codeset": "0ic", "codesetbundle": "0ib", "identifier": "0ie", "note": "002",
}

func newStore(now func() time.Time) *store {
	return &store{objects: map[string]*objectStore{}, now: now}
}

// object returns the store of an object, creating it when create is set.
func (s *store) object(name string, create bool) *objectStore {
	key := strings.ToLower(name)
	o := s.objects[key]
	if o == nil && create {
		prefix, ok := knownPrefixes[key]
		if !ok {
			prefix = fmt.Sprintf("a%02d", len(s.objects)%100)
		}
		o = &objectStore{Name: name, Prefix: prefix, Records: map[string]Record{}}
		s.objects[key] = o
	}
	return o
}

// newID makes an 18-character Salesforce id: key prefix, 12 characters,
// and the 3-character case-safe suffix.
func (s *store) newID(prefix string) string {
	s.seq++
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var body [12]byte
	n := s.seq
	for i := 11; i >= 0; i-- {
		body[i] = digits[n%62]
		n /= 62
	}
	body[0], body[1] = '0', '0'
	id15 := prefix + "00" + string(body[2:])
	return id15 + caseSafeSuffix(id15)
}

func caseSafeSuffix(id15 string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	out := make([]byte, 3)
	for chunk := 0; chunk < 3; chunk++ {
		flags := 0
		for i := 0; i < 5; i++ {
			c := id15[chunk*5+i]
			if c >= 'A' && c <= 'Z' {
				flags |= 1 << i
			}
		}
		out[chunk] = alphabet[flags]
	}
	return string(out)
}

// stamp is the time format of Salesforce system fields.
func (s *store) stamp() string { return s.now().UTC().Format("2006-01-02T15:04:05.000+0000") }

// find returns the ids of the object's records whose field equals value;
// fold matches case-insensitively (see sfObject.folds).
func (o *objectStore) find(field, value string, fold bool) []string {
	var out []string
	for _, id := range o.Order {
		v, ok := o.Records[id].Get(field)
		if !ok {
			continue
		}
		if s, isStr := v.(string); isStr && (s == value || fold && strings.EqualFold(s, value)) {
			out = append(out, id)
		} else if f, isNum := v.(float64); isNum && fmt.Sprint(f) == value {
			out = append(out, id)
		}
	}
	return out
}

// resolve replaces relationship references in fields with ids:
// "Patient": {"attributes":{"type":"Account"},"SourceSystemIdentifier":"x"}
// sets PatientId, "Parent__r": {...} sets Parent__c. It returns the
// fields to write.
func (s *store) resolve(fields Record) (Record, *apiError) {
	out := Record{}
	for name, v := range fields {
		ref, isMap := v.(map[string]any)
		if !isMap {
			out[name] = v
			continue
		}
		target := ""
		if attrs, ok := ref["attributes"].(map[string]any); ok {
			target, _ = attrs["type"].(string)
		}
		if target == "" {
			target = knownLookups[strings.ToLower(name)]
		}
		if target == "" {
			return nil, errf("INVALID_FIELD", []string{name}, "Cannot resolve the relationship %s: name its object with \"attributes\": {\"type\": ...}", name)
		}
		var keyField, keyValue string
		for k, kv := range ref {
			if k == "attributes" {
				continue
			}
			str, ok := kv.(string)
			if !ok || keyField != "" {
				return nil, errf("INVALID_FIELD", []string{name}, "The relationship %s must name exactly one external id field", name)
			}
			keyField, keyValue = k, str
		}
		if keyField == "" {
			return nil, errf("INVALID_FIELD", []string{name}, "The relationship %s names no external id field", name)
		}
		if apiErr := s.schema.checkRef(name, target, keyField); apiErr != nil {
			return nil, apiErr
		}
		to, _ := s.schema.object(target)
		var ids []string
		if o := s.object(target, false); o != nil {
			ids = o.find(keyField, keyValue, to.folds(keyField))
		}
		switch len(ids) {
		case 0:
			return nil, errf("INVALID_FIELD", []string{name}, "Foreign key external ID: %s not found for field %s in entity %s", keyValue, keyField, target)
		case 1:
		default:
			return nil, errf("INVALID_FIELD", []string{name}, "Foreign key external ID: %s matched more than one record for field %s in entity %s", keyValue, keyField, target)
		}
		out[lookupField(name)] = ids[0]
	}
	return out, nil
}

// lookupField is the id field of a relationship name: Parent__r →
// Parent__c, Patient → PatientId.
func lookupField(rel string) string {
	if strings.HasSuffix(rel, "__r") {
		return strings.TrimSuffix(rel, "__r") + "__c"
	}
	return rel + "Id"
}

// knownLookups names the object of standard relationships the shipped
// mappings use, for references written without attributes.type.
var knownLookups = map[string]string{
	"patient": "Account", "observedsubject": "Account", "parentrecord": "Account", "account": "Account",
	"code": "CodeSet", "conditioncode": "CodeSetBundle", "clinicalencounter": "ClinicalEncounter", "encounter": "ClinicalEncounter",
	"codeset1": "CodeSet", "contact": "Contact", "what": "Account", "who": "Contact",
}

// requiredFields lists fields a create must set, for the objects whose
// rules the sandbox enforces: one of each group.
var requiredFields = map[string][][]string{
	"account":           {{"Name", "LastName"}},
	"contact":           {{"LastName"}},
	"clinicalencounter": {{"PatientId"}},
	"careobservation":   {{"ObservedSubjectId"}},
	"healthcondition":   {{"PatientId"}},
}

// checkRequired reports a REQUIRED_FIELD_MISSING for a record about to be
// created.
func checkRequired(object string, r Record) *apiError {
	for _, group := range requiredFields[strings.ToLower(object)] {
		found := false
		for _, f := range group {
			if v, ok := r.Get(f); ok && v != nil && v != "" {
				found = true
			}
		}
		if !found {
			return errf("REQUIRED_FIELD_MISSING", group, "Required fields are missing: [%s]", strings.Join(group, ", "))
		}
	}
	return nil
}

// validateFields rejects field names that cannot be API names and fields
// the caller may not write.
func validateFields(r Record) *apiError {
	for name := range r {
		if !validName(name) {
			return errf("INVALID_FIELD", []string{name}, "No such column '%s' on sobject", name)
		}
		switch strings.ToLower(name) {
		case "id", "createddate", "lastmodifieddate", "systemmodstamp", "isdeleted":
			return errf("INVALID_FIELD_FOR_INSERT_UPDATE", []string{name}, "Unable to create/update fields: %s", name)
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 80 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// setField writes a field, keeping the case of an existing name.
func setField(r Record, name string, v any) {
	for k := range r {
		if strings.EqualFold(k, name) {
			r[k] = v
			return
		}
	}
	r[name] = v
}

// create adds a record and returns its id.
func (s *store) create(object string, fields Record) (string, *apiError) {
	schema, err := s.schema.object(object)
	if err != nil {
		return "", err
	}
	if err := validateFields(fields); err != nil {
		return "", err
	}
	resolved, err := s.resolve(fields)
	if err != nil {
		return "", err
	}
	if err := checkRequired(object, resolved); err != nil {
		return "", err
	}
	if err := schema.check(resolved, true); err != nil {
		return "", err
	}
	if err := schema.checkUnique(s.object(object, false), resolved, ""); err != nil {
		return "", err
	}
	if err := s.sfRule(object); err != nil {
		return "", err
	}
	o := s.object(object, true)
	id := s.newID(o.Prefix)
	now := s.stamp()
	r := Record{"Id": id, "CreatedDate": now, "LastModifiedDate": now, "SystemModstamp": now}
	for k, v := range resolved {
		r[k] = v
	}
	o.Records[id] = r
	o.Order = append(o.Order, id)
	s.note(o.Name, id, nil, 0, false)
	s.dirty = true
	return id, nil
}

// update changes an existing record.
func (s *store) update(object, id string, fields Record) *apiError {
	schema, apiErr := s.schema.object(object)
	if apiErr != nil {
		return apiErr
	}
	o := s.object(object, false)
	if o == nil || o.Records[id] == nil {
		return errf("NOT_FOUND", nil, "The requested resource does not exist")
	}
	if err := validateFields(fields); err != nil {
		return err
	}
	resolved, err := s.resolve(fields)
	if err != nil {
		return err
	}
	if err := schema.check(resolved, false); err != nil {
		return err
	}
	if err := schema.checkUnique(o, resolved, id); err != nil {
		return err
	}
	if err := s.sfRule(object); err != nil {
		return err
	}
	r := o.Records[id]
	s.note(o.Name, id, copyRecord(r), 0, false)
	for k, v := range resolved {
		setField(r, k, v)
	}
	now := s.stamp()
	r["LastModifiedDate"], r["SystemModstamp"] = now, now
	s.dirty = true
	return nil
}

// upsert creates or updates the record whose keyField is key. The key
// field must be an External ID, or, with idLookupOK (the single-record
// upsert), a standard idLookup field of a standard object (see
// sfObject.upsertKey); else, as for an unknown field, 404 NOT_FOUND
// "Provided external ID field does not exist or is not accessible: X"
// (Salesforce's answer for a field that is not an External ID, as
// reported in https://github.com/restforce/restforce/issues/182 and
// https://github.com/g8rswimmer/go-sfdc/issues/50).
func (s *store) upsert(object, keyField, key string, fields Record, idLookupOK bool) (id string, created bool, urls []string, apiErr *apiError) {
	schema, apiErr := s.schema.object(object)
	if apiErr != nil {
		return "", false, nil, apiErr
	}
	if _, unknown := schema.field(keyField); !validName(keyField) || unknown != nil || !schema.upsertKey(keyField, idLookupOK) {
		return "", false, nil, errf("NOT_FOUND", nil, "Provided external ID field does not exist or is not accessible: %s", keyField)
	}
	if v, ok := fields.Get(keyField); ok {
		if str, isStr := v.(string); !isStr || !strings.EqualFold(str, key) {
			return "", false, nil, errf("INVALID_FIELD", []string{keyField}, "The external ID field %s in the body does not match the value in the URL", keyField)
		}
	}
	if key == "" {
		return "", false, nil, errf("NOT_FOUND", nil, "The requested resource does not exist")
	}
	o := s.object(object, true)
	ids := o.find(keyField, key, schema.folds(keyField))
	switch len(ids) {
	case 0:
		withKey := Record{}
		for k, v := range fields {
			withKey[k] = v
		}
		setField(withKey, keyField, key)
		id, err := s.create(object, withKey)
		return id, true, nil, err
	case 1:
		return ids[0], false, nil, s.update(object, ids[0], fields)
	}
	// "If the external ID matches multiple existing records, then a 300
	// error is returned, and no records are created or updated"
	// (https://developer.salesforce.com/docs/platform/api-rest/guide/resources-sobject-upsert-patch.html);
	// the body lists the matching records' URLs ("a 300 response with the
	// list of matching records",
	// https://developer.salesforce.com/docs/atlas.en-us.224.0.api_rest.meta/api_rest/dome_upsert.htm).
	for _, id := range ids {
		urls = append(urls, "/sobjects/"+o.Name+"/"+id)
	}
	return "", false, urls, errf("MULTIPLE_CHOICES", nil, "Multiple records found with the external ID %s", keyField)
}

// remove deletes a record.
func (s *store) remove(object, id string) *apiError {
	o := s.object(object, false)
	if o == nil || o.Records[id] == nil {
		return errf("ENTITY_IS_DELETED", nil, "entity is deleted")
	}
	s.drop(o, id, false)
	return nil
}

// drop deletes an existing record, noting it for rollback (dv: a
// Dataverse row).
func (s *store) drop(o *objectStore, id string, dv bool) {
	s.note(o.Name, id, o.Records[id], max(slices.Index(o.Order, id), 0), dv)
	delete(o.Records, id)
	o.Order = removeID(o.Order, id)
	s.dirty = true
}

// records returns copies of an object's records in creation order.
func (s *store) records(object string) []Record {
	o := s.object(object, false)
	if o == nil {
		return []Record{}
	}
	out := make([]Record, 0, len(o.Order))
	for _, id := range o.Order {
		out = append(out, copyRecord(o.Records[id]))
	}
	return out
}

func copyRecord(r Record) Record {
	out := make(Record, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

// counts returns the number of records per object.
func (s *store) counts() map[string]int {
	out := map[string]int{}
	for _, o := range s.objects {
		out[o.Name] = len(o.Order)
	}
	for _, t := range s.dv {
		out[t.Name] = len(t.Order)
	}
	return out
}

// snapshot is the persisted form.
type snapshot struct {
	Seq       uint64                  `json:"seq"`
	Objects   map[string]*objectStore `json:"objects"`
	Dataverse map[string]*objectStore `json:"dataverse,omitempty"`
	DVKeys    map[string][][]string   `json:"dataverse_keys,omitempty"`
}

// save writes the store to path atomically (temp file, fsync, rename).
func (s *store) save(path string) error {
	data, err := json.Marshal(snapshot{Seq: s.seq, Objects: s.objects, Dataverse: s.dv, DVKeys: s.dvKeys})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".sandbox-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	s.dirty = false
	return nil
}

// load reads a saved store; a missing file is an empty store.
func (s *store) load(path string) error {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("sandbox data %s: %w", path, err)
	}
	if snap.Objects != nil {
		s.objects = snap.Objects
	}
	s.dv, s.dvKeys = snap.Dataverse, snap.DVKeys
	for _, m := range []map[string]*objectStore{s.objects, s.dv} {
		for _, o := range m {
			if o.Records == nil {
				o.Records = map[string]Record{}
			}
		}
	}
	s.seq = snap.Seq
	return nil
}

// objectNames lists the objects that have records, sorted.
func (s *store) objectNames() []string {
	var out []string
	for _, o := range s.objects {
		out = append(out, o.Name)
	}
	sort.Strings(out)
	return out
}

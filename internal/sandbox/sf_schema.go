package sandbox

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// publishedSchema is the Salesforce schema the sandbox enforces by
// default: the Health Cloud objects the shipped sets write, in the
// describe format (a JSON list of GET .../sobjects/X/describe results,
// the format `ehrbridge lint --schema` reads), each field and picklist
// value with the source it was taken from. It is generated, not edited:
//
//go:generate go run ./internal/sfschemagen -out sfschema.json
//go:embed sfschema.json
var publishedSchema []byte

// sfSchema is what the sandbox knows of the org's objects, by lower-case
// name.
//
// Sources of the answers: REST status codes and the {errorCode, message,
// fields} body, https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm
// (404: the requested resource does not exist); "No such column 'X' on
// sobject of type Y" as the REST API answers a create with an unknown
// field (quoted in https://github.com/MinnPost/object-sync-for-salesforce/issues/194);
// INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST, a StatusCode of the API
// (enumerated by restforce, https://rubydoc.info/gems/restforce/7.5.0/Restforce/ErrorCode/InvalidOrNullForRestrictedPicklist);
// restricted picklists only where restrictedPicklist is true, "By default
// this value is false" (https://developer.salesforce.com/docs/atlas.en-us.260.0.api_meta.meta/api_meta/meta_picklist.htm);
// STRING_TOO_LONG since API 15.0, before which values were truncated
// (https://help.salesforce.com/s/articleView?id=000382141); a create must
// set the fields that are neither nillable nor defaulted on create
// (fieldsToNull, https://developer.salesforce.com/docs/atlas.en-us.244.0.api.meta/api/sforce_api_calls_concepts_core_data_objects.htm).
type sfSchema struct {
	objects map[string]*sfObject
}

type sfObject struct {
	Name   string
	Label  string
	Fields []*sfField
	byName map[string]*sfField // by lower-case name
}

// sfField is a field in the describe format (DescribeSObjectResult's
// Field, https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_describesobjects_describesobjectresult.htm),
// the properties the sandbox enforces and serves.
type sfField struct {
	Name               string        `json:"name"`
	Label              string        `json:"label"`
	Type               string        `json:"type"`
	Length             int           `json:"length"`
	Precision          int           `json:"precision"`
	Scale              int           `json:"scale"`
	Nillable           bool          `json:"nillable"`
	Createable         bool          `json:"createable"`
	Updateable         bool          `json:"updateable"`
	DefaultedOnCreate  bool          `json:"defaultedOnCreate"`
	ExternalID         bool          `json:"externalId"`
	IDLookup           bool          `json:"idLookup"`
	Unique             bool          `json:"unique"`
	CaseSensitive      bool          `json:"caseSensitive"`
	RestrictedPicklist bool          `json:"restrictedPicklist"`
	PicklistValues     []sfPickValue `json:"picklistValues"`
	ReferenceTo        []string      `json:"referenceTo"`
	RelationshipName   string        `json:"relationshipName"`
}

type sfPickValue struct {
	Value  string `json:"value"`
	Active bool   `json:"active"`
}

// loadSchema reads the published schema and then the site's describe
// files, which extend it: a described field replaces the published field
// of that name (the org's describe is the org's truth), new objects and
// fields are added, and published fields the describe leaves out stay.
func loadSchema(files []string) (*sfSchema, error) {
	s := &sfSchema{objects: map[string]*sfObject{}}
	if err := readSchemas("sfschema.json", publishedSchema, files, s.add); err != nil {
		return nil, err
	}
	return s, nil
}

// readSchemas feeds add the embedded schema, then each site file.
func readSchemas(name string, embedded []byte, files []string, add func([]byte) error) error {
	if err := add(embedded); err != nil {
		return fmt.Errorf("sandbox: embedded %s: %w", name, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("sandbox: schema %s: %w", f, err)
		}
		if err := add(data); err != nil {
			return fmt.Errorf("sandbox: schema %s: %w", f, err)
		}
	}
	return nil
}

// metadataDocs splits a metadata file into its documents: a JSON list of
// them, an OData collection {"value":[...]}, or one document.
func metadataDocs(data []byte) ([]json.RawMessage, error) {
	if strings.HasPrefix(strings.TrimSpace(string(data)), "[") {
		var list []json.RawMessage
		if err := json.Unmarshal(data, &list); err != nil {
			return nil, fmt.Errorf("not JSON: %v", err)
		}
		return list, nil
	}
	var coll struct {
		Value []json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(data, &coll); err != nil {
		return nil, fmt.Errorf("not JSON: %v", err)
	}
	if coll.Value != nil {
		return coll.Value, nil
	}
	return []json.RawMessage{data}, nil
}

// add reads one describe result or a JSON list of them. Dataverse entity
// metadata (LogicalName, no fields) is skipped: that side has its own
// store.
func (s *sfSchema) add(data []byte) error {
	list, err := metadataDocs(data)
	if err != nil {
		return err
	}
	for i, raw := range list {
		var o struct {
			Name   string     `json:"name"`
			Label  string     `json:"label"`
			Fields []*sfField `json:"fields"`
		}
		if err := json.Unmarshal(raw, &o); err != nil {
			return fmt.Errorf("item %d: not a Salesforce describe result: %v", i, err)
		}
		if o.Name == "" || o.Fields == nil {
			var probe struct {
				LogicalName string `json:"LogicalName"`
				Value       any    `json:"value"`
			}
			if json.Unmarshal(raw, &probe) == nil && (probe.LogicalName != "" || probe.Value != nil) {
				continue
			}
			return fmt.Errorf("item %d: not a Salesforce describe result (name and fields)", i)
		}
		have := s.objects[strings.ToLower(o.Name)]
		if have == nil {
			have = &sfObject{Name: o.Name, byName: map[string]*sfField{}}
			s.objects[strings.ToLower(o.Name)] = have
		}
		if o.Label != "" {
			have.Label = o.Label
		}
		for _, f := range o.Fields {
			if old := have.byName[strings.ToLower(f.Name)]; old != nil {
				*old = *f
				continue
			}
			have.Fields = append(have.Fields, f)
			have.byName[strings.ToLower(f.Name)] = f
		}
	}
	return nil
}

// object is the schema of an sObject, or an error as Salesforce answers
// for an unknown one (404 NOT_FOUND on /sobjects/X: "The requested
// resource does not exist"). A nil schema knows every object.
func (s *sfSchema) object(name string) (*sfObject, *apiError) {
	if s == nil {
		return nil, nil
	}
	if o := s.objects[strings.ToLower(name)]; o != nil {
		return o, nil
	}
	return nil, errf("NOT_FOUND", nil, "The requested resource does not exist")
}

// field is a field of the object, or Salesforce's INVALID_FIELD for an
// unknown one ("No such column 'X' on sobject of type Y").
func (o *sfObject) field(name string) (*sfField, *apiError) {
	if o == nil {
		return nil, nil
	}
	if f := o.byName[strings.ToLower(name)]; f != nil {
		return f, nil
	}
	return nil, errf("INVALID_FIELD", []string{name}, "No such column '%s' on sobject of type %s", name, o.Name)
}

// checkRef checks a relationship reference, name: {"attributes":
// {"type": target}, keyField: ...}: the target object and its key fields
// must exist, and each must identify a record: a custom External ID
// field or a standard field whose idLookup property is true. That is the
// rule the Bulk API documents for relationship fields ("Relationship
// Fields in a Header Row": only indexed fields, custom External ID fields
// or standard idLookup fields, identify the parent,
// https://developer.salesforce.com/docs/platform/api-asynch/guide/relationship-fields-in-a-header-row-2-0.html);
// the REST API guide publishes no other, so the sandbox follows it. A
// nil schema accepts any.
func (s *sfSchema) checkRef(name, target string, keyFields ...string) *apiError {
	to, apiErr := s.object(target)
	if apiErr != nil {
		// Salesforce's answer to a reference to an unknown type is not
		// published: the code and text are the sandbox's.
		return errf("INVALID_FIELD", []string{name}, "The relationship %s names the unknown sObject type %s", name, target)
	}
	for _, k := range keyFields {
		f, apiErr := to.field(k)
		if apiErr != nil {
			return apiErr
		}
		if f != nil && !f.ExternalID && (!f.IDLookup || f.Type == "id") {
			// Code and text are the sandbox's: Salesforce's answer to
			// a reference through a field that is not an External ID
			// is not published.
			return errf("INVALID_FIELD", []string{name}, "The relationship %s cannot use %s.%s: it is neither an External ID field nor an idLookup field", name, to.Name, f.Name)
		}
	}
	return nil
}

// upsertKey reports whether an upsert may match records by the field:
// an External ID field; with idLookupOK, also a field whose idLookup
// property is true on a standard object ("On standard objects, this call
// can use the name of any field with the idLookup instead of the
// external ID", upsert(),
// https://developer.salesforce.com/docs/atlas.en-us.262.0.api.meta/api/sforce_api_calls_upsert.htm;
// the single-record REST upsert follows it; sObject Collections upsert
// documents "Only external ids are supported"). Never the record Id: "In
// REST API, upsert uses external ids, not record ids"
// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_upsert.htm).
// A nil object (no schema) accepts any field.
func (o *sfObject) upsertKey(name string, idLookupOK bool) bool {
	if o == nil {
		return true
	}
	f := o.byName[strings.ToLower(name)]
	if f == nil || f.Type == "id" {
		return false
	}
	return f.ExternalID || idLookupOK && f.IDLookup && !strings.HasSuffix(o.Name, "__c")
}

// folds reports whether records are matched by the field
// case-insensitively: "Custom field matching is case-insensitive only if
// the custom field has the Unique and Treat "ABC" and "abc" as duplicate
// values (case insensitive) attributes selected"
// (https://developer.salesforce.com/docs/atlas.en-us.apexcode.meta/apexcode/langCon_apex_dml_examples_upsert.htm).
// Standard fields (idLookup ones such as SourceSystemIdentifier) and
// fields of no schema match case-insensitively, as the sandbox always
// did: how Salesforce matches them is not published.
func (o *sfObject) folds(name string) bool {
	if o == nil {
		return true
	}
	f := o.byName[strings.ToLower(name)]
	if f == nil || !strings.HasSuffix(f.Name, "__c") {
		return true
	}
	return f.Unique && !f.CaseSensitive
}

// folds is sfObject.folds of the object's field; true where the schema
// knows neither.
func (s *sfSchema) folds(object, field string) bool {
	if s == nil {
		return true
	}
	return s.objects[strings.ToLower(object)].folds(field)
}

// checkUnique refuses a value of a Unique field that another record of
// the object already holds (compared as folds says): DUPLICATE_VALUE
// "duplicate value found: <field> duplicates value on record with id:
// <id>", Salesforce's answer (quoted in
// https://github.com/k-capehart/go-salesforce/issues/133). self is the
// record being updated ("" on create).
func (o *sfObject) checkUnique(store *objectStore, r Record, self string) *apiError {
	if o == nil || store == nil {
		return nil
	}
	for _, name := range sortedKeys(r) {
		f := o.byName[strings.ToLower(name)]
		str, isStr := r[name].(string)
		if f == nil || !f.Unique || !isStr || str == "" {
			continue
		}
		for _, id := range store.find(f.Name, str, o.folds(f.Name)) {
			if id != self {
				return errf("DUPLICATE_VALUE", []string{f.Name}, "duplicate value found: %s duplicates value on record with id: %s", f.Name, id)
			}
		}
	}
	return nil
}

// check checks resolved field values against the object's schema: field
// known, restricted picklist values allowed, text within its length, and
// on create the required fields set. Messages never carry the value
// (Salesforce's do; see doc.go).
func (o *sfObject) check(r Record, create bool) *apiError {
	if o == nil {
		return nil
	}
	for _, name := range sortedKeys(r) { // the same error for the same record, every time
		v := r[name]
		f, err := o.field(name)
		if err != nil {
			return err
		}
		if (v == nil || v == "") && !f.Nillable && f.Type != "boolean" && f.Type != "id" {
			// Clearing a required field, on create or update.
			return errf("REQUIRED_FIELD_MISSING", []string{f.Name}, "Required fields are missing: [%s]", f.Name)
		}
		str, isStr := v.(string)
		if !isStr {
			continue
		}
		if f.RestrictedPicklist && str != "" {
			values := []string{str}
			if f.Type == "multipicklist" {
				values = strings.Split(str, ";")
			}
			for _, x := range values {
				if !f.allows(x) {
					return errf("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", []string{f.Name}, "%s: bad value for restricted picklist field", f.Name)
				}
			}
		}
		if f.Length > 0 && textType(f.Type) && utf8.RuneCountInString(str) > f.Length {
			return errf("STRING_TOO_LONG", []string{f.Name}, "%s: data value too large (max length=%d)", f.Name, f.Length)
		}
	}
	if !create {
		return nil
	}
	for _, f := range o.Fields {
		if f.Nillable || !f.Createable || f.DefaultedOnCreate || f.Type == "boolean" || f.Type == "id" {
			continue
		}
		if v, ok := r.Get(f.Name); !ok || v == nil || v == "" {
			return errf("REQUIRED_FIELD_MISSING", []string{f.Name}, "Required fields are missing: [%s]", f.Name)
		}
	}
	return nil
}

// allows reports whether v is an active value of the picklist
// (case-sensitive, as API names are).
func (f *sfField) allows(v string) bool {
	for _, p := range f.PicklistValues {
		if p.Active && p.Value == v {
			return true
		}
	}
	return false
}

// textType reports whether the describe type holds text whose length
// Salesforce checks.
func textType(t string) bool {
	switch t {
	case "string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "encryptedstring":
		return true
	}
	return false
}

// Schema is the Salesforce schema a Server enforces, for checking records
// without a server (the corpus proof of the shipped sets).
type Schema struct{ s *sfSchema }

// LoadSchema reads the published schema extended by the given describe
// files, as Options.Schemas.
func LoadSchema(files ...string) (*Schema, error) {
	s, err := loadSchema(files)
	if err != nil {
		return nil, err
	}
	return &Schema{s: s}, nil
}

// Check checks a record as the connector sends it (relationships as
// {"attributes":{"type":...}, KeyField: value}) against the schema, as
// a create (required fields) or an update. With anyPicklist every
// picklist whose values the schema lists is checked as if restricted:
// stricter than the sandbox, for values nobody has confirmed the org
// accepts. The error is Salesforce's errorCode and message.
func (s *Schema) Check(object string, fields map[string]any, create, anyPicklist bool) error {
	o, apiErr := s.s.object(object)
	if apiErr != nil {
		return apiErr
	}
	if err := validateFields(fields); err != nil {
		return err
	}
	resolved := Record{}
	for name, v := range fields {
		ref, isMap := v.(map[string]any)
		if !isMap {
			resolved[name] = v
			continue
		}
		var target string
		switch a := ref["attributes"].(type) {
		case map[string]any:
			target, _ = a["type"].(string)
		case map[string]string:
			target = a["type"]
		}
		var keys []string
		for k := range ref {
			if k != "attributes" {
				keys = append(keys, k)
			}
		}
		if apiErr := s.s.checkRef(name, target, keys...); apiErr != nil {
			return apiErr
		}
		resolved[lookupField(name)] = "000000000000000AAA"
	}
	if create {
		if err := checkRequired(object, resolved); err != nil {
			return err
		}
	}
	if anyPicklist {
		strict := &sfObject{Name: o.Name, byName: map[string]*sfField{}}
		for _, f := range o.Fields {
			c := *f
			c.RestrictedPicklist = c.RestrictedPicklist || len(c.PicklistValues) > 0
			strict.Fields = append(strict.Fields, &c)
			strict.byName[strings.ToLower(c.Name)] = &c
		}
		o = strict
	}
	if err := o.check(resolved, create); err != nil {
		return err
	}
	return nil
}

// CheckKey checks an op's key field as the sObject Collections upsert the
// connector sends it through does: an External ID field of the object
// ("Only external ids are supported"), else Salesforce's NOT_FOUND
// "Provided external ID field does not exist or is not accessible".
func (s *Schema) CheckKey(object, keyField string) error {
	o, apiErr := s.s.object(object)
	if apiErr != nil {
		return apiErr
	}
	if !o.upsertKey(keyField, false) {
		return errf("NOT_FOUND", []string{keyField}, "Provided external ID field does not exist or is not accessible: %s", keyField)
	}
	return nil
}

// systemFields are on every object whether or not a describe source lists
// them ("System Fields",
// https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/system_fields.htm):
// the store sets them on every record, and queries filter and sort by them.
var systemFields = map[string]bool{"id": true, "isdeleted": true, "createdbyid": true, "createddate": true,
	"lastmodifiedbyid": true, "lastmodifieddate": true, "systemmodstamp": true}

// known reports whether a field can be read: in the schema or a system
// field.
func (o *sfObject) known(name string) bool {
	return o.byName[strings.ToLower(name)] != nil || systemFields[strings.ToLower(name)]
}

// checkQuery refuses a SOQL query as Salesforce does (400): an unknown
// object INVALID_TYPE "sObject type 'X' is not supported." (quoted in
// https://bitbucket.org/RoseSilverSoftware/illuminatedcloud/issues/2144),
// an unknown field, in SELECT, WHERE or ORDER BY, INVALID_FIELD "No such
// column 'X' on entity 'Y'." (Salesforce adds the query text and the
// position, which the sandbox leaves out: the query holds patient data
// in its literals). A dotted relationship path is checked by its first
// name only, which must be a field or the relationship name of a lookup
// (the field name less "Id", or "__c" as "__r"); the target object's
// fields are not checked. A nil schema accepts any query.
func (s *sfSchema) checkQuery(q *Query) *apiError {
	if s == nil {
		return nil
	}
	o := s.objects[strings.ToLower(q.Object)]
	if o == nil {
		return errf("INVALID_TYPE", nil, "sObject type '%s' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.", q.Object)
	}
	for _, path := range q.Paths() {
		name := path[0]
		if len(path) > 1 {
			name = lookupField(name)
		}
		if !o.known(name) {
			return errf("INVALID_FIELD", nil, "No such column '%s' on entity '%s'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", path[0], o.Name)
		}
	}
	return nil
}

// checkGet refuses a GET of a record as Salesforce does: an unknown
// object 404 NOT_FOUND, a lookup through an unknown field 404 NOT_FOUND
// "Provided external ID field does not exist or is not accessible", as
// the upsert by that field; an unknown field in ?fields= 400
// INVALID_FIELD (the message is the one of a write: Salesforce's for a
// GET is not published).
func (s *sfSchema) checkGet(object, keyField, fields string) *apiError {
	if s == nil {
		return nil
	}
	o, apiErr := s.object(object)
	if apiErr != nil {
		return apiErr
	}
	if keyField != "" && !o.known(keyField) {
		return errf("NOT_FOUND", nil, "Provided external ID field does not exist or is not accessible: %s", keyField)
	}
	if fields == "" {
		return nil
	}
	for f := range strings.SplitSeq(fields, ",") {
		if f = strings.TrimSpace(f); !o.known(f) {
			_, apiErr := o.field(f)
			return apiErr
		}
	}
	return nil
}

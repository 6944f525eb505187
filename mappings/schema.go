package mappings

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Schemas describe CRM objects as saved from the org (or fetched by crm
// check), for lint: which fields exist, their types, lengths, picklist or
// option values, whether they are writable and required, which can be
// upsert keys, and (Dataverse) the navigation properties of lookups. Two
// formats are read:
//   - Salesforce describe (GET /services/data/vXX.X/sobjects/Account/describe),
//     or a JSON list of them;
//   - Dataverse entity metadata (GET /api/data/v9.2/EntityDefinitions(LogicalName='contact')?$expand=Attributes,Keys,ManyToOneRelationships),
//     or an OData collection {"value":[...]} of them; picklist options are
//     read where an attribute carries its OptionSet (the
//     PicklistAttributeMetadata cast's $expand=OptionSet, merged in).
//
// What a document leaves out is not checked: a describe without lengths
// checks no lengths.
type Schemas struct {
	objects map[string]*objectSchema // by lower-case name
}

type objectSchema struct {
	name      string
	source    string                  // file it came from
	fields    map[string]*fieldSchema // by lower-case name (and Dataverse SchemaName)
	keys      map[string]bool         // lower-case names of external id / alternate key fields
	keyNotes  map[string]string       // lower-case key field → why it cannot key an upsert although declared
	navs      map[string]*navSchema   // Dataverse navigation properties, by exact name
	hasNavs   bool                    // the document listed ManyToOneRelationships
	partial   bool                    // lists only some columns (the sandbox's PartialAttributes): others are not unknown
	dataverse bool
}

// fieldSchema is what a schema says of one field; zero values are "not
// said" where the flag beside them says so.
type fieldSchema struct {
	name       string
	typ        string // lower case: describe type or Dataverse AttributeType
	length     int    // text length; 0 unknown
	precision  *int   // decimal places
	min, max   *float64
	writeKnown bool // createable/updateable were given
	createable bool
	updateable bool
	required   string          // "blocker": the platform refuses a create without it; "warning": forms require it
	externalID bool            // Salesforce External ID
	unique     bool            // Salesforce Unique
	restricted bool            // Salesforce restricted picklist: other values are refused
	values     map[string]bool // active picklist values / option values (as text); nil unknown
	refTo      []string        // Salesforce referenceTo
}

// navSchema is a Dataverse single-valued navigation property.
type navSchema struct {
	name, column, target string
}

type sfDescribe struct {
	Name   string `json:"name"`
	Fields []struct {
		Name              string   `json:"name"`
		Type              string   `json:"type"`
		Length            int      `json:"length"`
		Scale             *int     `json:"scale"`
		Nillable          *bool    `json:"nillable"`
		Createable        *bool    `json:"createable"`
		Updateable        *bool    `json:"updateable"`
		DefaultedOnCreate bool     `json:"defaultedOnCreate"`
		ExternalID        bool     `json:"externalId"`
		IDLookup          bool     `json:"idLookup"`
		Unique            bool     `json:"unique"`
		Restricted        bool     `json:"restrictedPicklist"`
		ReferenceTo       []string `json:"referenceTo"`
		PicklistValues    []struct {
			Value  string `json:"value"`
			Active *bool  `json:"active"`
		} `json:"picklistValues"`
	} `json:"fields"`
}

type dvEntity struct {
	LogicalName string `json:"LogicalName"`
	// PartialAttributes marks a document listing only some of the
	// table's columns (the sandbox's task and systemuser): a column it
	// does not list is not known to be missing.
	PartialAttributes bool `json:"PartialAttributes"`
	Attributes        []struct {
		LogicalName   string `json:"LogicalName"`
		SchemaName    string `json:"SchemaName"`
		AttributeType string `json:"AttributeType"`
		RequiredLevel *struct {
			Value string `json:"Value"`
		} `json:"RequiredLevel"`
		IsValidForCreate *bool    `json:"IsValidForCreate"`
		IsValidForUpdate *bool    `json:"IsValidForUpdate"`
		MaxLength        int      `json:"MaxLength"`
		Precision        *int     `json:"Precision"`
		MinValue         *float64 `json:"MinValue"`
		MaxValue         *float64 `json:"MaxValue"`
		OptionSet        *struct {
			Options []struct {
				Value json.Number `json:"Value"`
			} `json:"Options"`
		} `json:"OptionSet"`
	} `json:"Attributes"`
	Keys []struct {
		KeyAttributes        []string `json:"KeyAttributes"`
		EntityKeyIndexStatus string   `json:"EntityKeyIndexStatus"`
	} `json:"Keys"`
	ManyToOneRelationships []struct {
		ReferencingAttribute                    string `json:"ReferencingAttribute"`
		ReferencedEntity                        string `json:"ReferencedEntity"`
		ReferencingEntityNavigationPropertyName string `json:"ReferencingEntityNavigationPropertyName"`
	} `json:"ManyToOneRelationships"`
}

// NewSchemas returns an empty set of schemas; Add fills it.
func NewSchemas() *Schemas { return &Schemas{objects: map[string]*objectSchema{}} }

// LoadSchemas reads schema files.
func LoadSchemas(paths []string) (*Schemas, error) {
	s := NewSchemas()
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("schema %s: cannot read: %s", p, errText(err))
		}
		if err := s.Add(p, data); err != nil {
			return nil, fmt.Errorf("schema %s: %w", p, err)
		}
	}
	return s, nil
}

// Add reads one metadata document, named source in what it reports: a
// Salesforce describe result or a JSON list of them, Dataverse entity
// metadata or an OData collection of it. A later document describing an
// object already known replaces it.
func (s *Schemas) Add(source string, data []byte) error { return s.add(source, data) }

func (s *Schemas) add(file string, data []byte) error {
	var probe struct {
		Fields      json.RawMessage `json:"fields"`
		LogicalName string          `json:"LogicalName"`
		Value       json.RawMessage `json:"value"`
	}
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "[") {
		var list []json.RawMessage
		if err := json.Unmarshal(data, &list); err != nil {
			return fmt.Errorf("not JSON: %v", err)
		}
		for _, item := range list {
			if err := s.add(file, item); err != nil {
				return err
			}
		}
		return nil
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	switch {
	case probe.Fields != nil:
		var d sfDescribe
		if err := json.Unmarshal(data, &d); err != nil || d.Name == "" {
			return fmt.Errorf("not a Salesforce describe result")
		}
		s.objects[strings.ToLower(d.Name)] = sfObject(file, &d)
	case probe.LogicalName != "":
		var d dvEntity
		if err := json.Unmarshal(data, &d); err != nil {
			return fmt.Errorf("not Dataverse entity metadata: %v", err)
		}
		s.objects[strings.ToLower(d.LogicalName)] = dvObject(file, &d)
	case probe.Value != nil:
		var list []json.RawMessage
		if err := json.Unmarshal(probe.Value, &list); err != nil {
			return fmt.Errorf("value is not a list of entity definitions")
		}
		for _, item := range list {
			if err := s.add(file, item); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("neither a Salesforce describe result (fields) nor Dataverse entity metadata (LogicalName)")
	}
	return nil
}

// Objects returns how many objects the schemas describe.
func (s *Schemas) Objects() int { return len(s.objects) }

func sfObject(file string, d *sfDescribe) *objectSchema {
	o := &objectSchema{name: d.Name, source: file, fields: map[string]*fieldSchema{}, keys: map[string]bool{}, keyNotes: map[string]string{}}
	for _, f := range d.Fields {
		fs := &fieldSchema{name: f.Name, typ: strings.ToLower(f.Type), externalID: f.ExternalID, unique: f.Unique,
			restricted: f.Restricted, refTo: f.ReferenceTo, precision: f.Scale}
		if textual(fs.typ) {
			fs.length = f.Length
		}
		if f.Createable != nil && f.Updateable != nil {
			fs.writeKnown, fs.createable, fs.updateable = true, *f.Createable, *f.Updateable
		}
		// Required on create, as the describe call documents it: not
		// nillable, createable and not defaulted on create.
		if f.Nillable != nil && !*f.Nillable && fs.writeKnown && fs.createable && !f.DefaultedOnCreate && fs.typ != "boolean" {
			fs.required = "blocker"
		}
		if len(f.PicklistValues) > 0 {
			fs.values = map[string]bool{}
			for _, v := range f.PicklistValues {
				if v.Active == nil || *v.Active {
					fs.values[v.Value] = true
				}
			}
		}
		o.fields[strings.ToLower(f.Name)] = fs
		switch {
		case f.Name == "Id":
			o.keys["id"] = true
		case f.ExternalID && !f.Unique:
			o.keyNotes[strings.ToLower(f.Name)] = "is an External ID but not Unique: two records with one key make every upsert of it fail (300 MULTIPLE_CHOICES); mark it Unique"
		case f.ExternalID:
			o.keys[strings.ToLower(f.Name)] = true
		}
	}
	return o
}

func dvObject(file string, d *dvEntity) *objectSchema {
	o := &objectSchema{name: d.LogicalName, source: file, fields: map[string]*fieldSchema{}, keys: map[string]bool{},
		keyNotes: map[string]string{}, navs: map[string]*navSchema{}, dataverse: true, partial: d.PartialAttributes}
	for _, a := range d.Attributes {
		fs := &fieldSchema{name: a.LogicalName, typ: strings.ToLower(a.AttributeType), length: a.MaxLength,
			precision: a.Precision, min: a.MinValue, max: a.MaxValue}
		if a.IsValidForCreate != nil && a.IsValidForUpdate != nil {
			fs.writeKnown, fs.createable, fs.updateable = true, *a.IsValidForCreate, *a.IsValidForUpdate
		}
		if a.RequiredLevel != nil && !platformSet(d.LogicalName, a.LogicalName, fs) {
			switch a.RequiredLevel.Value {
			case "SystemRequired":
				fs.required = "blocker"
			case "ApplicationRequired":
				fs.required = "warning"
			}
		}
		if a.OptionSet != nil {
			fs.values = map[string]bool{}
			for _, opt := range a.OptionSet.Options {
				fs.values[opt.Value.String()] = true
			}
		}
		o.fields[strings.ToLower(a.LogicalName)] = fs
		if a.SchemaName != "" {
			o.fields[strings.ToLower(a.SchemaName)] = fs
		}
	}
	for _, k := range d.Keys {
		if len(k.KeyAttributes) != 1 {
			continue
		}
		name := strings.ToLower(k.KeyAttributes[0])
		if st := k.EntityKeyIndexStatus; st != "" && st != "Active" {
			o.keyNotes[name] = "has an alternate key whose index is " + st + ", not Active: Dataverse cannot address rows by it yet"
			continue
		}
		o.keys[name] = true
	}
	o.keys[strings.ToLower(d.LogicalName)+"id"] = true
	if d.ManyToOneRelationships != nil {
		o.hasNavs = true
		for _, r := range d.ManyToOneRelationships {
			if r.ReferencingEntityNavigationPropertyName == "" {
				continue
			}
			o.navs[r.ReferencingEntityNavigationPropertyName] = &navSchema{name: r.ReferencingEntityNavigationPropertyName,
				column: strings.ToLower(r.ReferencingAttribute), target: strings.ToLower(r.ReferencedEntity)}
		}
	}
	return o
}

// platformSet reports a column Dataverse fills itself on create although
// it is required: the primary key, the owner (the caller), the state and
// status (their defaults), and what a create cannot set.
func platformSet(table, column string, fs *fieldSchema) bool {
	switch fs.typ {
	case "uniqueidentifier", "owner", "state", "status":
		return true
	}
	return column == table+"id" || (fs.writeKnown && !fs.createable)
}

// textual reports a type whose length limits the text it holds.
func textual(typ string) bool {
	switch typ {
	case "string", "textarea", "email", "phone", "url", "encryptedstring", "memo":
		return true
	}
	return false
}

// SchemaCheck is one check of a mapping target against a CRM schema:
// lint --schema reports the failed ones as problems (the warnings among
// them as lint warnings), crm check prints them all as a checklist. It
// names fields, never values.
type SchemaCheck struct {
	File      string
	Line, Col int
	Mapping   string
	Op        string
	Object    string
	Field     string // "" for a check of the object itself
	Check     string // what was checked: see the Check* constants
	OK        bool
	Warning   bool   // failed, but the CRM accepts the write (forms-only rules, open picklists)
	Msg       string // what is wrong and what to do, when !OK
}

// What a SchemaCheck checked.
const (
	CheckField      = "field present"       // the target field exists
	CheckKey        = "upsert key"          // the key field is an External ID + Unique (Salesforce) or an active alternate key (Dataverse)
	CheckWritable   = "writable"            // the field can be set on create and update (as the op needs)
	CheckType       = "type"                // what the expression gives suits the field's type
	CheckValue      = "picklist value"      // literal and table values are values of the picklist / option set
	CheckRequired   = "required on create"  // every field the CRM requires on create is written
	CheckLength     = "length"              // literal, table and truncate() lengths fit the field
	CheckNavigation = "navigation property" // Dataverse: a lookup is set through the right navigation property
	CheckReference  = "reference"           // a ref() points at an object the field can reference, through a key
)

// checkSchema checks a mapping's targets against the schemas. Objects
// without a schema are skipped.
func (l *loader) checkSchema(m *Mapping) {
	s := l.opts.Schemas
	report := func(c SchemaCheck) {
		c.File, c.Mapping = l.file, m.Name
		if l.opts.OnSchemaCheck != nil {
			l.opts.OnSchemaCheck(c)
		}
		switch {
		case c.OK:
		case c.Warning:
			m.lint = append(m.lint, Problem{File: l.file, Line: c.Line, Col: c.Col, Msg: "warning: " + c.Msg})
		default:
			l.add(c.Line, c.Col, "%s", c.Msg)
		}
	}
	for _, op := range m.ops {
		o := s.objects[strings.ToLower(op.Object)]
		if o == nil {
			continue
		}
		sc := schemaChecker{s: s, o: o, op: op, report: report}
		sc.key(op.KeyField, op.keyLine, op.keyCol, o, "key_field")
		written := map[string]bool{strings.ToLower(op.KeyField): true}
		for _, f := range op.fields {
			if fs := sc.field(f); fs != nil {
				written[strings.ToLower(fs.name)] = true
			}
		}
		if op.Action == Upsert {
			sc.required(written)
		}
	}
}

// schemaChecker checks one op against its object's schema.
type schemaChecker struct {
	s      *Schemas
	o      *objectSchema
	op     *opDef
	report func(SchemaCheck)
}

func (sc *schemaChecker) check(line, col int, field, what string, ok bool, format string, args ...any) {
	c := SchemaCheck{Line: line, Col: col, Op: sc.op.ID, Object: sc.o.name, Field: field, Check: what, OK: ok}
	if !ok {
		c.Msg = fmt.Sprintf("op %s: ", sc.op.ID) + fmt.Sprintf(format, args...)
	}
	sc.report(c)
}

func (sc *schemaChecker) warn(line, col int, field, what string, format string, args ...any) {
	sc.report(SchemaCheck{Line: line, Col: col, Op: sc.op.ID, Object: sc.o.name, Field: field, Check: what, Warning: true,
		Msg: fmt.Sprintf("op %s: ", sc.op.ID) + fmt.Sprintf(format, args...)})
}

// key checks that field can key an upsert of o: an External ID + Unique
// field (Salesforce), an active single-column alternate key (Dataverse).
func (sc *schemaChecker) key(field string, line, col int, o *objectSchema, what string) {
	c := SchemaCheck{Line: line, Col: col, Op: sc.op.ID, Object: o.name, Field: field, Check: CheckKey, OK: o.keys[strings.ToLower(field)]}
	what = "op " + sc.op.ID + ": " + what
	if !c.OK {
		switch note := o.keyNotes[strings.ToLower(field)]; {
		case o.fields[strings.ToLower(field)] == nil:
			c.Check = CheckField
			c.Msg = fmt.Sprintf("%s %s is not a field of %s (schema %s)", what, field, o.name, o.source)
		case note != "":
			c.Msg = fmt.Sprintf("%s %s of %s %s (schema %s)", what, field, o.name, note, o.source)
		case o.dataverse:
			c.Msg = fmt.Sprintf("%s %s of %s is not an alternate key (schema %s); define a key on it", what, field, o.name, o.source)
		default:
			c.Msg = fmt.Sprintf("%s %s of %s is not an External ID field (schema %s); mark it External ID and Unique", what, field, o.name, o.source)
		}
	}
	sc.report(c)
}

// field checks one target field and returns its schema, nil if unknown.
func (sc *schemaChecker) field(f fieldDef) *fieldSchema {
	o, op := sc.o, sc.op
	out := outcomesOf(f.expr.root)
	name := strings.TrimSuffix(f.name, "@odata.bind")
	if o.dataverse && (out.kinds[Ref] || o.navs[name] != nil) {
		return sc.navigation(f, name, out)
	}
	fs := o.fields[strings.ToLower(name)]
	if fs == nil && o.partial {
		return nil // the document does not say
	}
	sc.check(f.line, f.col, f.name, CheckField, fs != nil, "%s has no field %s (schema %s)", o.name, f.name, o.source)
	if fs == nil {
		return nil
	}
	if fs.writeKnown {
		switch {
		case op.Action == Update && !fs.updateable:
			sc.check(f.line, f.col, f.name, CheckWritable, false, "%s.%s cannot be updated (schema %s)", o.name, fs.name, o.source)
		case op.Action == Upsert && !(fs.createable && fs.updateable):
			sc.check(f.line, f.col, f.name, CheckWritable, false, "%s.%s is not both createable and updateable, as an upsert needs (schema %s)", o.name, fs.name, o.source)
		default:
			sc.check(f.line, f.col, f.name, CheckWritable, true, "")
		}
	}
	if out.kinds[Ref] {
		sc.reference(f, fs, out)
	}
	if bad := typeMismatch(o.dataverse, fs.typ, out); bad != "" {
		sc.check(f.line, f.col, f.name, CheckType, false, "%s.%s is %s but the expression gives %s", o.name, fs.name, fs.typ, bad)
	} else if fs.typ != "" && !out.unknown {
		sc.check(f.line, f.col, f.name, CheckType, true, "")
	}
	sc.values(f, fs, out)
	sc.length(f, fs, out)
	return fs
}

// navigation checks a Dataverse lookup: set through a single-valued
// navigation property, spelled exactly (they are case-sensitive), whose
// table is the ref's.
func (sc *schemaChecker) navigation(f fieldDef, name string, out outcomes) *fieldSchema {
	o := sc.o
	if !o.hasNavs {
		fs := o.fields[strings.ToLower(name)]
		sc.check(f.line, f.col, f.name, CheckField, fs != nil, "%s has no field %s (schema %s)", o.name, f.name, o.source)
		return fs
	}
	nav := o.navs[name]
	if nav == nil {
		hint := ""
		for _, n := range o.navs {
			if strings.EqualFold(n.name, name) {
				hint = "; navigation property names are case-sensitive: write " + n.name
				break
			}
			if n.column == strings.ToLower(name) {
				hint = "; " + name + " is the lookup column: a lookup is set through its navigation property " + n.name
			}
		}
		sc.check(f.line, f.col, f.name, CheckNavigation, false, "%s has no navigation property %s (schema %s)%s", o.name, name, o.source, hint)
		return nil
	}
	ok := true
	for _, r := range out.refs {
		if r.object != "" && strings.ToLower(r.object) != nav.target {
			ok = false
			sc.check(f.line, f.col, f.name, CheckNavigation, false, "%s.%s points at %s, not at %s", o.name, name, nav.target, r.object)
		}
	}
	if out.kinds[String] || out.kinds[Number] || out.kinds[Bool] {
		ok = false
		sc.check(f.line, f.col, f.name, CheckNavigation, false, "%s.%s is a navigation property: give it ref(...), not a value", o.name, name)
	}
	if ok {
		sc.check(f.line, f.col, f.name, CheckNavigation, true, "")
	}
	sc.refKeys(f, out)
	return o.fields[nav.column]
}

// reference checks a Salesforce lookup set by ref(): a reference field
// that can point at the ref's object.
func (sc *schemaChecker) reference(f fieldDef, fs *fieldSchema, out outcomes) {
	o := sc.o
	ok := true
	if fs.typ != "" && fs.typ != "reference" {
		ok = false
		sc.check(f.line, f.col, f.name, CheckReference, false, "%s.%s is %s, not a reference: ref() cannot set it", o.name, fs.name, fs.typ)
	}
	for _, r := range out.refs {
		if len(fs.refTo) > 0 && r.object != "" && !containsFold(fs.refTo, r.object) {
			ok = false
			sc.check(f.line, f.col, f.name, CheckReference, false, "%s.%s references %s, not %s", o.name, fs.name, strings.Join(fs.refTo, ", "), r.object)
		}
	}
	if ok {
		sc.check(f.line, f.col, f.name, CheckReference, true, "")
	}
	sc.refKeys(f, out)
}

// refKeys checks that each ref() goes through a key of its object.
func (sc *schemaChecker) refKeys(f fieldDef, out outcomes) {
	for _, r := range out.refs {
		if t := sc.s.objects[strings.ToLower(r.object)]; t != nil && r.keyField != "" {
			sc.key(r.keyField, f.line, f.col, t, f.name+": ref() through")
		}
	}
}

// values checks literal and table values against picklist and option
// values.
func (sc *schemaChecker) values(f fieldDef, fs *fieldSchema, out outcomes) {
	if fs.values == nil || len(out.consts) == 0 {
		return
	}
	var bad []string
	for _, v := range out.consts {
		if v.Kind != String && v.Kind != Number {
			continue
		}
		if fs.typ == "multipicklist" {
			for _, part := range strings.Split(v.Text, ";") {
				if !fs.values[part] {
					bad = append(bad, part)
				}
			}
		} else if !fs.values[v.Text] {
			bad = append(bad, v.Text)
		}
	}
	switch {
	case len(bad) == 0:
		sc.check(f.line, f.col, f.name, CheckValue, true, "")
	case sc.o.dataverse || fs.restricted:
		sc.check(f.line, f.col, f.name, CheckValue, false, "%s.%s does not have the value(s) %s (schema %s): add them to the %s or map to one it has",
			sc.o.name, fs.name, quoteList(bad), sc.o.source, map[bool]string{true: "option set", false: "picklist"}[sc.o.dataverse])
	default:
		sc.warn(f.line, f.col, f.name, CheckValue, "%s.%s's picklist lacks %s (schema %s): Salesforce stores it (the picklist is not restricted) but reports and filters will not offer it",
			sc.o.name, fs.name, quoteList(bad), sc.o.source)
	}
}

// length checks literal and table values, and truncate() lengths,
// against the field's length.
func (sc *schemaChecker) length(f fieldDef, fs *fieldSchema, out outcomes) {
	if fs.length <= 0 || !textual(fs.typ) {
		return
	}
	ok := true
	for _, v := range out.consts {
		if v.Kind == String && utf8.RuneCountInString(v.Text) > fs.length {
			ok = false
			sc.check(f.line, f.col, f.name, CheckLength, false, "%s.%s holds %d characters; a value here has %d", sc.o.name, fs.name, fs.length, utf8.RuneCountInString(v.Text))
			break
		}
	}
	if out.truncate > fs.length {
		ok = false
		sc.check(f.line, f.col, f.name, CheckLength, false, "%s.%s holds %d characters but truncate() keeps %d", sc.o.name, fs.name, fs.length, out.truncate)
	}
	if ok && (len(out.consts) > 0 || out.truncate > 0) {
		sc.check(f.line, f.col, f.name, CheckLength, true, "")
	}
}

// required checks that an upsert writes every field the CRM requires on
// create.
func (sc *schemaChecker) required(written map[string]bool) {
	seen := map[*fieldSchema]bool{}
	var names []string
	for _, fs := range sc.o.fields {
		if fs.required != "" && !seen[fs] {
			seen[fs] = true
			names = append(names, fs.name)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fs := sc.o.fields[strings.ToLower(n)]
		if written[strings.ToLower(n)] || !sc.o.dataverse && written[personName[strings.ToLower(sc.o.name+"."+n)]] {
			sc.check(sc.op.line, sc.op.col, fs.name, CheckRequired, true, "")
		} else if fs.required == "warning" {
			sc.warn(sc.op.line, sc.op.col, fs.name, CheckRequired, "%s.%s is business-required (forms require it; the Web API does not) and this upsert does not write it", sc.o.name, fs.name)
		} else {
			sc.check(sc.op.line, sc.op.col, fs.name, CheckRequired, false, "%s requires %s on create and this upsert does not write it (schema %s)", sc.o.name, fs.name, sc.o.source)
		}
	}
}

// personName: a required Salesforce name field a person's name stands in
// for. An org's describe shows Account.Name not nillable (a business
// account's name), while a Person Account is created with LastName and its
// Name is made from the person's names
// (https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_account.htm,
// Person Account fields); the shipped set creates Person Accounts.
var personName = map[string]string{"account.name": "lastname"}

// typeMismatch names what an expression gives that the field's type does
// not take, or "". Dataverse (OData) is strict: a number column takes a
// JSON number, not text. Salesforce converts text; only clear mismatches
// count there.
func typeMismatch(dataverse bool, typ string, out outcomes) string {
	if typ == "" || out.unknown {
		return ""
	}
	var want map[Kind]bool
	switch typ {
	case "picklist", "state", "status", "integer", "bigint", "decimal", "double", "money":
		if !dataverse {
			return ""
		}
		want = map[Kind]bool{Number: true}
	case "boolean":
		want = map[Kind]bool{Bool: true}
		if !dataverse {
			want[String] = true
		}
	case "string", "memo", "textarea", "email", "phone", "url", "multipicklist", "datetime", "date", "uniqueidentifier":
		want = map[Kind]bool{String: true, Number: !dataverse}
	default:
		return ""
	}
	var bad []string
	for _, k := range []Kind{String, Number, Bool} {
		if out.kinds[k] && !want[k] {
			bad = append(bad, valueKind(k))
		}
	}
	return strings.Join(bad, " or ")
}

func valueKind(k Kind) string {
	switch k {
	case String:
		return "text"
	case Number:
		return "a number"
	case Bool:
		return "true/false"
	case Ref:
		return "a reference"
	}
	return "nothing"
}

// outcomes is what an expression can give, as far as its text tells:
// the kinds of value, the literal and table values among them, the refs,
// and the smallest truncate() length around it.
type outcomes struct {
	kinds    map[Kind]bool
	unknown  bool // a kind the text does not tell (a FHIRPath value)
	consts   []Value
	refs     []refTarget
	truncate int
}

type refTarget struct{ object, keyField string }

func outcomesOf(n node) outcomes {
	out := outcomes{kinds: map[Kind]bool{}}
	out.add(n)
	return out
}

func (o *outcomes) add(n node) {
	switch n := n.(type) {
	case literal:
		o.kinds[n.v.Kind] = true
		if n.v.Kind == String || n.v.Kind == Number {
			o.consts = append(o.consts, n.v)
		}
	case name:
		o.kinds[String] = true
	case *hl7Path:
		o.kinds[String] = true
	case *call:
		o.call(n)
	default: // FHIRPath values keep their FHIR type
		o.unknown = true
	}
}

func (o *outcomes) call(c *call) {
	switch c.fn {
	case functions["lookup"]:
		o.kinds[String] = true
		vals := make([]string, 0, len(c.table))
		for _, v := range c.table {
			vals = append(vals, v)
		}
		sort.Strings(vals)
		for _, v := range vals {
			o.consts = append(o.consts, Str(v))
		}
		if len(c.args) == 3 {
			o.add(c.args[2])
		}
	case functions["number"]:
		inner := outcomesOf(c.args[0])
		o.kinds[Number] = true
		for _, v := range inner.consts {
			if _, err := strconv.ParseFloat(v.Text, 64); err == nil {
				o.consts = append(o.consts, Num(v.Text))
			}
		}
	case functions["if"]:
		for _, a := range c.args[1:] {
			o.add(a)
		}
	case functions["coalesce"], functions["default"]:
		for _, a := range c.args {
			o.add(a)
		}
	case functions["required"]:
		o.add(c.args[0])
	case functions["truncate"]:
		inner := outcomesOf(c.args[0])
		o.kinds[String] = true
		if o.truncate == 0 || c.count < o.truncate {
			o.truncate = c.count
		}
		for _, v := range inner.consts {
			if r := []rune(v.Text); len(r) > c.count {
				v = Str(string(r[:c.count]))
			}
			o.consts = append(o.consts, v)
		}
	case functions["bool"], functions["eq"], functions["ne"], functions["in"], functions["present"],
		functions["empty"], functions["not"], functions["and"], functions["or"]:
		o.kinds[Bool] = true
	case functions["index"]:
		o.kinds[Number] = true
	case functions["ref"]:
		o.kinds[Ref] = true
		if c.ref != nil {
			o.refs = append(o.refs, refTarget{c.ref.Object, c.ref.KeyField})
		} else {
			o.refs = append(o.refs, refTarget{c.refOb, c.refKF})
		}
	case functions["fhirpath"]:
		o.unknown = true
	default: // concat, format, key, ns, date, datetime, text, pick, ...: text
		o.kinds[String] = true
	}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func quoteList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

// ObjectUse is a CRM object a mapping set writes or points at, and where it
// is first named.
type ObjectUse struct {
	Object    string
	File      string
	Line, Col int
}

// Objects lists the CRM objects the set's CRM mappings write (ops'
// objects) or reference (ref(object, key_field, key)), in the order they
// first appear, each with the position of its first mention: what crm
// check describes.
func (s *Set) Objects() []ObjectUse {
	var out []ObjectUse
	seen := map[string]bool{}
	use := func(obj, file string, line, col int) {
		if obj == "" || seen[strings.ToLower(obj)] {
			return
		}
		seen[strings.ToLower(obj)] = true
		out = append(out, ObjectUse{Object: obj, File: file, Line: line, Col: col})
	}
	for _, m := range s.Mappings {
		if m.hl7Out {
			continue
		}
		for _, op := range m.ops {
			use(op.Object, m.File, op.objLine, op.objCol)
			for _, f := range op.fields {
				for _, r := range outcomesOf(f.expr.root).refs {
					use(r.object, m.File, f.line, f.col)
				}
			}
		}
	}
	return out
}

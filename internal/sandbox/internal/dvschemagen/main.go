// Command dvschemagen writes internal/sandbox/dvschema.json, the
// Dataverse schema the sandbox serves and enforces and `ehrbridge lint
// --schema` reads, in Dataverse's own metadata format: the OData
// collection GET /api/data/v9.2/EntityDefinitions?$expand=Attributes,Keys,
// ManyToOneRelationships answers ({"value":[EntityMetadata,...]}), with
// Microsoft's property names (EntityMetadata, AttributeMetadata and its
// derived types, EntityKeyMetadata, OneToManyRelationshipMetadata in the
// "Web API Metadata EntityType Reference"). A site's own saved
// EntityDefinitions response has the same shape and extends or overrides
// it (ehrbridge sandbox --schema F).
//
// Sources, each named in a "Source" property of the table or column:
//   - ../shared/crm-metadata/dataverse/iah_2.2.3.3/<table>.json: the
//     Healthcare Accelerator 2.2.3.3 entity XML (attributes, types,
//     required levels, lengths, precision, ranges, option sets,
//     single-valued navigation properties);
//   - ../shared/crm-metadata/dataverse/cdm/*Contact.json: Microsoft CDM
//     Contact documents, for the standard contact columns the accelerator
//     XML does not repeat;
//   - deploy/dataverse/schema.json: the columns and alternate keys
//     deploy/dataverse/create.sh adds.
//
// Run from internal/sandbox: go generate (see dv_schema.go).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// label is Microsoft.Dynamics.CRM.Label, reduced to the user's label.
type label struct {
	UserLocalizedLabel *localized `json:"UserLocalizedLabel"`
}

type localized struct {
	Label        string `json:"Label"`
	LanguageCode int    `json:"LanguageCode"`
}

type option struct {
	Value int   `json:"Value"`
	Label label `json:"Label"`
	State *int  `json:"State,omitempty"` // StatusOptionMetadata: the statecode it belongs to
}

type optionSet struct {
	Name     string   `json:"Name,omitempty"`
	IsGlobal bool     `json:"IsGlobal"`
	Options  []option `json:"Options"`
}

type required struct {
	Value string `json:"Value"`
}

// attribute is AttributeMetadata with the properties of its derived types
// the project reads.
type attribute struct {
	ODataType        string     `json:"@odata.type"`
	LogicalName      string     `json:"LogicalName"`
	SchemaName       string     `json:"SchemaName"`
	AttributeType    string     `json:"AttributeType"`
	RequiredLevel    required   `json:"RequiredLevel"`
	IsValidForCreate bool       `json:"IsValidForCreate"`
	IsValidForUpdate bool       `json:"IsValidForUpdate"`
	MaxLength        *int       `json:"MaxLength,omitempty"`
	Precision        *int       `json:"Precision,omitempty"`
	MinValue         *float64   `json:"MinValue,omitempty"`
	MaxValue         *float64   `json:"MaxValue,omitempty"`
	Targets          []string   `json:"Targets,omitempty"`
	OptionSet        *optionSet `json:"OptionSet,omitempty"`
	Source           string     `json:"Source"`
}

type key struct {
	LogicalName          string   `json:"LogicalName"`
	SchemaName           string   `json:"SchemaName"`
	KeyAttributes        []string `json:"KeyAttributes"`
	EntityKeyIndexStatus string   `json:"EntityKeyIndexStatus"`
	Source               string   `json:"Source"`
}

type relationship struct {
	SchemaName                              string `json:"SchemaName"`
	ReferencingEntity                       string `json:"ReferencingEntity"`
	ReferencingAttribute                    string `json:"ReferencingAttribute"`
	ReferencedEntity                        string `json:"ReferencedEntity"`
	ReferencingEntityNavigationPropertyName string `json:"ReferencingEntityNavigationPropertyName"`
	Source                                  string `json:"Source"`
}

type entity struct {
	LogicalName        string `json:"LogicalName"`
	SchemaName         string `json:"SchemaName"`
	EntitySetName      string `json:"EntitySetName"`
	IsActivity         bool   `json:"IsActivity"`
	PrimaryIDAttribute string `json:"PrimaryIdAttribute"`
	// PartialAttributes (not Microsoft's) marks a table of which only
	// some columns are known: the sandbox checks those and accepts others.
	PartialAttributes      bool           `json:"PartialAttributes,omitempty"`
	Source                 []string       `json:"Source"`
	Attributes             []*attribute   `json:"Attributes"`
	Keys                   []key          `json:"Keys"`
	ManyToOneRelationships []relationship `json:"ManyToOneRelationships"`
	byName                 map[string]*attribute
}

// iah is one table file of ../shared/crm-metadata/dataverse/iah_2.2.3.3.
type iah struct {
	Entity        string `json:"entity"`
	Source        string `json:"source"`
	EntitySetName string `json:"EntitySetName"`
	IsActivity    string `json:"IsActivity"`
	Attributes    map[string]struct {
		Schema         string            `json:"schema"`
		Type           string            `json:"type"`
		Required       string            `json:"required"`
		MaxLength      string            `json:"maxLength"`
		Precision      string            `json:"precision"`
		Min            string            `json:"min"`
		Max            string            `json:"max"`
		ValidForCreate string            `json:"validForCreate"`
		ValidForUpdate string            `json:"validForUpdate"`
		OptionSet      string            `json:"optionset"`
		Options        []json.RawMessage `json:"options"`
		LookupTypes    []string          `json:"lookupTypes"`
	} `json:"attributes"`
	Navigation map[string]struct {
		ReferencingAttributeSchemaName string `json:"referencingAttributeSchemaName"`
		NavigationPropertyName         string `json:"navigationPropertyName"`
		ReferencedEntity               string `json:"referencedEntity"`
		Relationship                   string `json:"relationship"`
		Source                         string `json:"source"`
	} `json:"navigationProperties"`
}

// cdm is one file of ../shared/crm-metadata/dataverse/cdm.
type cdm struct {
	Entity     string `json:"entity"`
	Source     string `json:"source"`
	Attributes []struct {
		Name      string     `json:"name"`
		Logical   string     `json:"logical"`
		Schema    *string    `json:"schema"`
		Type      string     `json:"type"`
		MaxLength *int       `json:"maxLength"`
		Required  string     `json:"required"`
		Options   [][]string `json:"options"`
	} `json:"attributes"`
}

// iahTypes maps the entity XML's attribute types to AttributeType and the
// metadata type's name.
var iahTypes = map[string][2]string{
	"lookup": {"Lookup", "LookupAttributeMetadata"}, "customer": {"Customer", "LookupAttributeMetadata"},
	"owner": {"Owner", "LookupAttributeMetadata"}, "partylist": {"PartyList", "LookupAttributeMetadata"},
	"datetime": {"DateTime", "DateTimeAttributeMetadata"}, "picklist": {"Picklist", "PicklistAttributeMetadata"},
	"state": {"State", "StateAttributeMetadata"}, "status": {"Status", "StatusAttributeMetadata"},
	"nvarchar": {"String", "StringAttributeMetadata"}, "ntext": {"Memo", "MemoAttributeMetadata"},
	"int": {"Integer", "IntegerAttributeMetadata"}, "bit": {"Boolean", "BooleanAttributeMetadata"},
	"decimal": {"Decimal", "DecimalAttributeMetadata"}, "money": {"Money", "MoneyAttributeMetadata"},
	"float": {"Double", "DoubleAttributeMetadata"}, "primarykey": {"Uniqueidentifier", "UniqueIdentifierAttributeMetadata"},
	"uniqueidentifier": {"Uniqueidentifier", "UniqueIdentifierAttributeMetadata"}, "bigint": {"BigInt", "BigIntAttributeMetadata"},
}

// cdmTypes maps CDM data types to AttributeType and the metadata type.
var cdmTypes = map[string][2]string{
	"lookup": {"Lookup", "LookupAttributeMetadata"}, "partylist": {"PartyList", "LookupAttributeMetadata"},
	"dateTime": {"DateTime", "DateTimeAttributeMetadata"}, "listLookup": {"Picklist", "PicklistAttributeMetadata"},
	"listLookupCorrelated": {"Status", "StatusAttributeMetadata"}, "integer": {"Integer", "IntegerAttributeMetadata"},
	"boolean": {"Boolean", "BooleanAttributeMetadata"}, "entityId": {"Uniqueidentifier", "UniqueIdentifierAttributeMetadata"},
	"guid": {"Uniqueidentifier", "UniqueIdentifierAttributeMetadata"}, "decimal": {"Decimal", "DecimalAttributeMetadata"},
	"currency": {"Money", "MoneyAttributeMetadata"}, "baseCurrency": {"Money", "MoneyAttributeMetadata"},
	"double": {"Double", "DoubleAttributeMetadata"},
}

// levels maps required levels to AttributeRequiredLevel values.
var levels = map[string]string{"": "None", "none": "None", "recommended": "Recommended", "required": "ApplicationRequired", "systemrequired": "SystemRequired"}

// addressFields are contact's address1..3 columns, which the CDM Contact
// documents list under the address entity and the contact table
// reference lists on the contact itself.
var addressFields = []string{"city", "country", "county", "line1", "line2", "line3", "name", "postalcode", "stateorprovince", "telephone1"}

const addressSource = "https://learn.microsoft.com/en-us/power-apps/developer/data-platform/reference/entities/contact (the CDM Contact documents list address1_* under the address entity)"

// systemLookups are the ownership and audit lookups every user-owned table
// has, whose navigation property is named as the column (Dataverse's
// system relationships lk_<table>_createdby, owner_<table>, ...).
var systemLookups = []struct{ col, target, rel string }{
	{"createdby", "systemuser", "lk_%s_createdby"}, {"createdonbehalfby", "systemuser", "lk_%s_createdonbehalfby"},
	{"modifiedby", "systemuser", "lk_%s_modifiedby"}, {"modifiedonbehalfby", "systemuser", "lk_%s_modifiedonbehalfby"},
	{"ownerid", "owner", "owner_%s"}, {"owningbusinessunit", "businessunit", "business_unit_%s"},
	{"owningteam", "team", "team_%s"}, {"owninguser", "systemuser", "user_%s"},
}

// systemColumns are columns every user-owned table has that a source
// file may leave out.
var systemColumns = []struct {
	name, schema, attrType, metaType, level string
	create, update                          bool
}{
	{"versionnumber", "VersionNumber", "BigInt", "BigIntAttributeMetadata", "None", false, false},
	{"createdon", "CreatedOn", "DateTime", "DateTimeAttributeMetadata", "None", false, false},
	{"modifiedon", "ModifiedOn", "DateTime", "DateTimeAttributeMetadata", "None", false, false},
	{"ownerid", "OwnerId", "Owner", "LookupAttributeMetadata", "SystemRequired", true, true},
}

// partial are the tables the write-back uses that no published metadata
// file describes: the columns it reads, as Microsoft Learn's table
// reference documents them (types only; lengths are left out where no
// source in ../shared gives them, so the sandbox checks none), marked
// PartialAttributes so that other columns are accepted.
type partialCol struct{ name, schema, typ, meta string }

var partial = map[string]struct {
	schema, set, pk, source string
	activity                bool
	columns                 []partialCol
}{
	"task": {"Task", "tasks", "activityid", "https://learn.microsoft.com/en-us/power-apps/developer/data-platform/reference/entities/task", true, []partialCol{
		{"activityid", "ActivityId", "Uniqueidentifier", "UniqueIdentifierAttributeMetadata"},
		{"subject", "Subject", "String", "StringAttributeMetadata"},
		{"description", "Description", "Memo", "MemoAttributeMetadata"},
		{"regardingobjectid", "RegardingObjectId", "Lookup", "LookupAttributeMetadata"},
		{"ownerid", "OwnerId", "Owner", "LookupAttributeMetadata"},
		{"statecode", "StateCode", "State", "StateAttributeMetadata"},
		{"statuscode", "StatusCode", "Status", "StatusAttributeMetadata"},
		{"createdon", "CreatedOn", "DateTime", "DateTimeAttributeMetadata"},
		{"modifiedon", "ModifiedOn", "DateTime", "DateTimeAttributeMetadata"},
	}},
	"systemuser": {"SystemUser", "systemusers", "systemuserid", "https://learn.microsoft.com/en-us/power-apps/developer/data-platform/reference/entities/systemuser", false, []partialCol{
		{"systemuserid", "SystemUserId", "Uniqueidentifier", "UniqueIdentifierAttributeMetadata"},
		{"fullname", "FullName", "String", "StringAttributeMetadata"},
		{"firstname", "FirstName", "String", "StringAttributeMetadata"},
		{"lastname", "LastName", "String", "StringAttributeMetadata"},
		{"domainname", "DomainName", "String", "StringAttributeMetadata"},
		{"internalemailaddress", "InternalEMailAddress", "String", "StringAttributeMetadata"},
	}},
}

const systemSource = "https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/reference/entitytypes (system columns and relationships of every user-owned table)"

func main() {
	meta := flag.String("metadata", "../../../shared/crm-metadata/dataverse", "the crm-metadata dataverse folder")
	deploy := flag.String("deploy", "../../deploy/dataverse/schema.json", "deploy/dataverse/schema.json")
	out := flag.String("out", "dvschema.json", "output file")
	flag.Parse()
	if err := run(*meta, *deploy, *out); err != nil {
		fmt.Fprintln(os.Stderr, "dvschemagen:", err)
		os.Exit(1)
	}
}

func run(meta, deploy, out string) error {
	files, err := filepath.Glob(filepath.Join(meta, "iah_2.2.3.3", "*.json"))
	if err != nil {
		return err
	}
	var ents []*entity
	byName := map[string]*entity{}
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), "_") {
			continue
		}
		var t iah
		if err := readJSON(f, &t); err != nil {
			return err
		}
		e, err := fromIAH(t)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		ents = append(ents, e)
		byName[e.LogicalName] = e
	}
	if c := byName["contact"]; c != nil {
		if err := addCDMContact(c, meta); err != nil {
			return err
		}
		for i := 1; i <= 3; i++ {
			for _, f := range addressFields {
				name := fmt.Sprintf("address%d_%s", i, f)
				if c.byName[name] == nil {
					c.add(&attribute{ODataType: "#Microsoft.Dynamics.CRM.StringAttributeMetadata", LogicalName: name, SchemaName: fmt.Sprintf("Address%d_%s", i, strings.ToUpper(f[:1])+f[1:]),
						AttributeType: "String", RequiredLevel: required{"None"}, IsValidForCreate: true, IsValidForUpdate: true, Source: addressSource})
				}
			}
		}
		c.Source = append(c.Source, addressSource)
	}
	for _, e := range ents {
		for _, sc := range systemColumns {
			if e.byName[sc.name] == nil {
				e.add(&attribute{ODataType: "#Microsoft.Dynamics.CRM." + sc.metaType, LogicalName: sc.name, SchemaName: sc.schema,
					AttributeType: sc.attrType, RequiredLevel: required{sc.level}, IsValidForCreate: sc.create, IsValidForUpdate: sc.update, Source: systemSource})
			}
		}
		have := map[string]bool{}
		for _, r := range e.ManyToOneRelationships {
			have[r.ReferencingAttribute] = true
		}
		for _, l := range systemLookups {
			if e.byName[l.col] != nil && !have[l.col] {
				e.ManyToOneRelationships = append(e.ManyToOneRelationships, relationship{SchemaName: fmt.Sprintf(l.rel, e.LogicalName),
					ReferencingEntity: e.LogicalName, ReferencingAttribute: l.col, ReferencedEntity: l.target, ReferencingEntityNavigationPropertyName: l.col, Source: systemSource})
			}
		}
	}
	if err := addDeploy(byName, deploy, &ents); err != nil {
		return err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].LogicalName < ents[j].LogicalName })
	for _, e := range ents {
		sort.Slice(e.Attributes, func(i, j int) bool { return e.Attributes[i].LogicalName < e.Attributes[j].LogicalName })
		sort.Slice(e.ManyToOneRelationships, func(i, j int) bool {
			return e.ManyToOneRelationships[i].ReferencingEntityNavigationPropertyName < e.ManyToOneRelationships[j].ReferencingEntityNavigationPropertyName
		})
		if e.Keys == nil {
			e.Keys = []key{}
		}
	}
	doc := map[string]any{
		"@odata.context": "https://sandbox/api/data/v9.2/$metadata#EntityDefinitions(LogicalName,SchemaName,EntitySetName,IsActivity,PrimaryIdAttribute,Attributes(),Keys(),ManyToOneRelationships())",
		"_about":         "Generated by internal/sandbox/internal/dvschemagen (go generate in internal/sandbox); do not edit. Dataverse EntityDefinitions in the Web API's metadata format, from ../shared/crm-metadata/dataverse and deploy/dataverse/schema.json; every table and column names its Source.",
		"value":          ents,
	}
	data, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(data, '\n'), 0o644)
}

func readJSON(f string, v any) error {
	data, err := os.ReadFile(f)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", f, err)
	}
	return nil
}

func (e *entity) add(a *attribute) {
	if e.byName == nil {
		e.byName = map[string]*attribute{}
	}
	if old := e.byName[a.LogicalName]; old != nil {
		*old = *a
		return
	}
	e.Attributes = append(e.Attributes, a)
	e.byName[a.LogicalName] = a
}

func atoi(s string) *int {
	if s == "" {
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return nil
	}
	return &n
}

func atof(s string) *float64 {
	if s == "" {
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil
	}
	return &f
}

func lbl(s string) label { return label{UserLocalizedLabel: &localized{Label: s, LanguageCode: 1033}} }

func fromIAH(t iah) (*entity, error) {
	name := strings.ToLower(t.Entity)
	e := &entity{LogicalName: name, SchemaName: t.Entity, EntitySetName: t.EntitySetName, IsActivity: t.IsActivity == "1",
		PrimaryIDAttribute: name + "id", Source: []string{t.Source}}
	if e.IsActivity {
		e.PrimaryIDAttribute = "activityid"
	}
	if name == "contact" {
		e.SchemaName = "Contact"
	}
	names := make([]string, 0, len(t.Attributes))
	for n := range t.Attributes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := t.Attributes[n]
		ty, ok := iahTypes[a.Type]
		if !ok {
			return nil, fmt.Errorf("attribute %s: unknown type %q", n, a.Type)
		}
		at := &attribute{ODataType: "#Microsoft.Dynamics.CRM." + ty[1], LogicalName: n, SchemaName: a.Schema, AttributeType: ty[0],
			RequiredLevel: required{levels[a.Required]}, IsValidForCreate: a.ValidForCreate == "1", IsValidForUpdate: a.ValidForUpdate == "1",
			Source: t.Source}
		switch ty[0] {
		case "String", "Memo":
			at.MaxLength = atoi(a.MaxLength)
		case "Decimal", "Money", "Double":
			at.Precision, at.MinValue, at.MaxValue = atoi(a.Precision), atof(a.Min), atof(a.Max)
		case "Integer", "BigInt":
			at.MinValue, at.MaxValue = atof(a.Min), atof(a.Max)
		}
		for _, lt := range a.LookupTypes {
			at.Targets = append(at.Targets, strings.ToLower(lt))
		}
		if ty[0] == "Picklist" || ty[0] == "State" || ty[0] == "Status" {
			set := &optionSet{Name: strings.TrimSuffix(a.OptionSet, " (global)"), IsGlobal: strings.HasSuffix(a.OptionSet, "(global)"), Options: []option{}}
			for _, raw := range a.Options {
				var parts []any
				if err := json.Unmarshal(raw, &parts); err != nil {
					return nil, fmt.Errorf("attribute %s: option %s: %w", n, raw, err)
				}
				o, err := iahOption(parts)
				if err != nil {
					return nil, fmt.Errorf("attribute %s: %w", n, err)
				}
				set.Options = append(set.Options, o)
			}
			if len(a.Options) > 0 {
				at.OptionSet = set
			}
		}
		e.add(at)
	}
	navs := make([]string, 0, len(t.Navigation))
	for n := range t.Navigation {
		navs = append(navs, n)
	}
	sort.Strings(navs)
	for _, n := range navs {
		v := t.Navigation[n]
		e.ManyToOneRelationships = append(e.ManyToOneRelationships, relationship{SchemaName: v.Relationship, ReferencingEntity: name,
			ReferencingAttribute: n, ReferencedEntity: strings.ToLower(v.ReferencedEntity), ReferencingEntityNavigationPropertyName: v.NavigationPropertyName,
			Source: v.Source + " (" + v.Relationship + ")"})
	}
	return e, nil
}

// iahOption reads [value, label], ["state", value, label] or
// ["status", value, state, label].
func iahOption(p []any) (option, error) {
	num := func(v any) (int, bool) { f, ok := v.(float64); return int(f), ok }
	str := func(v any) string { s, _ := v.(string); return s }
	switch {
	case len(p) == 2:
		if v, ok := num(p[0]); ok {
			return option{Value: v, Label: lbl(str(p[1]))}, nil
		}
	case len(p) == 3 && str(p[0]) == "state":
		if v, ok := num(p[1]); ok {
			return option{Value: v, Label: lbl(str(p[2]))}, nil
		}
	case len(p) == 4 && str(p[0]) == "status":
		v, ok1 := num(p[1])
		s, ok2 := num(p[2])
		if ok1 && ok2 {
			return option{Value: v, State: &s, Label: lbl(str(p[3]))}, nil
		}
	}
	return option{}, fmt.Errorf("unreadable option %v", p)
}

// addCDMContact adds the contact columns of the CDM Contact documents the
// accelerator XML does not list: the accelerator's own documents first,
// then Cloud for Healthcare 2023's.
func addCDMContact(c *entity, meta string) error {
	files, err := filepath.Glob(filepath.Join(meta, "cdm", "*Contact.json"))
	if err != nil {
		return err
	}
	sort.SliceStable(files, func(i, j int) bool {
		return strings.HasPrefix(filepath.Base(files[i]), "accelerator") && !strings.HasPrefix(filepath.Base(files[j]), "accelerator")
	})
	for _, f := range files {
		var d cdm
		if err := readJSON(f, &d); err != nil {
			return err
		}
		used := false
		for _, a := range d.Attributes {
			n := strings.ToLower(a.Logical)
			if n == "" || c.byName[n] != nil {
				continue
			}
			ty, ok := cdmTypes[a.Type]
			if !ok {
				ty = [2]string{"String", "StringAttributeMetadata"} // name, phone, email, url, ...: text
			}
			if n == "statecode" {
				ty = [2]string{"State", "StateAttributeMetadata"}
			}
			schema := a.Name
			if a.Schema != nil && *a.Schema != "" {
				schema = *a.Schema
			} else if schema != "" {
				schema = strings.ToUpper(schema[:1]) + schema[1:]
			}
			at := &attribute{ODataType: "#Microsoft.Dynamics.CRM." + ty[1], LogicalName: n, SchemaName: schema, AttributeType: ty[0],
				RequiredLevel: required{levels[a.Required]}, IsValidForCreate: true, IsValidForUpdate: n != "contactid", Source: d.Source}
			if ty[0] == "String" {
				at.MaxLength = a.MaxLength
			}
			if len(a.Options) > 0 && (ty[0] == "Picklist" || ty[0] == "State" || ty[0] == "Status") {
				set := &optionSet{Options: []option{}}
				for _, o := range a.Options {
					if len(o) != 2 {
						continue
					}
					v, err := strconv.Atoi(o[0])
					if err != nil {
						return fmt.Errorf("%s: %s: option value %q", f, n, o[0])
					}
					set.Options = append(set.Options, option{Value: v, Label: lbl(o[1])})
				}
				at.OptionSet = set
			}
			c.add(at)
			used = true
		}
		if used {
			c.Source = append(c.Source, d.Source)
		}
	}
	return nil
}

// addDeploy adds what deploy/dataverse/create.sh creates: columns and
// alternate keys, on the tables that have published metadata.
func addDeploy(byName map[string]*entity, file string, extra *[]*entity) error {
	var d struct {
		Columns []struct {
			Table  string `json:"table"`
			Column struct {
				ODataType     string   `json:"@odata.type"`
				SchemaName    string   `json:"SchemaName"`
				RequiredLevel required `json:"RequiredLevel"`
				MaxLength     *int     `json:"MaxLength"`
			} `json:"column"`
		} `json:"columns"`
		Keys []struct {
			Table string `json:"table"`
			Key   struct {
				SchemaName    string   `json:"SchemaName"`
				KeyAttributes []string `json:"KeyAttributes"`
			} `json:"key"`
		} `json:"keys"`
	}
	if err := readJSON(file, &d); err != nil {
		return err
	}
	const src = "deploy/dataverse/schema.json (created by deploy/dataverse/create.sh)"
	for _, c := range d.Columns {
		e := byName[c.Table]
		if e == nil {
			p, ok := partial[c.Table]
			if !ok {
				return fmt.Errorf("%s: column on %s, a table with neither published metadata nor a documented column list", file, c.Table)
			}
			e = &entity{LogicalName: c.Table, SchemaName: p.schema, EntitySetName: p.set, IsActivity: p.activity, PrimaryIDAttribute: p.pk,
				PartialAttributes: true, Source: []string{p.source, src}, Keys: []key{}, ManyToOneRelationships: []relationship{}}
			for _, col := range p.columns {
				e.add(&attribute{ODataType: "#Microsoft.Dynamics.CRM." + col.meta, LogicalName: col.name, SchemaName: col.schema, AttributeType: col.typ,
					RequiredLevel: required{"None"}, IsValidForCreate: true, IsValidForUpdate: col.name != p.pk, Source: p.source})
			}
			byName[c.Table] = e
			*extra = append(*extra, e)
		}
		typeName := strings.TrimPrefix(c.Column.ODataType, "Microsoft.Dynamics.CRM.")
		at := &attribute{ODataType: "#" + strings.TrimPrefix(c.Column.ODataType, "#"), LogicalName: strings.ToLower(c.Column.SchemaName),
			SchemaName: c.Column.SchemaName, AttributeType: strings.TrimSuffix(typeName, "AttributeMetadata"), RequiredLevel: c.Column.RequiredLevel,
			IsValidForCreate: true, IsValidForUpdate: true, MaxLength: c.Column.MaxLength, Source: src}
		e.add(at)
	}
	for _, k := range d.Keys {
		e := byName[k.Table]
		if e == nil {
			return fmt.Errorf("%s: key on %s, a table without published metadata", file, k.Table)
		}
		e.Keys = append(e.Keys, key{LogicalName: strings.ToLower(k.Key.SchemaName), SchemaName: k.Key.SchemaName, KeyAttributes: k.Key.KeyAttributes,
			EntityKeyIndexStatus: "Active", Source: src})
	}
	return nil
}

package sandbox

import (
	"net/http"
	"strings"
)

// describe serves GET /services/data/vXX.X/sobjects/{Object}/describe,
// the sObject Describe resource ("Get Field and Other Metadata for an
// Object", https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_sobject_describe.htm;
// the properties are DescribeSObjectResult's and its Field's,
// https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_describesobjects_describesobjectresult.htm),
// from the schema the sandbox enforces: the published sfschema.json
// extended by Options.Schemas. It is read-only and answers the subset of
// the result `ehrbridge crm check` and `lint --schema` read: the object's
// name, label, createable, updateable, and each field's name, label,
// type, length, precision, scale, nillable, createable, updateable,
// defaultedOnCreate, externalId, idLookup, unique, caseSensitive,
// restrictedPicklist, picklistValues [{value, label, active}],
// referenceTo and relationshipName.
//
// Where no published source gives a field's type the sandbox's type is
// "" (it enforces no type there); a real org always names one. The
// sandbox accepts creates and updates of every object it knows, so the
// object is createable and updateable. An unknown object, like any
// unknown resource, is 404 [{"errorCode":"NOT_FOUND","message":"The
// requested resource does not exist"}] (Status Codes and Error Responses,
// https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm);
// with Options.NoSchema the sandbox describes nothing.
func (s *Server) describe(w http.ResponseWriter, version, object string) {
	o, apiErr := s.st.schema.object(object)
	if apiErr == nil && o == nil { // NoSchema: nothing to describe
		apiErr = errf("NOT_FOUND", nil, "The requested resource does not exist")
	}
	if apiErr != nil {
		writeErrors(w, http.StatusNotFound, apiErr)
		return
	}
	writeJSON(w, http.StatusOK, o.describe(version))
}

type describeResult struct {
	Name       string            `json:"name"`
	Label      string            `json:"label"`
	Custom     bool              `json:"custom"`
	Createable bool              `json:"createable"`
	Updateable bool              `json:"updateable"`
	Queryable  bool              `json:"queryable"`
	Fields     []describeField   `json:"fields"`
	URLs       map[string]string `json:"urls"`
}

// describeField is a field as a describe shows it: the schema's sfField
// with the properties a describe words differently (the sandbox infers
// custom from the name; picklist values carry a label; a field with no
// relationship shows relationshipName null). encoding/json lets these
// shallower fields hide sfField's of the same name.
type describeField struct {
	sfField
	Custom           bool                `json:"custom"`
	PicklistValues   []describePickValue `json:"picklistValues"`
	RelationshipName *string             `json:"relationshipName"`
}

type describePickValue struct {
	Value        string `json:"value"`
	Label        string `json:"label"`
	Active       bool   `json:"active"`
	DefaultValue bool   `json:"defaultValue"`
}

func (o *sfObject) describe(version string) describeResult {
	d := describeResult{
		Name: o.Name, Label: o.Label, Custom: strings.HasSuffix(o.Name, "__c"),
		Createable: true, Updateable: true, Queryable: true, Fields: []describeField{},
		URLs: map[string]string{
			"sobject":     "/services/data/" + version + "/sobjects/" + o.Name,
			"describe":    "/services/data/" + version + "/sobjects/" + o.Name + "/describe",
			"rowTemplate": "/services/data/" + version + "/sobjects/" + o.Name + "/{ID}",
		},
	}
	if d.Label == "" {
		d.Label = o.Name
	}
	for _, f := range o.Fields {
		df := describeField{sfField: *f, Custom: strings.HasSuffix(f.Name, "__c"), PicklistValues: []describePickValue{}}
		df.ReferenceTo = []string{}
		if df.Label == "" {
			df.Label = f.Name
		}
		for _, p := range f.PicklistValues {
			df.PicklistValues = append(df.PicklistValues, describePickValue{Value: p.Value, Label: p.Value, Active: p.Active})
		}
		df.ReferenceTo = append(df.ReferenceTo, f.ReferenceTo...)
		if f.Type == "reference" {
			// A lookup's relationship name, where the source gives none,
			// is the one the API uses for it: the field name less "Id",
			// or "__c" as "__r" (see lookupField).
			rel := f.RelationshipName
			if rel == "" {
				rel = relationshipOf(f.Name)
			}
			if rel != "" {
				df.RelationshipName = &rel
			}
			// referenceTo only as the sources give it: the sandbox's own
			// routing of relationships (knownLookups) is not a published
			// fact (it named CodeSet for AllergyIntolerance.CodeId, which
			// looks up a CodeSetBundle).
		}
		d.Fields = append(d.Fields, df)
	}
	// The system fields are on every object and in every describe
	// (https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/system_fields.htm);
	// the sources list them rarely.
	for _, sf := range describedSystemFields {
		if o.byName[strings.ToLower(sf.Name)] == nil {
			sf.PicklistValues, sf.ReferenceTo = []describePickValue{}, []string{}
			if sf.Type == "reference" {
				sf.ReferenceTo = []string{"User"}
			}
			d.Fields = append(d.Fields, sf)
		}
	}
	return d
}

// describedSystemFields are the system fields as a describe shows them:
// set by the platform, read-only.
var describedSystemFields = []describeField{
	{sfField: sfField{Name: "Id", Label: "Record ID", Type: "id", Length: 18, IDLookup: true, DefaultedOnCreate: true}},
	{sfField: sfField{Name: "IsDeleted", Label: "Deleted", Type: "boolean", DefaultedOnCreate: true}},
	{sfField: sfField{Name: "CreatedById", Label: "Created By ID", Type: "reference", Length: 18, DefaultedOnCreate: true}},
	{sfField: sfField{Name: "CreatedDate", Label: "Created Date", Type: "datetime", DefaultedOnCreate: true}},
	{sfField: sfField{Name: "LastModifiedById", Label: "Last Modified By ID", Type: "reference", Length: 18, DefaultedOnCreate: true}},
	{sfField: sfField{Name: "LastModifiedDate", Label: "Last Modified Date", Type: "datetime", DefaultedOnCreate: true}},
	{sfField: sfField{Name: "SystemModstamp", Label: "System Modstamp", Type: "datetime", DefaultedOnCreate: true}},
}

// relationshipOf is the relationship name of a lookup field by the API's
// naming: AccountId → Account, Patient__c → Patient__r; "" if neither.
// A custom lookup's relationship name is its name with __r in place of
// __c ("Understanding Relationship Names, Custom Objects, and Custom
// Fields", https://developer.salesforce.com/docs/platform/salesforce-soql-sosl/guide/sforce-api-calls-soql-relationships-and-custom-objects.html);
// Contact's lookup AccountId has relationshipName Account
// (https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_relationships_understanding.htm).
// Dropping "Id" from other standard lookups is the sandbox's inference
// from that example, used only where the source gives no name.
func relationshipOf(field string) string {
	if base, ok := strings.CutSuffix(field, "__c"); ok {
		return base + "__r"
	}
	if base, ok := strings.CutSuffix(field, "Id"); ok && base != "" {
		return base
	}
	return ""
}

// Command sfschemagen writes internal/sandbox/sfschema.json, the
// Salesforce schema the sandbox serves and enforces, from the published
// facts in ../shared/crm-metadata/salesforce (metadata files of public
// Health Cloud repositories, documentation facts) and from what the
// shipped Health Cloud set tells the admin to create: the custom fields in
// deploy/salesforce/force-app and the picklist values its README says to
// add. Every field and picklist value carries the source it came from.
//
// Run from internal/sandbox: go generate (see sf_schema.go).
package main

import (
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// field is one field in the Salesforce describe format (the subset
// mappings.LoadSchemas and the sandbox read), plus its source.
type field struct {
	Name               string    `json:"name"`
	Label              string    `json:"label,omitempty"`
	Type               string    `json:"type,omitempty"`
	Length             int       `json:"length,omitempty"`
	Nillable           bool      `json:"nillable"`
	Createable         bool      `json:"createable"`
	Updateable         bool      `json:"updateable"`
	DefaultedOnCreate  bool      `json:"defaultedOnCreate,omitempty"`
	ExternalID         bool      `json:"externalId,omitempty"`
	IDLookup           bool      `json:"idLookup,omitempty"`
	Unique             bool      `json:"unique,omitempty"`
	CaseSensitive      bool      `json:"caseSensitive,omitempty"`
	RestrictedPicklist bool      `json:"restrictedPicklist,omitempty"`
	PicklistValues     []pickVal `json:"picklistValues,omitempty"`
	Source             string    `json:"source"`
	Note               string    `json:"note,omitempty"`
}

type pickVal struct {
	Value  string `json:"value"`
	Active bool   `json:"active"`
	Source string `json:"source"`
}

type object struct {
	Name   string   `json:"name"`
	Source string   `json:"source"`
	Fields []*field `json:"fields"`
	byName map[string]*field
}

type orgMetadata struct {
	Objects map[string]struct {
		Fields map[string]struct {
			SeenIn       []string `json:"seenIn"`
			MetadataType string   `json:"metadataType"`
			ExternalID   string   `json:"externalId"`
			Required     string   `json:"required"`
			Unique       string   `json:"unique"`
			Length       string   `json:"length"`
		} `json:"fields"`
		RecordTypePicklists map[string][]struct {
			Values []string `json:"values"`
			Source string   `json:"source"`
		} `json:"recordTypePicklists"`
	} `json:"objects"`
	StandardValueSets map[string][]struct {
		Values []string `json:"values"`
		Source string   `json:"source"`
	} `json:"standardValueSets"`
}

const (
	orgSource    = "../shared/crm-metadata/salesforce/org_metadata_from_public_repos.json"
	readmeSource = "configs/mappings/healthcloud/README.md, \"What a Salesforce admin must create\" (admin adds)"
	accountRef   = "https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_account.htm (Person Account fields)"
)

// types maps Metadata API field types to describe types.
var types = map[string]string{
	"Text": "string", "Picklist": "picklist", "MultiselectPicklist": "multipicklist", "Lookup": "reference",
	"MasterDetail": "reference", "Hierarchy": "reference", "DateTime": "datetime", "Date": "date", "Checkbox": "boolean",
	"Number": "double", "LongTextArea": "textarea", "TextArea": "textarea", "Html": "textarea", "Email": "email",
	"Phone": "phone", "Currency": "currency", "Url": "url", "Percent": "percent", "AutoNumber": "string",
}

// docTypes maps documented field types ("string(255)", "picklist(40)",
// "TEXT(64)") to describe types and lengths.
func docType(t string) (string, int) {
	t = strings.TrimSpace(t)
	n := 0
	if i := strings.Index(t, "("); i > 0 && strings.HasSuffix(t, ")") {
		n, _ = strconv.Atoi(t[i+1 : len(t)-1])
		t = t[:i]
	}
	t = strings.ToLower(strings.Fields(t)[0])
	if t == "text" {
		t = "string"
	}
	return t, n
}

// documented are standard fields the shipped set and the write-back use
// that no metadata file in the public repositories shows, with the object
// reference page that documents them. Lengths are left out where no
// source gives them (the sandbox then checks none).
var documented = []struct {
	object, source string
	fields         []string
}{
	{"Account", accountRef, []string{"LastName", "PersonMailingStreet", "PersonMailingCity", "PersonMailingState", "PersonMailingPostalCode", "PersonMailingCountry"}},
	{"User", "https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_user.htm", []string{"FirstName", "LastName"}},
}

// adminAdds are the picklist values configs/mappings/healthcloud/README.md
// tells the admin to check or add.
var adminAdds = map[string]map[string][]string{
	"Account":            {"PersonGender": {"Male", "Female", "Other", "Unknown"}},
	"ClinicalEncounter":  {"Status": {"Planned", "Arrived", "Triaged", "In Progress", "Finished", "Cancelled"}, "Category": {"Ambulatory", "Emergency", "Home Health", "Inpatient Encounter"}},
	"CareObservation":    {"ObservationStatus": {"Registered", "Preliminary", "Final", "Amended", "Cancelled", "Entered in Error"}, "ValueInterpretation": {"High", "Low", "Normal"}, "Category": {"Vital-Signs", "Social-History", "Imaging", "Survey", "Exam", "Therapy", "Activity", "Procedure"}},
	"HealthCondition":    {"ConditionStatus": {"Active", "Inactive", "Recurrence", "Relapse", "Remission", "Resolved"}, "DiagnosticStatus": {"Confirmed", "Differential", "Entered in error", "Provisional", "Refuted", "Unconfirmed"}, "Type": {"Encounter Diagnosis", "Problem List Item"}, "Severity": {"Mild", "Moderate", "Severe"}},
	"AllergyIntolerance": {"Category": {"Biologic", "Environment", "Food", "Medication"}, "Type": {"Allergy", "Intolerance"}, "Severity": {"High", "Low", "Unable to assess"}, "Status": {"Active", "Inactive", "Resolved"}, "VerificationStatus": {"Confirmed", "Entered in error", "Refuted", "Unconfirmed"}},
	"ServiceAppointment": {"Status": {"Scheduled", "Canceled"}},
}

func main() {
	meta := flag.String("metadata", "../../../shared/crm-metadata/salesforce", "directory of org_metadata_from_public_repos.json and docs_facts.json")
	deploy := flag.String("deploy", "../../deploy/salesforce/force-app/main/default/objects", "the shipped set's custom objects and fields")
	out := flag.String("out", "sfschema.json", "file to write")
	flag.Parse()
	if err := run(*meta, *deploy, *out); err != nil {
		fmt.Fprintln(os.Stderr, "sfschemagen:", err)
		os.Exit(1)
	}
}

func run(meta, deploy, out string) error {
	var org orgMetadata
	if err := readJSON(filepath.Join(meta, "org_metadata_from_public_repos.json"), &org); err != nil {
		return err
	}
	var docs map[string]json.RawMessage
	if err := readJSON(filepath.Join(meta, "docs_facts.json"), &docs); err != nil {
		return err
	}
	objs := map[string]*object{}
	get := func(name string) *object {
		if o := objs[name]; o != nil {
			return o
		}
		o := &object{Name: name, Source: orgSource, byName: map[string]*field{}}
		objs[name] = o
		return o
	}
	fieldOf := func(o *object, name, source string) *field {
		if f := o.byName[name]; f != nil {
			return f
		}
		f := &field{Name: name, Nillable: true, Createable: true, Updateable: true, Source: source}
		o.byName[name] = f
		o.Fields = append(o.Fields, f)
		return f
	}
	for name, mo := range org.Objects {
		if len(mo.Fields) == 0 || name == "Activity" {
			continue // PersonAccount: its fields are Account's; Activity's are Task's and Event's
		}
		o := get(name)
		fieldOf(o, "Id", "every sObject (https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/system_fields.htm)").Createable = false
		o.byName["Id"].Updateable = false
		o.byName["Id"].Nillable = false
		o.byName["Id"].IDLookup = true
		o.byName["Id"].Type = "id"
		for fname, mf := range mo.Fields {
			// Custom fields of the public orgs (Stripe_Customer_Id__c, ...)
			// are theirs, not Health Cloud's; managed-package fields
			// (HealthCloudGA__...) belong to the older managed package.
			if strings.Contains(fname, "__") {
				continue
			}
			src := orgSource
			if len(mf.SeenIn) > 0 {
				src = mf.SeenIn[0]
			}
			f := fieldOf(o, fname, src)
			f.Type = types[mf.MetadataType]
			f.Length, _ = strconv.Atoi(mf.Length)
			f.ExternalID = mf.ExternalID == "true"
			f.Unique = mf.Unique == "true"
			if mf.Required == "true" {
				f.Nillable = false
			}
		}
		for fname, sets := range mo.RecordTypePicklists {
			f := o.byName[fname]
			if f == nil {
				continue
			}
			if f.Type == "" {
				f.Type = "picklist"
			}
			for _, set := range sets {
				for _, v := range set.Values {
					addValue(f, v, set.Source)
				}
			}
		}
	}
	if sa := objs["ServiceAppointment"]; sa != nil {
		for _, set := range org.StandardValueSets["ServiceAppointmentStatus"] {
			f := fieldOf(sa, "Status", set.Source)
			f.Type = "picklist"
			for _, v := range set.Values {
				if v != "None" {
					addValue(f, v, set.Source)
				}
			}
		}
	}
	if err := applyDocs(docs, get, fieldOf); err != nil {
		return err
	}
	for _, d := range documented {
		for _, n := range d.fields {
			if f := fieldOf(get(d.object), n, d.source); f.Type == "" {
				f.Type = "string"
			}
		}
	}
	acct := get("Account")
	// LastName is required of a person account only; the sandbox keeps
	// its rule that an Account needs Name or LastName.
	if f := acct.byName["PersonMailingStreet"]; f != nil {
		f.Type = "textarea"
	}
	if err := applyDeploy(deploy, get, fieldOf); err != nil {
		return err
	}
	for oname, byField := range adminAdds {
		o := get(oname)
		for fname, values := range byField {
			f := fieldOf(o, fname, readmeSource)
			if f.Type == "" || f.Type == "string" {
				f.Type = "picklist"
			}
			for _, v := range values {
				addValue(f, v, readmeSource)
			}
		}
	}
	var list []*object
	for _, o := range objs {
		sort.Slice(o.Fields, func(i, j int) bool { return o.Fields[i].Name < o.Fields[j].Name })
		list = append(list, o)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	data, err := json.MarshalIndent(list, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(data, '\n'), 0o644)
}

func addValue(f *field, v, source string) {
	for _, p := range f.PicklistValues {
		if p.Value == v {
			return
		}
	}
	f.PicklistValues = append(f.PicklistValues, pickVal{Value: v, Active: true, Source: source})
}

// applyDocs adds docs_facts.json: types, lengths, properties and
// documented picklist values.
func applyDocs(docs map[string]json.RawMessage, get func(string) *object, fieldOf func(*object, string, string) *field) error {
	for oname, raw := range docs {
		if strings.HasPrefix(oname, "_") || oname == "REST" {
			continue
		}
		var facts map[string]map[string]any
		if err := json.Unmarshal(raw, &facts); err != nil {
			return fmt.Errorf("docs_facts %s: %v", oname, err)
		}
		o := get(oname)
		fnames := make([]string, 0, len(facts))
		for fname := range facts {
			fnames = append(fnames, fname)
		}
		sort.Strings(fnames) // the same sources every run
		for _, fname := range fnames {
			fact := facts[fname]
			src, _ := fact["source"].(string)
			// "same page" in docs_facts.json refers to a sibling fact's URL.
			switch src {
			case "same page":
				src = siblingSource(facts, false)
			case "same soft-builder page":
				src = siblingSource(facts, true)
			}
			switch fname {
			case "fields_and_types":
				for k, v := range fact {
					ts, ok := v.(string)
					if k == "source" || !ok {
						continue
					}
					t, n := docType(ts)
					if t == "reference" || strings.HasPrefix(ts, "reference") {
						t = "reference"
					}
					f := fieldOf(o, k, src)
					if f.Type == "" || f.Type == t {
						f.Type = t
					}
					if n > 0 {
						f.Length = n
						f.Source = src
					}
				}
				continue
			case "fhir_mapping", "status_fhir_mapping":
				continue
			}
			f := fieldOf(o, fname, src)
			if t, ok := fact["type"].(string); ok {
				dt, n := docType(t)
				f.Type = dt
				if n > 0 {
					f.Length = n
				}
				f.Source = src
			}
			if n, ok := fact["length"].(float64); ok {
				f.Length = int(n)
			}
			props, _ := fact["properties"].(string)
			if strings.Contains(props, "idLookup") {
				f.IDLookup = true
			}
			if strings.Contains(props, "not Nillable") {
				f.Nillable = false
			}
			if strings.Contains(props, "Defaulted on create") {
				f.DefaultedOnCreate = true
			}
			if note, ok := fact["note"].(string); ok {
				f.Note = note
			}
			if vals, ok := fact["values"].([]any); ok {
				for _, v := range vals {
					if s, ok := v.(string); ok {
						addValue(f, s, src)
					}
				}
			}
		}
	}
	return nil
}

// siblingSource is the first full URL among an object's facts ("same
// page" in docs_facts.json refers to it).
func siblingSource(facts map[string]map[string]any, softBuilder bool) string {
	names := make([]string, 0, len(facts))
	for n := range facts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if s, ok := facts[n]["source"].(string); ok && strings.HasPrefix(s, "https://") && strings.Contains(s, "soft-builder") == softBuilder {
			return s
		}
	}
	return "../shared/crm-metadata/salesforce/docs_facts.json"
}

type customField struct {
	FullName   string `xml:"fullName"`
	Label      string `xml:"label"`
	CaseSens   bool   `xml:"caseSensitive"`
	Type       string `xml:"type"`
	Length     int    `xml:"length"`
	Required   bool   `xml:"required"`
	ExternalID bool   `xml:"externalId"`
	Unique     bool   `xml:"unique"`
	ValueSet   struct {
		Restricted bool `xml:"restricted"`
		Values     []struct {
			FullName string `xml:"fullName"`
		} `xml:"valueSetDefinition>value"`
	} `xml:"valueSet"`
}

// applyDeploy adds the custom fields deploy/salesforce creates.
func applyDeploy(dir string, get func(string) *object, fieldOf func(*object, string, string) *field) error {
	files, err := filepath.Glob(filepath.Join(dir, "*", "fields", "*.field-meta.xml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no field-meta.xml under %s", dir)
	}
	sort.Strings(files)
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var cf customField
		if err := xml.Unmarshal(data, &cf); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		oname := filepath.Base(filepath.Dir(filepath.Dir(path)))
		rel := "deploy/salesforce/force-app/main/default/objects/" + oname + "/fields/" + filepath.Base(path)
		objs := []string{oname}
		if oname == "Activity" {
			objs = []string{"Task", "Event"} // activity custom fields appear on both
		}
		for _, on := range objs {
			f := fieldOf(get(on), cf.FullName, rel)
			f.Type = types[cf.Type]
			f.Length = cf.Length
			f.Nillable = !cf.Required && cf.Type != "Checkbox"
			f.DefaultedOnCreate = cf.Type == "Checkbox"
			f.ExternalID, f.Unique = cf.ExternalID, cf.Unique
			// A unique text field is case-insensitive unless
			// caseSensitive is set (CustomField, Metadata API).
			f.CaseSensitive = cf.CaseSens && cf.Unique
			f.Label = cf.Label
			f.RestrictedPicklist = cf.ValueSet.Restricted
			for _, v := range cf.ValueSet.Values {
				addValue(f, v.FullName, rel)
			}
		}
	}
	return nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

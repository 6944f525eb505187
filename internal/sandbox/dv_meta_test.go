package sandbox

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The metadata calls `ehrbridge crm check` makes, answered in the shape
// "Query table definitions using the Web API" documents, from
// dvschema.json.
func TestDataverseEntityDefinitions(t *testing.T) {
	r := newDVRig(t, Options{})
	st, _, m := r.do(t, "GET", "EntityDefinitions(LogicalName='msemr_appointmentemr')?$select=LogicalName,EntitySetName,IsActivity&$expand=Attributes,Keys,ManyToOneRelationships", "")
	if st != 200 || m["LogicalName"] != "msemr_appointmentemr" || m["EntitySetName"] != "msemr_appointmentemrs" || m["IsActivity"] != true || m["MetadataId"] == nil {
		t.Fatalf("entity: %d %v", st, m["LogicalName"])
	}
	if _, ok := m["PrimaryIdAttribute"]; ok {
		t.Errorf("$select not honoured: PrimaryIdAttribute returned")
	}
	if !strings.HasSuffix(m["@odata.context"].(string), "$metadata#EntityDefinitions(LogicalName,EntitySetName,IsActivity)/$entity") {
		t.Errorf("context %v", m["@odata.context"])
	}
	attrs, _ := m["Attributes"].([]any)
	var status map[string]any
	for _, a := range attrs {
		if a.(map[string]any)["LogicalName"] == "msemr_appointmentstatus" {
			status = a.(map[string]any)
		}
	}
	if status == nil || status["AttributeType"] != "Picklist" || status["@odata.type"] != "#Microsoft.Dynamics.CRM.PicklistAttributeMetadata" || status["Source"] == nil {
		t.Errorf("msemr_appointmentstatus: %v", status)
	}
	if _, ok := status["OptionSet"]; ok {
		t.Errorf("OptionSet returned without $expand")
	}
	keys, _ := m["Keys"].([]any)
	if len(keys) != 1 || keys[0].(map[string]any)["KeyAttributes"].([]any)[0] != "new_ehrkey" || keys[0].(map[string]any)["EntityKeyIndexStatus"] != "Active" {
		t.Errorf("keys: %v", keys)
	}
	var nav map[string]any
	for _, x := range m["ManyToOneRelationships"].([]any) {
		if x.(map[string]any)["ReferencingAttribute"] == "msemr_actorpatient" {
			nav = x.(map[string]any)
		}
	}
	if nav == nil || nav["ReferencingEntityNavigationPropertyName"] != "msemr_ActorPatient_msemr_appointmentemr" || nav["ReferencedEntity"] != "contact" {
		t.Errorf("actor patient relationship: %v", nav)
	}

	// Without $expand the collections are not returned.
	if st, _, m := r.do(t, "GET", "EntityDefinitions(LogicalName='contact')", ""); st != 200 || m["Attributes"] != nil || m["EntitySetName"] != "contacts" {
		t.Errorf("plain entity: %d %v", st, m)
	}

	// Casts to a derived attribute type.
	st, _, m = r.do(t, "GET", "EntityDefinitions(LogicalName='msemr_appointmentemr')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet", "")
	if st != 200 {
		t.Fatalf("picklist cast: %d %v", st, m)
	}
	var values []float64
	for _, a := range m["value"].([]any) {
		a := a.(map[string]any)
		if a["AttributeType"] != nil {
			t.Errorf("$select=LogicalName returned AttributeType")
		}
		if a["LogicalName"] == "msemr_appointmentstatus" {
			for _, o := range a["OptionSet"].(map[string]any)["Options"].([]any) {
				o := o.(map[string]any)
				values = append(values, o["Value"].(float64))
				if o["Label"].(map[string]any)["UserLocalizedLabel"].(map[string]any)["Label"] == "" {
					t.Errorf("option without label")
				}
			}
		}
	}
	if len(values) == 0 || values[0] != 935000000 {
		t.Errorf("appointment status options: %v", values)
	}
	st, _, m = r.do(t, "GET", "EntityDefinitions(LogicalName='msemr_observation')/Attributes/Microsoft.Dynamics.CRM.StatusAttributeMetadata?$select=LogicalName&$expand=OptionSet", "")
	if st != 200 || len(m["value"].([]any)) != 1 {
		t.Fatalf("status cast: %d %v", st, m)
	}
	opts := m["value"].([]any)[0].(map[string]any)["OptionSet"].(map[string]any)["Options"].([]any)
	if opts[0].(map[string]any)["State"] == nil {
		t.Errorf("status option without State: %v", opts[0])
	}
	if st, _, m = r.do(t, "GET", "EntityDefinitions(LogicalName='msemr_observation')/Attributes/Microsoft.Dynamics.CRM.StateAttributeMetadata?$expand=OptionSet", ""); st != 200 || len(m["value"].([]any)) != 1 {
		t.Errorf("state cast: %d %v", st, m)
	}
	maxLen := func(table, col string) any {
		st, _, m := r.do(t, "GET", "EntityDefinitions(LogicalName='"+table+"')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength", "")
		if st != 200 {
			t.Fatalf("string cast: %d %v", st, m)
		}
		for _, a := range m["value"].([]any) {
			if a.(map[string]any)["LogicalName"] == col {
				return a.(map[string]any)["MaxLength"]
			}
		}
		return nil
	}
	if n := maxLen("contact", "msemr_medicalrecordnumber"); n != 256.0 {
		t.Errorf("contact.msemr_medicalrecordnumber MaxLength %v", n)
	}
	st, _, m = r.do(t, "GET", "EntityDefinitions(LogicalName='msemr_observation')/Attributes/Microsoft.Dynamics.CRM.DecimalAttributeMetadata?$select=LogicalName,Precision,MinValue,MaxValue", "")
	found := false
	for _, a := range m["value"].([]any) {
		a := a.(map[string]any)
		if a["LogicalName"] == "msemr_valuetypequantityvalue" {
			found = a["Precision"] == 2.0 && a["MinValue"] == -1e11 && a["MaxValue"] == 1e11
		}
	}
	if st != 200 || !found {
		t.Errorf("decimal cast: %d %v", st, m)
	}

	// A table the schema does not know: Dataverse's 404.
	if st, _, m := r.do(t, "GET", "EntityDefinitions(LogicalName='msemr_nosuchtable')?$expand=Attributes", ""); st != 404 || errCode(m) != dvNoEntity ||
		!strings.Contains(m["error"].(map[string]any)["message"].(string), "namemapping = 'Logical' was not found in the MetadataCache") {
		t.Errorf("unknown table: %d %v", st, m)
	}
	if st, _, m := r.do(t, "GET", "EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.Nonsense", ""); st != 404 || errCode(m) != dvNoSegment {
		t.Errorf("unknown cast: %d %v", st, m)
	}
	if st, _, m := r.do(t, "GET", "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='lastname')?$select=LogicalName,MaxLength", ""); st != 200 || m["LogicalName"] != "lastname" {
		t.Errorf("one attribute: %d %v", st, m)
	}
	if st, _, m := r.do(t, "GET", "EntityDefinitions?$select=LogicalName,EntitySetName&$filter="+url.QueryEscape("LogicalName eq 'task' or LogicalName eq 'contact' or LogicalName eq 'nope'"), ""); st != 200 || len(m["value"].([]any)) != 2 {
		t.Errorf("filtered collection: %d %v", st, m)
	}
	if st, _, m := r.do(t, "GET", "EntityDefinitions?$filter="+url.QueryEscape("IsActivity eq true"), ""); st != 400 {
		t.Errorf("unsupported filter: %d %v", st, m)
	}
	if st, _, m := r.do(t, "GET", "WhoAmI", ""); st != 200 || m["UserId"] != SandboxUserID {
		t.Errorf("WhoAmI: %d %v", st, m)
	}
	// Metadata calls need a token like every Web API call.
	r.token = "nope"
	if st, _, _ := r.do(t, "GET", "EntityDefinitions(LogicalName='contact')", ""); st != 401 {
		t.Errorf("no token: %d", st)
	}
}

// A site's saved EntityDefinitions response extends and overrides the
// published schema: a new table, a longer column, a new navigation
// property; the sandbox then serves and enforces it.
func TestDataverseSiteSchema(t *testing.T) {
	f := filepath.Join(t.TempDir(), "defs.json")
	os.WriteFile(f, []byte(`{"value":[
	 {"LogicalName":"new_widget","EntitySetName":"new_widgets","IsActivity":false,"Attributes":[{"LogicalName":"new_name","AttributeType":"String","@odata.type":"#Microsoft.Dynamics.CRM.StringAttributeMetadata","MaxLength":10}]},
	 {"LogicalName":"contact","Attributes":[{"LogicalName":"x_extra","AttributeType":"String","@odata.type":"#Microsoft.Dynamics.CRM.StringAttributeMetadata","MaxLength":5}]}]}`), 0o600)
	r := newDVRig(t, Options{Schemas: []string{f}})
	if st, _, m := r.do(t, "GET", "EntityDefinitions(LogicalName='new_widget')?$expand=Attributes", ""); st != 200 || len(m["Attributes"].([]any)) != 1 {
		t.Errorf("site table: %d %v", st, m)
	}
	if st, _, m := r.do(t, "POST", "new_widgets", `{"x_other":"a"}`); st != 400 || errCode(m) != dvPayloadError {
		t.Errorf("unknown column of a site table: %d %v", st, m)
	}
	if st, _, m := r.do(t, "POST", "contacts", `{"x_extra":"abc","lastname":"L"}`); st != 204 {
		t.Errorf("site column on contact: %d %v", st, m)
	}
	if st, _, m := r.do(t, "GET", "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='msemr_medicalrecordnumber')", ""); st != 200 || m["MaxLength"] != 256.0 {
		t.Errorf("published column kept: %d %v", st, m)
	}
}

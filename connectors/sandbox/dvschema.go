package sandbox

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// The Dataverse tables whose schema the sandbox knows (dvschema.json,
// written from the published facts in ../shared/crm-metadata: the
// Healthcare Accelerator 2.2.3.3 entity and relationship XML and the
// Microsoft CDM Contact documents; each table names its sources). On these
// tables the sandbox answers as Dataverse does: a column the table does
// not have is refused, and an @odata.bind must name one of the table's
// single-valued navigation properties, spelled as Dataverse spells them
// (case-sensitive; on an activity table such as msemr_appointmentemr they
// carry the table's name: msemr_ActorPatient_msemr_appointmentemr).
// Columns and lookups of the default publisher's prefix new_ are a site's
// own (deploy/dataverse creates some) and are accepted. Tables not listed
// (task, systemuser, a site's own) have no schema here: any column is
// accepted on them.

//go:embed dvschema.json
var dvSchemaJSON []byte

// dvTableSchema is one table's columns and navigation properties.
type dvTableSchema struct {
	Set        string           `json:"set"`
	Activity   bool             `json:"activity"`
	Columns    []string         `json:"columns"`
	Navigation map[string]dvNav `json:"navigation"`
	name       string           // logical name
	cols       map[string]bool
}

// dvNav is a single-valued navigation property: its lookup column and the
// table it points at.
type dvNav struct {
	Column string `json:"column"`
	Target string `json:"target"`
}

// dvSchema holds the known tables by logical name.
var dvSchema = func() map[string]*dvTableSchema {
	var f struct {
		Tables map[string]*dvTableSchema `json:"tables"`
	}
	if err := json.Unmarshal(dvSchemaJSON, &f); err != nil {
		panic("sandbox: dvschema.json: " + err.Error()) // the embedded file is part of the build
	}
	for name, t := range f.Tables {
		t.name = name
		t.cols = map[string]bool{}
		for _, c := range t.Columns {
			t.cols[c] = true
		}
	}
	return f.Tables
}()

// dvSchemaBySet holds the known tables by entity set name.
var dvSchemaBySet = func() map[string]*dvTableSchema {
	m := make(map[string]*dvTableSchema, len(dvSchema))
	for _, t := range dvSchema {
		m[t.Set] = t
	}
	return m
}()

// siteOwn reports a column or navigation property of the default
// publisher's prefix, which a site adds to any table.
func siteOwn(name string) bool { return strings.HasPrefix(strings.ToLower(name), "new_") }

// The errors below are Dataverse's: the codes as Microsoft publishes them
// in "Troubleshoot Dataverse Web API client errors"
// (https://learn.microsoft.com/en-us/troubleshoot/power-platform/power-apps/dataverse/web-api-client-errors),
// the texts of payload errors as the service words them since version
// 9.2.24112: "Error identified in Payload provided by the user for Entity
// :'<set>', For more information ... ---->  InnerException : ..." (quoted
// in https://github.com/Capgemini/powerapps-specflow-bindings/issues/185
// and, for an unknown column, https://github.com/microsoft/PowerAppsCodeApps/issues/73;
// older versions answered an unknown column 0x0 "An error occurred while
// validating input parameters: ...", https://github.com/verbb/formie/issues/1251).
const (
	dvCodeZero     = "0x0"        // an unknown property in $select
	dvPayloadError = "0x80048d19" // "Error identified in Payload provided by the user"
	dvNoSegment    = "0x8006088a" // "Resource not found for the segment"
)

// dvPayload is a 400 payload error about a body sent to an entity set.
func dvPayload(set, inner string, args ...any) *dvError {
	return dverr(400, dvPayloadError, "Error identified in Payload provided by the user for Entity :'%s', For more information on this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ---->  InnerException : %s", set, fmt.Sprintf(inner, args...))
}

// dvUnknownColumn is Dataverse's answer to a body property the table does
// not have.
func dvUnknownColumn(t *objectStore, name string) *dvError {
	return dvPayload(t.Prefix, "Microsoft.Crm.CrmException: Invalid property '%s' was found in entity 'Microsoft.Dynamics.CRM.%s'.", name, t.Name)
}

// dvUndeclaredNav is Dataverse's answer to "x@odata.bind" where x is not
// a single-valued navigation property of the table.
func dvUndeclaredNav(t *objectStore, nav string) *dvError {
	return dvPayload(t.Prefix, "Microsoft.OData.ODataException: An undeclared property '%s' which only has property annotations in the payload but no property value was found in the payload. In OData, only declared navigation properties and declared named streams can be represented as properties without values.", nav)
}

// keyUnaddressable lists the characters with which an alternate-key value
// cannot address a row: "If the data within a column that is used in an
// alternate key contains one of the following characters /, #, <, >, *,
// %, &, :, \, ?, + then GET or PATCH actions won't work"
// (https://learn.microsoft.com/en-us/power-apps/maker/data-platform/define-alternate-keys-portal;
// crm-metadata connector_checks.json DV-5). Percent-encoding does not help.
const keyUnaddressable = "/#<>*%&:\\?+"

// dvCheckKeyChars refuses an alternate key whose values hold one of those
// characters. Microsoft publishes only that GET and PATCH "won't work";
// the answer (400, 0x80060888, this message) is the sandbox's choice, and
// so is refusing DELETE by such a key and an @odata.bind to one, which
// address a row the same way. The message names the columns, not the
// values.
func dvCheckKeyChars(k dvKey) *dvError {
	for i, v := range k.vals {
		if s, ok := v.(string); ok && strings.ContainsAny(s, keyUnaddressable) {
			return dverr(400, dvBadRequest, "The value of the alternate key column '%s' contains a character (/ # < > * %% & : \\ ? +) with which Dataverse cannot address a row.", k.cols[i])
		}
	}
	return nil
}

// sortedKeys lists a record's property names in order, so that of two
// faults in one body the same one is always reported.
func sortedKeys(r Record) []string {
	out := make([]string, 0, len(r))
	for k := range r {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// dvCheckSelect refuses a $select column that a known table does not
// have, as Dataverse does ("Could not find a property named ...", 0x0). Lookup values (_x_value) are checked by their column.
func dvCheckSelect(set string, sel []string) *dvError {
	schema := dvSchemaBySet[strings.ToLower(set)]
	if schema == nil {
		return nil
	}
	for _, c := range sel {
		col := strings.ToLower(c)
		if inner, ok := strings.CutPrefix(col, "_"); ok {
			col = strings.TrimSuffix(inner, "_value")
		}
		if !schema.cols[col] && !siteOwn(col) {
			return dverr(400, dvCodeZero, "Could not find a property named '%s' on type 'Microsoft.Dynamics.CRM.%s'.", c, schema.name)
		}
	}
	return nil
}

package sandbox

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Values are checked against the column metadata as Dataverse checks them
// (dv_values.go): option values, text lengths, number ranges, decimal
// precision (rounded), SystemRequired (not ApplicationRequired) columns;
// in a single create, an update, an upsert by alternate key and a $batch
// change set alike. Error texts name the column, never the value.
func TestDataverseColumnValues(t *testing.T) {
	r := newDVRig(t, Options{})
	long := strings.Repeat("x", 51) // contact.lastname: MaxLength 50 (CDM Contact)
	cases := []struct {
		name, method, path, body, code, text string
	}{
		{"option not in the set", "POST", "contacts", `{"lastname":"A","gendercode":3}`, dvOptionRange,
			"The value of 'gendercode' on record of type 'contact' is outside the valid range. Accepted Values: 935000000,935000001,935000002,1,2"},
		{"option as a string", "POST", "contacts", `{"lastname":"A","gendercode":"1"}`, dvTypeMismatch, "'gendercode'"},
		{"status option", "POST", "msemr_observations", `{"statuscode":7}`, dvOptionRange, "'statuscode' on record of type 'msemr_observation'"},
		{"text too long", "POST", "contacts", `{"lastname":"` + long + `"}`, dvValidation,
			"The length of the 'lastname' attribute of the 'contact' entity exceeded the maximum allowed length of '50'."},
		{"text too long on update", "PATCH", "contacts(msemr_medicalrecordnumber='V|1')", `{"lastname":"` + long + `"}`, dvValidation, "'lastname'"},
		{"key value too long on upsert", "PATCH", "msemr_encounters(msemr_encounteridentifier='" + strings.Repeat("k", 101) + "')", `{}`, dvValidation,
			"The length of the 'msemr_encounteridentifier' attribute of the 'msemr_encounter' entity exceeded the maximum allowed length of '100'."},
		{"decimal out of range", "POST", "msemr_observations", `{"msemr_valuetypequantityvalue":100000000001}`, dvValidation,
			"The value of 'msemr_valuetypequantityvalue' on record of type 'msemr_observation' is outside the valid range(-100000000000 to 100000000000)."},
		{"whole number out of range", "POST", "msemr_appointmentemrs", `{"subject":"S","actualdurationminutes":-1}`, dvValidation,
			"'actualdurationminutes' on record of type 'msemr_appointmentemr' is outside the valid range. Minimum Value: 0, Maximum value: 2147483647"},
		{"system required set to null", "POST", "msemr_observations", `{"ownerid":null}`, dvValidation, "'ownerid'"},
	}
	for _, c := range cases {
		st, _, m := r.do(t, c.method, c.path, c.body)
		e, _ := m["error"].(map[string]any)
		msg, _ := e["message"].(string)
		if st != 400 || errCode(m) != c.code || !strings.Contains(msg, c.text) {
			t.Errorf("%s: %d %s %q", c.name, st, errCode(m), msg)
		}
		if strings.Contains(msg, long) || strings.Contains(msg, "kkkk") || strings.Contains(msg, "100000000001") {
			t.Errorf("%s: the message quotes the value: %q", c.name, msg)
		}
	}
	// Nothing refused was written.
	if n := len(r.s.DataverseRecords("contact")) + len(r.s.DataverseRecords("msemr_observation")) + len(r.s.DataverseRecords("msemr_encounter")); n != 0 {
		t.Errorf("%d rows written by refused requests", n)
	}

	// Accepted: options in the set, text at MaxLength (UTF-16 units), an
	// ApplicationRequired ("Business required") column left out, since the
	// API enforces only SystemRequired.
	if st, _, m := r.do(t, "PATCH", "contacts(msemr_medicalrecordnumber='V|1')", `{"lastname":"`+strings.Repeat("é", 50)+`","gendercode":2}`); st != 204 {
		t.Errorf("valid contact: %d %v", st, m)
	}
	if st, _, m := r.do(t, "POST", "msemr_conditions", `{"msemr_verificationstatus":935000000}`); st != 204 {
		t.Errorf("condition without its ApplicationRequired msemr_name: %d %v", st, m)
	}
	// A decimal with more places than its precision (2) is rounded, not
	// refused.
	for in, want := range map[string]float64{"5.125": 5.13, "-5.125": -5.13, "1.005": 1.01, "7.1": 7.1, "99.999": 100} {
		key := "R" + strings.ReplaceAll(in, ".", "_")
		if st, _, m := r.do(t, "PATCH", "msemr_observations(msemr_observationnumber='"+key+"')", `{"msemr_valuetypequantityvalue":`+in+`}`); st != 204 {
			t.Fatalf("decimal %s: %d %v", in, st, m)
		}
		var got any
		for _, o := range r.s.DataverseRecords("msemr_observation") {
			if o["msemr_observationnumber"] == key {
				got = o["msemr_valuetypequantityvalue"]
			}
		}
		if got != want {
			t.Errorf("decimal %s stored as %v, want %v", in, got, want)
		}
	}

	// A navigation property points at one table: a reference to a row of
	// another table is refused, though the row exists.
	if st, _, m := r.do(t, "POST", "msemr_encounters", `{"msemr_EncounterPatientIdentifier@odata.bind":"/msemr_observations(msemr_observationnumber='R5_125')"}`); st != 400 || errCode(m) != dvPayloadError {
		t.Errorf("bind to a row of another table: %d %v", st, m)
	}
	if st, _, m := r.do(t, "POST", "msemr_encounters", `{"msemr_EncounterPatientIdentifier@odata.bind":"/contacts(msemr_medicalrecordnumber='V|1')"}`); st != 204 {
		t.Errorf("bind to a contact: %d %v", st, m)
	}

	// Inside a $batch change set: the refused part fails the change set,
	// the part before it is undone.
	body := "--batch_v\r\nContent-Type: multipart/mixed; boundary=cs_v\r\n\r\n" +
		"--cs_v\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n" +
		"POST /api/data/v9.2/contacts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"lastname\":\"InBatch\"}\r\n" +
		"--cs_v\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\n" +
		"POST /api/data/v9.2/msemr_encounters HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"msemr_encounterstatus\":1}\r\n" +
		"--cs_v--\r\n--batch_v--\r\n"
	req, _ := http.NewRequest("POST", r.base+"/api/data/v9.2/$batch", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Content-Type", "multipart/mixed; boundary=batch_v")
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(data), "HTTP/1.1 400") || !strings.Contains(string(data), dvOptionRange) {
		t.Errorf("batch with a bad option: %d\n%s", resp.StatusCode, data)
	}
	for _, c := range r.s.DataverseRecords("contact") {
		if c["lastname"] == "InBatch" {
			t.Errorf("a failed change set left its first row")
		}
	}
}

func TestRoundDecimal(t *testing.T) {
	for _, c := range []struct {
		in     float64
		places int
		want   float64
	}{{2.675, 2, 2.68}, {0.5, 0, 1}, {-0.5, 0, -1}, {9.995, 2, 10}, {123, 2, 123}, {0.0049, 2, 0}, {1e-7, 4, 0}} {
		if got := roundDecimal(c.in, c.places); got != c.want {
			t.Errorf("roundDecimal(%v, %d) = %v, want %v", c.in, c.places, got, c.want)
		}
	}
}

// task and systemuser, which no published metadata file describes, are
// served and checked for the columns deploy/dataverse adds and the
// write-back reads (PartialAttributes); their other columns are accepted.
func TestDataversePartialTables(t *testing.T) {
	r := newDVRig(t, Options{})
	st, _, m := r.do(t, "GET", "EntityDefinitions(LogicalName='task')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength", "")
	found := false
	for _, a := range m["value"].([]any) {
		a := a.(map[string]any)
		found = found || (a["LogicalName"] == "new_ehrstatus" && a["MaxLength"] == 20.0)
	}
	if st != 200 || !found {
		t.Errorf("task's new_ehrstatus: %d %v", st, m)
	}
	if st, _, m := r.do(t, "GET", "EntityDefinitions(LogicalName='systemuser')?$select=EntitySetName", ""); st != 200 || m["EntitySetName"] != "systemusers" {
		t.Errorf("systemuser: %d %v", st, m)
	}
	if st, _, m := r.do(t, "POST", "tasks", `{"subject":"S","scheduledend":"2026-01-05T10:00:00Z","new_sendtoehr":true}`); st != 204 {
		t.Errorf("task with a column not listed: %d %v", st, m)
	}
	if st, _, m := r.do(t, "POST", "tasks", `{"subject":"S","new_ehrstatus":"`+strings.Repeat("s", 21)+`"}`); st != 400 || errCode(m) != dvValidation {
		t.Errorf("task new_ehrstatus over 20: %d %v", st, m)
	}
}

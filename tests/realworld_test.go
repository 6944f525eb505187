package tests

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// rwSide is one shipped demo config and the sandbox names its mapping
// set writes to.
type rwSide struct {
	name, config                   string
	patient, lastName, birthDate   string
	observation, observationSubjct string
}

// Issue 25's "done when", through the real binary on each shipped demo
// config (the embedded sandbox behind it): two patients with blank MRNs
// never share a CRM record (they are refused, never written); two labs
// with the same order number never share an observation; a year-only
// birth date maps (the field left out, the record done with warnings);
// two OID-only senders reusing a control id both get AA; a message with a
// broken MSH-2 gets an answer; a message no mapping accepts is skipped,
// not done.
func TestRealWorldHL7(t *testing.T) {
	for _, side := range []rwSide{
		{name: "healthcloud", config: "ehrbridge.yaml", patient: "Account", lastName: "LastName", birthDate: "PersonBirthdate",
			observation: "CareObservation", observationSubjct: "ObservedSubjectId"},
		{name: "dynamics", config: "ehrbridge-dynamics.yaml", patient: "contact", lastName: "lastname", birthDate: "birthdate",
			observation: "msemr_observation", observationSubjct: "_msemr_subjecttypepatient_value"},
	} {
		t.Run(side.name, func(t *testing.T) { runRealWorld(t, side) })
	}
}

func runRealWorld(t *testing.T, side rwSide) {
	bin := ehrbridgeBinary(t)
	mllpAddr, adminAddr, sandboxAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	shipped := filepath.Join(shared.ModuleRoot(t), "configs", side.config)
	env := append(os.Environ(), "EHRBRIDGE_DATA_DIR="+t.TempDir(), "EHRBRIDGE_MLLP_ADDR="+mllpAddr,
		"EHRBRIDGE_ADMIN_ADDR="+adminAddr, "EHRBRIDGE_SANDBOX_ADDR="+sandboxAddr, "EHRBRIDGE_SANDBOX_TLS_ADDR="+freeAddr(t))
	logs := startDaemon(t, bin, shipped, adminAddr, env).logs

	c, err := net.Dial("tcp", mllpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := mllp.NewReader(c, 0)
	exchange := func(msg string) (hl7.AckCode, string) {
		t.Helper()
		if err := mllp.WriteFrame(c, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		frame, err := rd.ReadFrame()
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		m, err := hl7.Parse(frame)
		if err != nil {
			t.Fatalf("answer does not parse: %v\n%q", err, frame)
		}
		code, id, _, _ := m.Ack()
		return code, id
	}
	msh := func(app, fac, typ, id string) string {
		return "MSH|^~\\&|" + app + "|" + fac + "|EHRBRIDGE|CRM|20260105103000||" + typ + "|" + id + "|P|2.5.1\r"
	}
	admit := func(id, pid3, name, dob string) string {
		return msh("EPIC", "GENHOSP", "ADT^A01", id) + "EVN|A01|20260105103000\r" +
			"PID|1||" + pid3 + "||" + name + "||" + dob + "|F\r" + "PV1|1|I|4WEST^401^B\r"
	}
	result := func(lab, id, mrn, name string) string {
		return msh("LIS", lab, "ORU^R01", id) + "PID|1||" + mrn + "^^^GENHOSP^MR||" + name + "||19700101|M\r" +
			"OBR|1||1001|2345-7^Glucose^LN|||20260105090000\r" +
			"OBX|1|NM|2345-7^Glucose^LN||" + map[string]string{"LABA": "95", "LABB": "180"}[lab] + "|mg/dL|||||F\r"
	}
	sends := []struct {
		what, msg string
		want      hl7.AckCode
	}{
		// 1. blank identifiers: whitespace, HL7 null, an authority alone.
		{"blank MRN (ALPHA)", admit("RW-BLANK1", " ", "ALPHA^ANNA", "19500101"), hl7.AA},
		{"blank MRN (BRAVO)", admit("RW-BLANK2", " ", "BRAVO^BEN", "19600202"), hl7.AA},
		{"null MRN", admit("RW-BLANK3", `""`, "CHARLIE^CAT", "19610303"), hl7.AA},
		{"authority without id", admit("RW-BLANK4", "^^^GENHOSP^MR", "DELTA^DAN", "19620404"), hl7.AA},
		// 2. two labs, one order number, two patients.
		{"lab A order 1001", result("LABA", "RW-LAB1", "RWP1", "ECHO^EVE"), hl7.AA},
		{"lab B order 1001", result("LABB", "RW-LAB2", "RWP2", "FOXTROT^FAY"), hl7.AA},
		// 3. a year-only birth date.
		{"year-only birth date", admit("RW-YEAR", "RWP3^^^GENHOSP^MR", "GOLF^GIA", "1962"), hl7.AA},
		// 5. a message no mapping accepts.
		{"VXU^V04", msh("IIS", "GENHOSP", "VXU^V04^VXU_V04", "RW-VXU") + "PID|1||RWP4^^^GENHOSP^MR||HOTEL^HAL||20200101|M\r", hl7.AA},
		// 4. two senders known only by OIDs, one control id.
		{"OID-only sender 1", msh("^2.16.840.1.114222.4.1.111^ISO", "^2.16.840.1.114222.4.1.111^ISO", "ADT^A08", "RW-OID") +
			"PID|1||RWP5^^^GENHOSP^MR||INDIA^IAN||19800101|M\r", hl7.AA},
		{"OID-only sender 2", msh("^2.16.840.1.114222.4.1.222^ISO", "^2.16.840.1.114222.4.1.222^ISO", "ADT^A08", "RW-OID") +
			"PID|1||RWP6^^^GENHOSP^MR||JULIET^JO||19810101|F\r", hl7.AA},
		// a broken MSH-2 still gets an answer.
		{"broken MSH-2", strings.Replace(msh("EPIC", "GENHOSP", "ADT^A08", "RW-MSH2"), `^~\&`, `^~\\&`, 1) + "PID|1\r", hl7.AR},
	}
	for _, s := range sends {
		code, id := exchange(s.msg)
		wantID := strings.Split(s.msg, "|")[9] // MSH-10
		if code != s.want || id != wantID {
			t.Errorf("%s: answered %s for %q, want %s", s.what, code, id, s.want)
		}
	}

	type listed struct {
		Key    string `json:"key"`
		State  string `json:"state"`
		Reason string `json:"reason"`
		Warned bool   `json:"warned"`
	}
	records := func() map[string]listed {
		c := exec.Command(bin, "log", "list", "--state", "all", "--json", "--limit", "100", "--config", shipped)
		c.Env = env
		out, err := c.Output()
		if err != nil {
			t.Fatalf("log list: %v", err)
		}
		var recs []listed
		if err := json.Unmarshal(out, &recs); err != nil {
			t.Fatalf("log list --json: %v\n%s", err, out)
		}
		byID := map[string]listed{}
		for _, r := range recs {
			byID[r.Key[strings.LastIndexByte(r.Key, '|')+1:]+"@"+r.Key[:strings.LastIndexByte(r.Key, '|')]] = r
		}
		return byID
	}
	settled := func(r listed) bool { return r.State == "done" || r.State == "dead" || r.State == "skipped" }
	var recs map[string]listed
	waitFor(t, 30*time.Second, "every record settled", func() bool {
		recs = records()
		n := 0
		for _, r := range recs {
			if !settled(r) {
				return false
			}
			n++
		}
		return n == 10 // all but the broken MSH-2, which was not stored
	})
	find := func(controlID string) []listed {
		var out []listed
		for k, r := range recs {
			if strings.HasPrefix(k, controlID+"@") {
				out = append(out, r)
			}
		}
		return out
	}
	for _, id := range []string{"RW-BLANK1", "RW-BLANK2", "RW-BLANK3", "RW-BLANK4"} {
		if r := find(id); len(r) != 1 || r[0].State != "dead" || !strings.Contains(r[0].Reason, "no patient identifier") {
			t.Errorf("%s: %+v, want dead with \"no patient identifier\"", id, r)
		}
	}
	if r := find("RW-YEAR"); len(r) != 1 || r[0].State != "done" || !r[0].Warned || !strings.Contains(r[0].Reason, "mapped with warnings") {
		t.Errorf("year-only birth date: %+v, want done with warnings", r)
	}
	if r := find("RW-VXU"); len(r) != 1 || r[0].State != "skipped" || r[0].Reason != "no mapping for VXU^V04" {
		t.Errorf("VXU: %+v, want skipped, \"no mapping for VXU^V04\"", r)
	}
	if r := find("RW-OID"); len(r) != 2 || r[0].State != "done" || r[1].State != "done" {
		t.Errorf("OID-only senders: %+v, want two records, both done", r)
	}
	for _, id := range []string{"RW-LAB1", "RW-LAB2"} {
		if r := find(id); len(r) != 1 || r[0].State != "done" {
			t.Errorf("%s: %+v, want done", id, r)
		}
	}

	objects := func(name string) []map[string]any {
		resp, err := http.Get("http://" + sandboxAddr + "/sandbox/v1/objects/" + name)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out []map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return out
	}
	idField := map[string]string{"Account": "Id", "contact": "contactid"}[side.patient]
	patientID := map[string]string{} // last name -> CRM id
	for _, p := range objects(side.patient) {
		last, _ := p[side.lastName].(string)
		switch last {
		case "ALPHA", "BRAVO", "CHARLIE", "DELTA":
			t.Errorf("patient %s without an identifier was written: %v", last, p)
		case "GOLF":
			if _, has := p[side.birthDate]; has {
				t.Errorf("year-only birth date written as %v: a day would be invented", p[side.birthDate])
			}
		}
		if id, _ := p[idField].(string); id != "" {
			if _, dup := patientID[last]; dup {
				t.Errorf("two %s records for %s", side.patient, last)
			}
			patientID[last] = id
		}
	}
	if patientID["GOLF"] == "" || patientID["ECHO"] == "" || patientID["FOXTROT"] == "" {
		t.Fatalf("patients written: %v", patientID)
	}
	var subjects []string
	for _, o := range objects(side.observation) {
		s, _ := o[side.observationSubjct].(string)
		subjects = append(subjects, s)
	}
	if len(subjects) != 2 || subjects[0] == subjects[1] ||
		!(subjects[0] == patientID["ECHO"] && subjects[1] == patientID["FOXTROT"] || subjects[1] == patientID["ECHO"] && subjects[0] == patientID["FOXTROT"]) {
		t.Errorf("observations of order 1001 from two labs: subjects %v, patients ECHO %s, FOXTROT %s: want one each",
			subjects, patientID["ECHO"], patientID["FOXTROT"])
	}
	for _, phi := range []string{"ALPHA", "BRAVO", "ECHO", "RWP1", "1962"} {
		if strings.Contains(logs.String(), phi) {
			t.Errorf("daemon log contains %q", phi)
		}
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// writeFiles writes name → content under a new directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A broken mapping file gives precise file:line:col problems and exit 1;
// a good one passes, alone or through a config.
func TestLintMappings(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"maps/patient.yaml": "when: {hl7: ADT^A01}\nops:\n  - id: patient\n    object: Account\n    key_field: EHR_Patient_Key__c\n    key: key(PID-3.4, PID-3.1)\n    fields:\n      LastName: PID-5.1\n",
		"bad/broken.yaml":   "when: {hl7: ADT^A01}\nops:\n  - object: Account\n    key_field: K\n    key: PID-3.1\n    fields:\n      LastName: PID-5.x\n      FirstName: uper(PID-5.2)\n      Born: date()\n      LastName: PID-5.1\n      Other: ref(patinet)\n",
		"ehrbridge.yaml":    "data_dir: ./data\nmappings:\n  paths: [maps]\n  timezone: America/Chicago\n",
		"badtz.yaml":        "data_dir: ./data\nmappings:\n  paths: [maps]\n  timezone: Mars/Olympus\n",
		"warn/obs.yaml":     "when: {hl7: ORU}\nops:\n  - id: obs\n    object: CareObservation\n    key_field: K\n    key: concat(OBR-3.1, \"|\", OBX-3.1)\n    fields:\n      V: OBX-5\n",
	})
	if out, errOut, code := runCLI(t, "lint", "--config", filepath.Join(dir, "ehrbridge.yaml")); code != exitOK || !strings.Contains(out, "ok (1 mappings)") {
		t.Errorf("good set: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, code := runCLI(t, "lint", filepath.Join(dir, "maps")); code != exitOK {
		t.Errorf("mapping dir alone: exit %d\n%s", code, out)
	}
	broken := filepath.Join(dir, "bad", "broken.yaml")
	out, _, code := runCLI(t, "lint", broken)
	if code != exitFailure {
		t.Errorf("broken mapping: exit %d", code)
	}
	for _, want := range []string{
		broken + `:7:17: LastName: path "PID-5.x": component: expected a number`,
		broken + ":8:18: FirstName: unknown function uper (did you mean upper?)",
		broken + ":9:13: Born: date takes 1 to 2 arguments, got 0",
		broken + ":10:7: duplicate target field LastName (first at line 7)",
		broken + `:11:14: ref(patinet): there is no op with id "patinet"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lint output lacks %q:\n%s", want, out)
		}
	}
	// Warnings (a key without its namespace) are printed; lint still passes.
	if out, _, code := runCLI(t, "lint", filepath.Join(dir, "warn")); code != exitOK ||
		!strings.Contains(out, filepath.Join(dir, "warn", "obs.yaml")+":6:10: warning: key: OBR-3.1 is an entity identifier (EI) read without its namespace") ||
		!strings.Contains(out, "ok (1 mappings, 1 warnings)") {
		t.Errorf("warnings: exit %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "lint", "--config", filepath.Join(dir, "badtz.yaml"))
	if code != exitFailure || !strings.Contains(out, "badtz.yaml:4:13: mappings.timezone: unknown time zone") {
		t.Errorf("bad timezone: exit %d\n%s", code, out)
	}
}

// lint --config checks write-back's MDM mapping too: one that loses the
// document id is refused, and an hl7 output mapping among the inbound
// mappings is named.
func TestLintWritebackMapping(t *testing.T) {
	builtIn, err := os.ReadFile(filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "writeback", "mdm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	wb := "crm:\n  sandbox:\n    embed: true\nwriteback:\n  mdm_mapping: mdm/mdm.yaml\n"
	dir := writeFiles(t, map[string]string{
		"mdm/mdm.yaml":   strings.Replace(string(builtIn), "TXA-12.1: documentId", "TXA-12.1: id", 1),
		"good/mdm.yaml":  string(builtIn),
		"broken.yaml":    "data_dir: ./data\n" + wb,
		"good.yaml":      "data_dir: ./data\n" + strings.Replace(wb, "mdm/", "good/", 1),
		"misplaced.yaml": "data_dir: ./data\nmappings:\n  paths: [good]\n",
	})
	if out, _, code := runCLI(t, "lint", "--config", filepath.Join(dir, "good.yaml")); code != exitOK {
		t.Errorf("good MDM mapping: exit %d\n%s", code, out)
	}
	out, _, code := runCLI(t, "lint", "--config", filepath.Join(dir, "broken.yaml"))
	if code != exitFailure || !strings.Contains(out, "must set MSH-10 from controlId and TXA-12.1 from documentId") {
		t.Errorf("broken MDM mapping: exit %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "lint", "--config", filepath.Join(dir, "misplaced.yaml"))
	if code != exitFailure || !strings.Contains(out, "name it in writeback.mdm_mapping, not mappings.paths") {
		t.Errorf("hl7 output in mappings.paths: exit %d\n%s", code, out)
	}
}

// map prints the ops of corpus ADT, ORU and SIU messages as JSON lines
// with the shipped Health Cloud set, and names what no mapping accepts.
func TestMapCorpus(t *testing.T) {
	root := shared.ModuleRoot(t)
	set := filepath.Join(root, "configs", "mappings", "healthcloud")
	files := []string{corpus(t, "microsoft-FHIR-Converter", "ADT-A01-01.hl7"), corpus(t, "microsoft-FHIR-Converter", "ORU-R01-01.hl7"),
		corpus(t, "microsoft-FHIR-Converter", "SIU-S12-01.hl7"), corpus(t, "microsoft-FHIR-Converter", "MDM-T02-01.hl7")}
	out, errOut, code := runCLI(t, append([]string{"map", "--timezone", "UTC", "--mappings", set}, files...)...)
	if code != exitOK {
		t.Fatalf("map: exit %d\n%s", code, errOut)
	}
	type op struct {
		Mapping, Object, Action, KeyField, Key string
		Fields                                 map[string]json.RawMessage
	}
	var ops []op
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var o struct {
			Mapping  string                     `json:"mapping"`
			Object   string                     `json:"object"`
			Action   string                     `json:"action"`
			KeyField string                     `json:"key_field"`
			Key      string                     `json:"key"`
			Fields   map[string]json.RawMessage `json:"fields"`
		}
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		ops = append(ops, op{o.Mapping, o.Object, o.Action, o.KeyField, o.Key, o.Fields})
	}
	find := func(object string) *op {
		for i := range ops {
			if ops[i].Object == object {
				return &ops[i]
			}
		}
		return nil
	}
	// ADT-A01-01: PID-3 PATID1234^5^M11^test1&2.16.1&HCD^MR, EVERYMAN^ADAM, born 1988-08-18.
	if p := find("Account"); p == nil || !strings.Contains(p.Key, "PATID1234") || string(p.Fields["LastName"]) != `"EVERYMAN"` || string(p.Fields["PersonBirthdate"]) != `"1988-08-18"` {
		t.Errorf("no patient op for ADT-A01-01 as expected: %+v\n%s", p, out)
	}
	for _, object := range []string{"ClinicalEncounter", "CareObservation", "ServiceAppointment"} {
		if find(object) == nil {
			t.Errorf("no %s op:\n%s", object, out)
		}
	}
	// SIU-S12-01: MSH-4 GHHSFacility^2.16.840.1.122848.1.30^ISO, SCH-2 (filler appointment id)
	// 36996 without a namespace, TQ1-7 20210924093000+0215.
	if a := find("ServiceAppointment"); a == nil || a.Key != "GHHSFacility^2.16.840.1.122848.1.30^ISO|36996" || string(a.Fields["Status"]) != `"Scheduled"` ||
		string(a.Fields["SchedStartTime"]) != `"2021-09-24T09:30:00+02:15"` {
		t.Errorf("appointment op: %+v", a)
	}
	// ORU-R01-01: OBR-3 986 without a namespace, MSH-4 IA PHIMS Stage^2.16.840.1.114222.4.3.3.5.1.2^ISO,
	// first OBX 8867-4^...^LN "heartrate" without OBX-4; PID-3 14^^^IA PHIMS Stage&...&ISO^PI.
	if o := find("CareObservation"); o == nil || o.Key != "IA PHIMS Stage^2.16.840.1.114222.4.3.3.5.1.2^ISO|986|LN|8867-4|#1" || string(o.Fields["Name"]) != `"heartrate"` ||
		!strings.Contains(string(o.Fields["ObservedSubjectId"]), `"key":"IA PHIMS Stage^2.16.840.1.114222.4.3.3.5.1.2^ISO|14|PI"`) {
		t.Errorf("observation op: %+v", o)
	}
	if !strings.Contains(errOut, "MDM-T02-01.hl7 message 1 (MDM^T02): no mapping accepts it") {
		t.Errorf("unaccepted message not reported:\n%s", errOut)
	}
}

// test runs a set's test files, prints a diff for a failing case and exits 1.
func TestTestCommand(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"patient.yaml": "when: {hl7: ADT^A01}\nops:\n  - id: patient\n    object: Account\n    key_field: EHR_Patient_Key__c\n    key: key(PID-3.4, PID-3.1)\n    fields:\n      LastName: PID-5.1\n      PersonBirthdate: date(PID-7)\n",
		"patient_test.yaml": "tests:\n  - name: good\n    input: |\n      MSH|^~\\&|A|B|C|D|20260105||ADT^A01|1|P|2.5.1\n      PID|1||42^^^H^MR||DOE^JANE||19700102\n" +
			"    expect:\n      - {object: Account, key_field: EHR_Patient_Key__c, key: H|42, fields: {LastName: DOE, PersonBirthdate: \"1970-01-02\"}}\n" +
			"  - name: wrong\n    input: |\n      MSH|^~\\&|A|B|C|D|20260105||ADT^A01|1|P|2.5.1\n      PID|1||42^^^H^MR||DOE^JANE||19700102\n" +
			"    expect:\n      - {object: Account, key_field: EHR_Patient_Key__c, key: H|42, fields: {LastName: DOE, PersonBirthdate: \"1970-02-01\"}}\n",
	})
	out, _, code := runCLI(t, "test", dir)
	if code != exitFailure {
		t.Errorf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"FAIL " + filepath.Join(dir, "patient_test.yaml") + ":8: wrong", `~ PersonBirthdate: want "1970-02-01", got "1970-01-02"`, "1 passed, 1 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, ": good") {
		t.Errorf("passing case listed without -v:\n%s", out)
	}
}

// mapExplain writes a mapping whose first op, patient, has the given
// fields (and any ops after them), and an ADT^A28 whose PID ends with
// pidTail, and runs map --explain on them.
func mapExplain(t *testing.T, fields, pidTail string) (dir, out string) {
	t.Helper()
	dir = writeFiles(t, map[string]string{
		"m/patient.yaml": "when: {hl7: ADT}\nops:\n  - id: patient\n    object: Account\n    key_field: K\n    key: key(PID-3.4, PID-3.1)\n    fields:\n" + fields,
		"adt.hl7":        "MSH|^~\\&|A|B|C|D|20260105||ADT^A28|1|P|2.5.1\nPID|1||42^^^H^MR||DOE^JANE" + pidTail + "\n",
	})
	out, errOut, code := runCLI(t, "map", "--explain", "--mappings", filepath.Join(dir, "m"), filepath.Join(dir, "adt.hl7"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	return dir, out
}

// map --explain shows each field's expression and value, fields left out
// and ops skipped by if:.
func TestMapExplain(t *testing.T) {
	_, out := mapExplain(t, "      LastName: PID-5.1\n      Email: PID-13.4\n  - id: visit\n    object: ClinicalEncounter\n    key_field: K\n    key: PV1-19.1\n    if: present(PV1-19.1)\n    fields:\n      PatientId: ref(patient)\n", "")
	for _, want := range []string{
		"mapping patient (",
		`op patient: upsert Account K="H|42" (op 1)`,
		`(key)                        <- key(PID-3.4, PID-3.1)`,
		`LastName = "DOE"`,
		"Email = (left out: no value) <- PID-13.4",
		"-- op visit skipped: if present(PV1-19.1) is false",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
}

// A field left out with a warning (a year-only birth date) is shown by
// map --explain beside the field and as a warning line, and by map on
// stderr, with stdout staying JSON; the value is never quoted.
func TestMapWarnings(t *testing.T) {
	dir, out := mapExplain(t, "      LastName: PID-5.1\n      Birth: date(PID-7)\n", "||1962")
	for _, want := range []string{
		"Birth = (left out: date(): the value has no day (year precision only); the field is left out rather than given an invented day) <- date(PID-7)",
		"warning: patient/patient.Birth: date(): the value has no day (year precision only)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	out, errOut, code := runCLI(t, "map", "--mappings", filepath.Join(dir, "m"), filepath.Join(dir, "adt.hl7"))
	if code != exitOK || !strings.Contains(errOut, "message 1 (ADT^A28): warning: patient/patient.Birth: date(): the value has no day") ||
		strings.Contains(out, "warning") || strings.Contains(out+errOut, "1962") || !strings.Contains(out, `"LastName":"DOE"`) {
		t.Errorf("map: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}

// map --explain numbers the ops as map lists them (and as the pipeline
// counts them in a dead letter's reason), across mappings and repeats.
func TestMapExplainNumbersOpsAsMapListsThem(t *testing.T) {
	set := filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "healthcloud")
	msg := filepath.Join(set, "samples", "ADT-A01-01.hl7")
	out, errOut, code := runCLI(t, "map", "--mappings", set, msg)
	if code != exitOK {
		t.Fatalf("map: exit %d: %s", code, errOut)
	}
	var objects []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var op struct{ Object, Action string }
		if err := json.Unmarshal([]byte(line), &op); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		objects = append(objects, op.Action+" "+op.Object)
	}
	if len(objects) < 3 {
		t.Fatalf("only %d ops", len(objects))
	}
	explain, _, _ := runCLI(t, "map", "--explain", "--mappings", set, msg)
	re := regexp.MustCompile(`(?m)^op [^:]+: (\w+ \w+) .*\(op (\d+)\)$`)
	found := re.FindAllStringSubmatch(explain, -1)
	if len(found) != len(objects) {
		t.Fatalf("explain numbers %d ops, map lists %d:\n%s", len(found), len(objects), explain)
	}
	for i, f := range found {
		if f[2] != strconv.Itoa(i+1) || f[1] != objects[i] {
			t.Errorf("explain op %s is %q; map's op %d is %q", f[2], f[1], i+1, objects[i])
		}
	}
}

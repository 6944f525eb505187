package mappings

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
)

const testADT = "MSH|^~\\&|EPIC|GENHOSP|EHRBRIDGE|CRM|20260105103000||ADT^A08^ADT_A01|CTRL1|P|2.5.1\r" +
	"EVN|A08|20260105103000\r" +
	"PID|1||99887^^^OTHER^PI~12345^^^GENHOSP^MR~555-12-3456^^^SSA^SS||O'BRIEN^MARY^ANN^^DR||19800517|F^Female^HL70001|||12 MAIN ST^APT 4^SPRINGFIELD^IL^62701^USA||^PRN^PH^^1^217^5551234||||||\"\"|||||||||||N\r" +
	"PV1|1|I|4WEST^401^B||||1234^WELBY^MARCUS|||MED|||||||||VN777^^^GENHOSP^VN|||||||||||||||||||||||||20260104080000-0600\r" +
	"OBX|1|NM|8867-4^Heart rate^LN||72|/min|60-100|N|||F\r" +
	"OBX|2|ST|8480-6^Note^LN||High\\F\\low \\.br\\next||||||F\r" +
	"AL1|1|DA|70618^PENICILLIN^RXNORM|SV|HIVES\r"

func parse(t testing.TB, s string) *hl7.Message {
	t.Helper()
	m, err := hl7.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mapping compiles a mapping from text with fixed options.
func mapping(t testing.TB, text string) *Mapping {
	t.Helper()
	m, err := Compile("test.yaml", []byte(text), Options{Zone: time.FixedZone("CST", -6*3600)})
	if err != nil {
		t.Fatalf("compile:\n%v", err)
	}
	return m
}

// evalField maps testADT with a one-op mapping whose only field is expr
// and returns that field's value (Absent when it was left out).
func evalField(t *testing.T, expr string) (Value, error) {
	t.Helper()
	m, err := Compile("t.yaml", []byte("when: {hl7: ADT}\nz_segments: [ZZZ]\ntables:\n  sex: {F: female, M: male}\nops:\n  - object: Account\n    key_field: Key\n    key: PID-3[2].1\n    fields:\n      F: "+expr+"\n"), Options{Zone: time.FixedZone("CST", -6*3600)})
	if err != nil {
		t.Fatalf("%s: compile: %v", expr, err)
	}
	ops, err := m.Map(Input{HL7: parse(t, testADT)})
	if err != nil {
		return Value{}, err
	}
	v, _ := ops[0].Field("F")
	return v, nil
}

func TestExpressions(t *testing.T) {
	cases := []struct {
		expr string
		want Value
	}{
		{"PID-5.1", Str("O'BRIEN")},
		{"PID-3[2].1", Str("12345")},
		{"PID-3[2].4", Str("GENHOSP")},
		{"PID-8", Str("F")}, // a field read whole reads its first component
		{"PID-8.2", Str("Female")},
		{"PID-19", NullValue}, // "" clears
		{"PID-6", Value{}},    // empty: left out
		{"ZZZ-1", Value{}},    // no such segment (declared, not sent)
		{"OBX-5", Str("72")},  // first OBX outside a repeat
		{"OBX[2]-5", Str("High|low \\.br\\next")},
		{"text(OBX[2]-5)", Str("High|low \nnext")},
		{`"literal"`, Str("literal")},
		{"3", Num("3")},
		{"true", Boolean(true)},
		{"null", NullValue},
		{"date(PID-7)", Str("1980-05-17")},
		{"datetime(PV1-44)", Str("2026-01-04T08:00:00-06:00")},
		{"datetime(MSH-7)", Str("2026-01-05T10:30:00-06:00")}, // no offset: the set's zone
		{`datetime(MSH-7, "UTC")`, Str("2026-01-05T10:30:00Z")},
		{`date("2026-01-05T10:30:00Z")`, Str("2026-01-05")},
		{"lookup(sex, PID-8)", Str("female")},
		{`lookup(sex, "X", "unknown")`, Str("unknown")},
		{`lookup(sex, "X")`, Value{}},
		{"lookup(sex, PID-19)", NullValue},
		{`concat(PID-5.2, " ", PID-5.1)`, Str("MARY O'BRIEN")},
		{`concat(PID-6, PID-6.2)`, Value{}},
		{`concat(PID-19)`, NullValue},
		{`concat(" ", PID-6, "|")`, Value{}},
		{`concat(" ", "|")`, Str(" |")},
		{`key(PID-3[2].4, PID-3[2].1)`, Str("GENHOSP|12345")},
		{`key(PID-3[2].4, PID-6)`, Value{}},
		{`key(PID-3[2].4, PID-19)`, Value{}},
		{`"=format('{2}, {1}', PID-5.2, PID-5.1)"`, Str("O'BRIEN, MARY")},
		{`coalesce(PID-6, PID-19, PID-5.3)`, Str("ANN")},
		{`coalesce(PID-6, PID-19)`, NullValue},
		{`default(PID-6, "none")`, Str("none")},
		{`lower(PID-5.1)`, Str("o'brien")},
		{`upper(" x ")`, Str(" X ")},
		{`trim(" x ")`, Str("x")},
		{`replace(PID-11.1, "ST", "STREET")`, Str("12 MAIN STREET")},
		{`truncate("Zoë Smith", 3)`, Str("Zoë")},
		{`number(OBX-5)`, Num("72")},
		{`number(OBX[2]-5)`, Value{}},
		{`number(" +007.50 ")`, Num("7.5")},
		{`bool(PID-30)`, Boolean(false)},
		{`bool("maybe")`, Value{}},
		{`pick(PID-3, 5, "MR", 1)`, Str("12345")},
		{`pick(PID-3, 5, "SS", 1)`, Str("555-12-3456")},
		{`pick(PID-3, 5, "XX", 1)`, Value{}},
		{`if(eq(PV1-2, "I"), "Inpatient", "Outpatient")`, Str("Inpatient")},
		{`if(ne(PV1-2, "I"), "x")`, Value{}},
		{`in(PV1-2, "E", "I")`, Boolean(true)},
		{`eq(OBX-5, 72)`, Boolean(true)},
		{`present(PID-6)`, Boolean(false)},
		{`empty(PID-19)`, Boolean(true)},
		{`and(present(PID-5), not(empty(PID-7)))`, Boolean(true)},
		{`or(present(PID-6), false)`, Boolean(false)},
		{`ref(Account, SourceSystemIdentifier, PID-3[2].1)`, Value{Kind: Ref, Ref: &Reference{"Account", "SourceSystemIdentifier", "12345"}}},
		{`ref(Account, Key, PID-6)`, Value{}},
	}
	for _, c := range cases {
		got, err := evalField(t, c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if !got.Equal(c.want) {
			t.Errorf("%s = %v (%s), want %v (%s)", c.expr, got, got.Kind, c.want, c.want.Kind)
		}
	}
}

func TestEvaluationErrorsNameNoContent(t *testing.T) {
	for expr, want := range map[string]string{
		"index()":                  "only meaningful in an op with foreach",
		`required(PID-6, "no mn")`: "no mn",
	} {
		_, err := evalField(t, expr)
		var me *Error
		if !errors.As(err, &me) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want *Error containing %q", expr, err, want)
			continue
		}
		if strings.Contains(err.Error(), "BRIEN") || strings.Contains(err.Error(), "4WEST") {
			t.Errorf("%s: error quotes message content: %v", expr, err)
		}
		if !strings.Contains(err.Error(), "field F") {
			t.Errorf("%s: error does not name the field: %v", expr, err)
		}
	}
}

func TestStamps(t *testing.T) {
	z := time.FixedZone("EST", -5*3600)
	cases := []struct{ in, date, dt string }{
		{"2026", "", ""},
		{"20260105", "2026-01-05", "2026-01-05T00:00:00-05:00"},
		{"202601051030", "2026-01-05", "2026-01-05T10:30:00-05:00"},
		{"20260105103045.123+0130", "2026-01-05", "2026-01-05T10:30:45.123+01:30"},
		{"20260105103045-0000", "2026-01-05", "2026-01-05T10:30:45Z"},
		{"2026-01-05", "2026-01-05", "2026-01-05T00:00:00-05:00"},
		{"2026-01-05T10:30:45.5-06:00", "2026-01-05", "2026-01-05T10:30:45.500-06:00"},
		{"20260230", "bad", ""},
		{"2026013", "bad", ""},
		{"20260105+2500", "bad", ""},
		{"hello", "bad", ""},
	}
	for _, c := range cases {
		st, err := parseStamp(c.in, z)
		switch {
		case c.date == "bad":
			if err == nil {
				t.Errorf("%s: parsed, want an error", c.in)
			}
		case err != nil:
			t.Errorf("%s: %v", c.in, err)
		case c.date == "":
			if st.precision >= 8 {
				t.Errorf("%s: precision %d", c.in, st.precision)
			}
		case st.isoDate() != c.date || st.isoDateTime() != c.dt:
			t.Errorf("%s: %s %s, want %s %s", c.in, st.isoDate(), st.isoDateTime(), c.date, c.dt)
		}
	}
}

const fullMapping = `description: test
when:
  hl7: ADT^A01|A08
lane: concat(PID-3[2].4, "|", PID-3[2].1)
ops:
  - id: patient
    object: Account
    key_field: SourceSystemIdentifier
    key: concat(PID-3[2].4, "|", PID-3[2].1)
    fields:
      LastName: PID-5.1
      MiddleName: PID-5.3
      Suffix: PID-5.4
      Language: PID-15
      Status: "Active"
  - id: obs
    foreach: OBX
    object: CareObservation
    key_field: Key__c
    key: concat(PV1-19.1, "|", OBX-3.1, "|", default(OBX-4, index()))
    if: present(OBX-3.1)
    fields:
      ObservedSubjectId: ref(patient)
      Seq: index()
      Value: OBX-5
  - id: ident
    foreach: PID-3
    object: Identifier
    key_field: Key__c
    key: concat(PID-3.4, "|", PID-3.1)
    fields:
      IdValue: PID-3.1
      Type: PID-3.5
  - object: Account
    id: gone
    action: delete
    key_field: SourceSystemIdentifier
    key: '=concat("old|", PID-3[2].1)'
`

func TestMapOps(t *testing.T) {
	m := mapping(t, fullMapping)
	ops, err := m.Map(Input{HL7: parse(t, testADT)})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, o := range ops {
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(b))
	}
	want := []string{
		`{"mapping":"test","object":"Account","action":"upsert","key_field":"SourceSystemIdentifier","key":"GENHOSP|12345","fields":{"LastName":"O'BRIEN","MiddleName":"ANN","Status":"Active"}}`,
		`{"mapping":"test","object":"CareObservation","action":"upsert","key_field":"Key__c","key":"VN777|8867-4|1","fields":{"ObservedSubjectId":{"ref":{"object":"Account","key_field":"SourceSystemIdentifier","key":"GENHOSP|12345"}},"Seq":1,"Value":"72"}}`,
		`{"mapping":"test","object":"CareObservation","action":"upsert","key_field":"Key__c","key":"VN777|8480-6|2","fields":{"ObservedSubjectId":{"ref":{"object":"Account","key_field":"SourceSystemIdentifier","key":"GENHOSP|12345"}},"Seq":2,"Value":"High|low \\.br\\next"}}`,
		`{"mapping":"test","object":"Identifier","action":"upsert","key_field":"Key__c","key":"OTHER|99887","fields":{"IdValue":"99887","Type":"PI"}}`,
		`{"mapping":"test","object":"Identifier","action":"upsert","key_field":"Key__c","key":"GENHOSP|12345","fields":{"IdValue":"12345","Type":"MR"}}`,
		`{"mapping":"test","object":"Identifier","action":"upsert","key_field":"Key__c","key":"SSA|555-12-3456","fields":{"IdValue":"555-12-3456","Type":"SS"}}`,
		`{"mapping":"test","object":"Account","action":"delete","key_field":"SourceSystemIdentifier","key":"old|12345","fields":{}}`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("ops:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	// The JSON form reads back to the same ops.
	for i, o := range ops {
		var back struct {
			Fields map[string]Value `json:"fields"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &back); err != nil {
			t.Fatal(err)
		}
		for _, f := range o.Fields {
			if !back.Fields[f.Name].Equal(f.Value) {
				t.Errorf("op %d %s: round trip %v != %v", i, f.Name, back.Fields[f.Name], f.Value)
			}
		}
	}
}

func TestGroupHeaderResolution(t *testing.T) {
	msg := "MSH|^~\\&|LAB|H|E|C|20260105||ORU^R01|1|P|2.5.1\r" +
		"PID|1||1^^^H^MR\r" +
		"OBR|1||ORD-A\r" +
		"OBX|1|NM|A1||1\r" +
		"OBX|2|NM|A2||2\r" +
		"OBR|2||ORD-B\r" +
		"OBX|1|NM|B1||3\r"
	m := mapping(t, "when: {hl7: ORU^R01}\nops:\n  - object: O\n    foreach: OBX\n    key_field: K\n    key: concat(OBR-3, '/', OBX-3)\n    fields:\n      V: OBX-5\n      First: OBX[1]-5\n")
	ops, err := m.Map(Input{HL7: parse(t, msg)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range ops {
		first, _ := o.Field("First")
		keys = append(keys, o.Key+"="+textOf(first))
	}
	if got := strings.Join(keys, " "); got != "ORD-A/A1=1 ORD-A/A2=1 ORD-B/B1=1" {
		t.Errorf("keys %s", got)
	}
}

func TestAcceptsAndSet(t *testing.T) {
	adt := mapping(t, "when: {hl7: ADT^A01|A04}\nops:\n  - object: A\n    key_field: K\n    key: PID-3[2].1\n    fields: {X: '\"a\"'}\n")
	any := mapping(t, "when: {hl7: [ADT, ORU^R01]}\nops:\n  - object: B\n    key_field: K\n    key: PID-3[2].1\n    fields: {X: '\"b\"'}\n")
	fhir := mapping(t, "when: {fhir: Patient}\nops:\n  - object: C\n    key_field: K\n    key: id\n    fields: {X: gender}\n")
	adt.Name, any.Name, fhir.Name = "adt", "any", "fhir"
	set := &Set{Mappings: []*Mapping{adt, any, fhir}}
	a08 := parse(t, testADT)
	a01 := parse(t, strings.Replace(testADT, "ADT^A08^ADT_A01", "ADT^A01", 1))
	cases := []struct {
		in   Input
		want string
	}{
		{Input{HL7: a08}, "any"},
		{Input{HL7: a01}, "adt any"},
		{Input{FHIR: []byte(`{"resourceType":"Patient","id":"p1","gender":"female"}`)}, "fhir"},
		{Input{FHIR: []byte(`{"resourceType":"Observation","id":"o1"}`)}, ""},
	}
	for _, c := range cases {
		res, err := set.Map(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(res.Mappings, " "); got != c.want {
			t.Errorf("accepted by %q, want %q", got, c.want)
		}
	}
	res, _ := set.Map(Input{FHIR: []byte(`{"resourceType":"Patient","id":"p1","gender":"female"}`)})
	if v, _ := res.Ops[0].Field("X"); res.Ops[0].Key != "p1" || !v.Equal(Str("female")) {
		t.Errorf("fhir op %+v", res.Ops[0])
	}
}

func TestLane(t *testing.T) {
	set := &Set{Mappings: []*Mapping{mapping(t, fullMapping)}}
	lane, err := set.Lane(Input{HL7: parse(t, testADT)})
	if err != nil || lane != "GENHOSP|12345" {
		t.Errorf("lane %q, %v", lane, err)
	}
	lane, err = set.Lane(Input{HL7: parse(t, strings.Replace(testADT, "ADT^A08", "ADT^A40", 1))})
	if err != nil || lane != "" {
		t.Errorf("lane of an unaccepted message %q, %v", lane, err)
	}
}

func TestFHIRForeach(t *testing.T) {
	m := mapping(t, `when: {fhir: Observation}
ops:
  - id: obs
    object: CareObservation
    key_field: K
    key: id
    fields:
      Code: code.coding.where(system = 'http://loinc.org').code
      Value: valueQuantity.value
      Effective: datetime(effectiveDateTime)
      Subject: ref(Account, SourceSystemIdentifier, replace(subject.reference, "Patient/", ""))
  - id: comp
    foreach: component
    object: CareObservationComponent
    key_field: K
    key: concat(%resource.id, "-", code.coding.first().code)
    fields:
      Value: valueQuantity.value
      Parent: ref(obs)
      Status: "=fhirpath(\"%resource.status\")"
`)
	res := []byte(`{"resourceType":"Observation","id":"bp1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
 "subject":{"reference":"Patient/p7"},"effectiveDateTime":"2026-01-05T10:30:00+01:00",
 "component":[{"code":{"coding":[{"code":"8480-6"}]},"valueQuantity":{"value":120}},{"code":{"coding":[{"code":"8462-4"}]},"valueQuantity":{"value":80.5}}]}`)
	ops, err := m.Map(Input{FHIR: res})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ops)
	want := `[{"mapping":"test","object":"CareObservation","action":"upsert","key_field":"K","key":"bp1","fields":{"Code":"85354-9","Effective":"2026-01-05T10:30:00+01:00","Subject":{"ref":{"object":"Account","key_field":"SourceSystemIdentifier","key":"p7"}}}},` +
		`{"mapping":"test","object":"CareObservationComponent","action":"upsert","key_field":"K","key":"bp1-8480-6","fields":{"Value":120,"Parent":{"ref":{"object":"CareObservation","key_field":"K","key":"bp1"}},"Status":"final"}},` +
		`{"mapping":"test","object":"CareObservationComponent","action":"upsert","key_field":"K","key":"bp1-8462-4","fields":{"Value":80.5,"Parent":{"ref":{"object":"CareObservation","key_field":"K","key":"bp1"}},"Status":"final"}}]`
	if string(b) != want {
		t.Errorf("ops\n%s\nwant\n%s", b, want)
	}
}

func TestKeyRequired(t *testing.T) {
	m := mapping(t, fullMapping)
	_, err := m.Map(Input{HL7: parse(t, strings.Replace(testADT, "12345^^^GENHOSP^MR", "^^^^MR", 1))})
	var me *Error
	if !errors.As(err, &me) || me.Op != "patient" || !strings.Contains(err.Error(), "key expression gave no value") {
		t.Errorf("err = %v", err)
	}
}

// TestLint checks that each kind of mistake is reported at its place.
func TestLint(t *testing.T) {
	cases := []struct {
		name, text, want string
	}{
		{"unknown key", "when: {hl7: ADT}\nopz: []\n", "t.yaml:2:1: unknown key \"opz\" in mapping; did you mean \"ops\"?"},
		{"no when", "ops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields: {X: PID-5}\n", "t.yaml:1:1: missing when"},
		{"bad trigger", "when: {hl7: ADT^A1}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields: {X: PID-5}\n", `t.yaml:1:13: when.hl7: "A1" is not a trigger event`},
		{"bad path", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields:\n      X: concat(PID-5, PID-x)\n", `t.yaml:7:24: X: path "PID-x": field number: expected a number`},
		{"segment alone", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields:\n      X: PID\n", "t.yaml:7:10: X: PID is a segment: add a field number"},
		{"unknown function", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields:\n      X: uppr(PID-5)\n", "t.yaml:7:10: X: unknown function uppr (did you mean upper?)"},
		{"arity", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields:\n      X: trim(PID-5, PID-6)\n", "t.yaml:7:10: X: trim takes 1 argument, got 2"},
		{"duplicate field", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields:\n      X: PID-5\n      x: PID-6\n", "t.yaml:8:7: duplicate target field x (first at line 7)"},
		{"no key", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    fields: {X: PID-5}\n", "t.yaml:3:5: op a has no key"},
		{"no key field", "when: {hl7: ADT}\nops:\n  - object: A\n    key: PID-3.1\n    fields: {X: PID-5}\n", "t.yaml:3:5: op a has no key_field"},
		{"bad ref", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields:\n      X: ref(patient)\n", `t.yaml:7:10: ref(patient): there is no op with id "patient"`},
		{"ref to foreach", "when: {hl7: ADT}\nops:\n  - object: A\n    foreach: OBX\n    key_field: K\n    key: OBX-3\n    fields: {X: OBX-5}\n  - object: B\n    key_field: K\n    key: PID-3\n    fields:\n      P: ref(a)\n", "ref(a): op a repeats"},
		{"unknown table", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields:\n      X: lookup(sex, PID-8)\n", `X: lookup: unknown table "sex"`},
		{"bare word", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields:\n      X: Active\n", `t.yaml:7:10: X: unknown name "Active"`},
		{"unclosed", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields:\n      X: concat(PID-5\n", "X: concat( has no closing parenthesis"},
		{"bad action", "when: {hl7: ADT}\nops:\n  - object: A\n    action: insert\n    key_field: K\n    key: PID-3.1\n    fields: {X: PID-5}\n", `t.yaml:4:13: action "insert": use upsert`},
		{"delete with fields", "when: {hl7: ADT}\nops:\n  - object: A\n    action: delete\n    key_field: K\n    key: PID-3.1\n    fields: {X: PID-5}\n", "a delete op writes no fields"},
		{"duplicate op id", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields: {X: PID-5}\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields: {X: PID-5}\n", `t.yaml:7:5: op id "a" is already used by the op at line 3`},
		{"bad zone", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields:\n      X: datetime(PID-7, \"Mars/Olympus\")\n", `X: datetime: unknown time zone "Mars/Olympus"`},
		{"format count", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields:\n      X: format(\"{1} {3}\", PID-5, PID-6)\n", "refers to {3}, but there are 2 values"},
		{"bad fhirpath", "when: {fhir: Patient}\nops:\n  - object: A\n    key_field: K\n    key: id\n    fields:\n      X: name.where(\n", "X:"},
		{"clock in fhirpath", "when: {fhir: Patient}\nops:\n  - object: A\n    key_field: K\n    key: id\n    fields:\n      X: \"=fhirpath('now() - birthDate')\"\n", "uses now(), which depends on the clock"},
		{"resolve in fhirpath", "when: {fhir: Observation}\nops:\n  - object: A\n    key_field: K\n    key: id\n    fields:\n      X: subject.resolve().name.family\n", "uses resolve()"},
		{"environment variable in fhirpath", "when: {fhir: Patient}\nops:\n  - object: A\n    key_field: K\n    key: id\n    fields:\n      X: \"=fhirpath('%terminologies.expand()')\"\n", "uses %terminologies"},
		{"yaml syntax", "when: {hl7: ADT\nops: []\n", "t.yaml:1:7: YAML syntax"},
		{"text of non-path", "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields:\n      X: text(\"a\")\n", "text: the argument must be an HL7 path"},
		{"bad output", "when: {fhir: CoordinatorNote}\noutput: x12\nops:\n  - object: TXA\n    fields: {TXA-1: id}\n", `t.yaml:2:9: output "x12": use crm`},
		{"hl7 output: object not a segment", "when: {fhir: CoordinatorNote}\noutput: hl7\nops:\n  - object: Task\n    fields: {TXA-1: id}\n", `t.yaml:4:13: object "Task" is not an HL7 segment id`},
		{"hl7 output: target in another segment", "when: {fhir: CoordinatorNote}\noutput: hl7\nops:\n  - object: TXA\n    fields: {PID-3.1: id}\n", "t.yaml:5:14: target PID-3.1 is not in segment TXA"},
		{"hl7 output: target not a path", "when: {fhir: CoordinatorNote}\noutput: hl7\nops:\n  - object: TXA\n    fields: {Subject: id}\n", `t.yaml:5:14: target "Subject" is not an HL7 path`},
		{"hl7 output: segment occurrence", "when: {fhir: CoordinatorNote}\noutput: hl7\nops:\n  - object: OBX\n    fields: {\"OBX[2]-5\": id}\n", "names a segment occurrence; each op writes one new segment, so write OBX-5"},
		{"hl7 output: delimiters", "when: {fhir: CoordinatorNote}\noutput: hl7\nops:\n  - object: MSH\n    fields: {MSH-2: id}\n", "MSH-1 and MSH-2 hold the delimiters"},
		{"hl7 output: key", "when: {fhir: CoordinatorNote}\noutput: hl7\nops:\n  - object: TXA\n    key_field: K\n    fields: {TXA-1: id}\n", "t.yaml:5:16: key_field: an op of an hl7 output mapping writes one segment; it has no key_field"},
		{"hl7 output: ref", "when: {fhir: CoordinatorNote}\noutput: hl7\nops:\n  - object: PID\n    fields: {PID-1: id}\n  - object: TXA\n    fields: {TXA-1: ref(pid)}\n", "ref(pid): an hl7 output mapping writes segments"},
	}
	for _, c := range cases {
		_, err := Compile("t.yaml", []byte(c.text), Options{Zone: time.UTC})
		if err == nil {
			t.Errorf("%s: compiled, want %q", c.name, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n%v\nwant it to contain %q", c.name, err, c.want)
		}
	}
}

func TestCSVTables(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("sex.csv", "code,value\n# comment\nF,female\nM,\"male, of course\"\n")
	f := write("m.yaml", "when: {hl7: ADT}\ntables:\n  sex: sex.csv\nops:\n  - object: A\n    key_field: K\n    key: PID-3[2].1\n    fields:\n      X: lookup(sex, PID-8)\n      Y: lookup(sex, \"M\")\n")
	set, err := Load([]string{f}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := set.Map(Input{HL7: parse(t, testADT)})
	if err != nil {
		t.Fatal(err)
	}
	if x, _ := res.Ops[0].Field("X"); !x.Equal(Str("female")) {
		t.Errorf("X = %v", x)
	}
	if y, _ := res.Ops[0].Field("Y"); !y.Equal(Str("male, of course")) {
		t.Errorf("Y = %v", y)
	}
	write("dup.csv", "F,female\nF,again\n")
	write("short.csv", "F\n")
	for table, want := range map[string]string{"dup.csv": `line 2: code "F" appears twice`, "short.csv": "line 1", "missing.csv": "cannot read missing.csv"} {
		f := write("bad.yaml", "when: {hl7: ADT}\ntables:\n  t: "+table+"\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields: {X: lookup(t, PID-8)}\n")
		_, err := Load([]string{f}, Options{})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "bad.yaml:3:6") {
			t.Errorf("%s: %v, want %q at bad.yaml:3:6", table, err, want)
		}
	}
}

func TestSchemaCheck(t *testing.T) {
	dir := t.TempDir()
	sf := filepath.Join(dir, "account.json")
	os.WriteFile(sf, []byte(`{"name":"Account","fields":[{"name":"Id","idLookup":true},{"name":"LastName"},{"name":"SourceSystemIdentifier","idLookup":true,"externalId":false},{"name":"EHR_MRN__pc","externalId":true,"unique":true}]}`), 0o600)
	dv := filepath.Join(dir, "contact.json")
	os.WriteFile(dv, []byte(`{"LogicalName":"contact","Attributes":[{"LogicalName":"lastname"},{"LogicalName":"msemr_medicalrecordnumber"},{"LogicalName":"telephone1"}],"Keys":[{"KeyAttributes":["msemr_medicalrecordnumber"]}]}`), 0o600)
	schemas, err := LoadSchemas([]string{sf, dv})
	if err != nil {
		t.Fatal(err)
	}
	good := "when: {hl7: ADT}\nops:\n  - object: Account\n    key_field: EHR_MRN__pc\n    key: PID-3.1\n    fields: {LastName: PID-5.1}\n  - object: contact\n    key_field: msemr_medicalrecordnumber\n    key: PID-3.1\n    fields: {lastname: PID-5.1}\n  - object: Other\n    key_field: Whatever\n    key: PID-3.1\n    fields: {Anything: PID-5, Unchecked__c: PID-8}\n"
	if _, err := Compile("good.yaml", []byte(good), Options{Schemas: schemas}); err != nil {
		t.Errorf("good mapping: %v", err)
	}
	bad := "when: {hl7: ADT}\nops:\n  - object: Account\n    key_field: SourceSystemIdentifier\n    key: PID-3.1\n    fields: {LastName: PID-5.1, Lastname2: PID-5.2}\n  - object: contact\n    key_field: telephone1\n    key: PID-3.1\n    fields: {lastname: PID-5.1}\n"
	_, err = Compile("bad.yaml", []byte(bad), Options{Schemas: schemas})
	for _, want := range []string{
		"bad.yaml:4:16: op account: key_field SourceSystemIdentifier of Account is not an External ID field",
		"bad.yaml:6:33: op account: Account has no field Lastname2",
		"bad.yaml:8:16: op contact: key_field telephone1 of contact is not an alternate key",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("schema problems:\n%v\nwant %q", err, want)
		}
	}
	if _, err := LoadSchemas([]string{filepath.Join(dir, "nope.json")}); err == nil {
		t.Error("a missing schema file loaded")
	}
}

func TestTestRunner(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pat.yaml"), []byte(fullMapping), 0o600)
	os.WriteFile(filepath.Join(dir, "msg.hl7"), []byte(strings.ReplaceAll(testADT, "\r", "\n")), 0o600)
	os.WriteFile(filepath.Join(dir, "pat_test.yaml"), []byte(`tests:
  - name: passes
    input_file: msg.hl7
    expect:
      - object: Account
        key_field: SourceSystemIdentifier
        key: GENHOSP|12345
        fields: {LastName: "O'BRIEN", MiddleName: ANN, Status: Active}
      - {object: CareObservation, key_field: Key__c, key: "VN777|8867-4|1", fields: {ObservedSubjectId: {ref: {object: Account, key_field: SourceSystemIdentifier, key: "GENHOSP|12345"}}, Seq: 1, Value: "72"}}
      - {object: CareObservation, key_field: Key__c, key: "VN777|8480-6|2", fields: {ObservedSubjectId: {ref: {object: Account, key_field: SourceSystemIdentifier, key: "GENHOSP|12345"}}, Seq: 2, Value: "High|low \\.br\\next"}}
      - {object: Identifier, key_field: Key__c, key: "OTHER|99887", fields: {IdValue: "99887", Type: PI}}
      - {object: Identifier, key_field: Key__c, key: "GENHOSP|12345", fields: {IdValue: "12345", Type: MR}}
      - {object: Identifier, key_field: Key__c, key: "SSA|555-12-3456", fields: {IdValue: "555-12-3456", Type: SS}}
      - {object: Account, action: delete, key_field: SourceSystemIdentifier, key: "old|12345"}
  - name: fails
    input_file: msg.hl7
    expect:
      - object: Account
        key_field: SourceSystemIdentifier
        key: GENHOSP|12345
        fields: {LastName: OBRIEN, Status: Active, Phone: "555"}
  - name: not accepted
    input: |
      MSH|^~\&|A|B|C|D|20260105||ORU^R01|9|P|2.5.1
      PID|1||1^^^H^MR
    expect: []
  - name: error
    input: |
      MSH|^~\&|A|B|C|D|20260105||ADT^A01|9|P|2.5.1
      PID|1||^^^^MR
    expect_error: key expression gave no value
`), 0o600)
	set, err := Load([]string{dir}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := FindTests([]string{dir})
	if err != nil || len(files) != 1 {
		t.Fatalf("FindTests: %v %v", files, err)
	}
	tf, err := ParseTestFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	results := RunTests(set, []*TestFile{tf})
	var out strings.Builder
	failed := WriteReport(&out, results, true)
	if failed != 1 {
		t.Errorf("failed = %d\n%s", failed, out.String())
	}
	for _, want := range []string{
		"ok   " + files[0] + ":2: passes",
		"FAIL " + files[0] + ":15: fails",
		`~ LastName: want "OBRIEN", got "O'BRIEN"`,
		`- Phone: want "555", got nothing (field left out)`,
		`+ MiddleName: got "ANN", not expected`,
		"op 2: not expected: got upsert CareObservation",
		"3 passed, 1 failed",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// Anchors reuse an expression, a block scalar is an expression, a ref to
// an op that if: skips is absent, and FHIRPath's "" is nothing.
func TestAliasesBlocksSkippedRefs(t *testing.T) {
	m := mapping(t, `when: {hl7: ADT}
lane: &pk key(PID-3[2].4, PID-3[2].1)
ops:
  - id: patient
    object: Account
    key_field: K
    key: *pk
    fields:
      Name: >-
        concat(PID-5.2, " ",
               PID-5.1)
      Note: "literal text"
  - id: visit
    object: Enc
    key_field: K
    key: PV1-50
    if: present(PV1-50)
    fields: {X: PV1-2}
  - object: Obs
    key_field: K
    key: *pk
    fields:
      Visit: ref(visit)
      Patient: ref(patient)
`)
	ops, err := m.Map(Input{HL7: parse(t, testADT)})
	if err != nil {
		t.Fatal(err)
	}
	if ops[0].Key != "GENHOSP|12345" {
		t.Errorf("aliased key %q", ops[0].Key)
	}
	if v, _ := ops[0].Field("Name"); !v.Equal(Str("MARY O'BRIEN")) {
		t.Errorf("block expression = %v", v)
	}
	if v, _ := ops[0].Field("Note"); !v.Equal(Str("literal text")) {
		t.Errorf("quoted literal = %v", v)
	}
	if len(ops) != 2 || ops[1].Object != "Obs" {
		t.Fatalf("ops %+v", ops)
	}
	if _, set := ops[1].Field("Visit"); set {
		t.Errorf("a ref to a skipped op was written")
	}
	if v, _ := ops[1].Field("Patient"); v.Kind != Ref {
		t.Errorf("ref(patient) = %v", v)
	}
	f := mapping(t, "when: {fhir: Patient}\nops:\n  - object: A\n    key_field: K\n    key: id\n    fields:\n      Street: \"=fhirpath(\\\"address.line.join(', ')\\\")\"\n")
	ops, err = f.Map(Input{FHIR: []byte(`{"resourceType":"Patient","id":"p"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, set := ops[0].Field("Street"); set {
		t.Errorf("FHIRPath \"\" was written: %+v", ops[0])
	}
}

// A message with more repeats than MaxRepeats is refused with a reason
// instead of turning into a flood of ops; one with many field repetitions
// is read in one pass.
func TestRepeatLimits(t *testing.T) {
	m := mapping(t, "when: {hl7: ORU}\nops:\n  - object: O\n    foreach: OBX\n    key_field: K\n    key: concat(OBX-3, index())\n    fields: {V: OBX-5}\n  - object: I\n    foreach: PID-3\n    key_field: K\n    key: concat(coalesce(PID-3.1, \"none\"), \"|\", index())\n    fields: {V: PID-3.1}\n  - object: P\n    key_field: K\n    key: pick(PID-3, 5, \"MR\", 1)\n    fields: {V: PID-3.4}\n")
	head := "MSH|^~\\&|A|B|C|D|2026||ORU^R01|1|P|2.5.1\rPID|1||" + strings.Repeat("~", MaxRepeats-2) + "7^^^H^MR\r"
	ops, err := m.Map(Input{HL7: parse(t, head+strings.Repeat("OBX|1|NM|X||1\r", 3))})
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 3+MaxRepeats-1+1 {
		t.Fatalf("%d ops", len(ops))
	}
	if last := ops[len(ops)-1]; last.Key != "7" {
		t.Errorf("pick over %d repetitions = %q", MaxRepeats-1, last.Key)
	}
	_, err = m.Map(Input{HL7: parse(t, head+strings.Repeat("OBX|1|NM|X||1\r", MaxRepeats+1))})
	var me *Error
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "more than 10000 repeats") {
		t.Errorf("err = %v", err)
	}
}

func TestOnDelete(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("enc.yaml", `when: {fhir: Encounter}
lane: patient_key(subject.reference)
ops:
  - id: encounter
    object: ClinicalEncounter
    key_field: EHR_Encounter_Key__c
    key: id
    fields:
      Status: status
on_delete:
  op: encounter
  fields:
    Status: Cancelled
`)
	set, err := Load([]string{good}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := Input{FHIR: []byte(`{"resourceType":"Encounter","id":"e1","status":"finished","subject":{"reference":"Patient/p1"}}`)}
	addrs, err := set.Addresses(in)
	if err != nil || len(addrs) != 1 || addrs[0] != (Address{Mapping: "enc", Object: "ClinicalEncounter", KeyField: "EHR_Encounter_Key__c", Key: "e1"}) {
		t.Fatalf("Addresses: %+v %v", addrs, err)
	}
	ops := set.DeleteOps(addrs)
	if len(ops) != 1 || ops[0].Action != Update || ops[0].Key != "e1" || len(ops[0].Fields) != 1 || ops[0].Fields[0].Value.Text != "Cancelled" {
		t.Fatalf("DeleteOps: %+v", ops)
	}
	if len(set.DeleteOps([]Address{{Mapping: "gone", Object: "X", KeyField: "K", Key: "1"}})) != 0 {
		t.Error("an address of a mapping that is gone gave ops")
	}
	// An address recorded before the op moved to another key field (issue
	// 26: SourceSystemIdentifier → EHR_Encounter_Key__c, the key copied)
	// is looked up by the op's key field now, with the key it recorded.
	if ops := set.DeleteOps([]Address{{Mapping: "enc", Object: "ClinicalEncounter", KeyField: "SourceSystemIdentifier", Key: "e0"}}); len(ops) != 1 ||
		ops[0].KeyField != "EHR_Encounter_Key__c" || ops[0].Key != "e0" {
		t.Errorf("DeleteOps of an address under an older key field: %+v", ops)
	}

	for _, c := range []struct{ body, want string }{
		{"on_delete: {op: nope, fields: {Status: X}}", `no op with id "nope"`},
		{"on_delete: {op: encounter}", "needs fields"},
		{"on_delete: {op: encounter, action: delete, fields: {Status: X}}", "takes no fields"},
		{"on_delete: {op: encounter, action: archive, fields: {Status: X}}", `action "archive"`},
		{"on_delete: {op: encounter, fields: {Status: \"=status\"}}", "literal value"},
	} {
		bad := write("bad.yaml", `when: {fhir: Encounter}
ops:
  - id: encounter
    object: ClinicalEncounter
    key_field: SourceSystemIdentifier
    key: id
`+c.body+"\n")
		if _, err := Load([]string{bad}, Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.body, err, c.want)
		}
	}
	hl7 := write("hl7.yaml", `when: {hl7: ADT^A01}
ops:
  - id: p
    object: Account
    key_field: K
    key: PID-3.1
on_delete: {op: p, fields: {Status: X}}
`)
	if _, err := Load([]string{hl7}, Options{}); err == nil || !strings.Contains(err.Error(), "for FHIR mappings") {
		t.Errorf("on_delete on an HL7 mapping: %v", err)
	}
}

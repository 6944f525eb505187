package mappings

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// adtWithPID is an ADT^A01 from HOSP whose PID-3 is pid3.
func adtWithPID(pid3 string) string {
	return "MSH|^~\\&|EPIC|HOSP|CRM|CRM|20260105103000||ADT^A01|C1|P|2.5.1\r" +
		"PID|1||" + pid3 + "||ALPHA^ANNA||19500101|F\r"
}

// Issue 25.1: a key whose parts are blank (whitespace, the HL7 null "",
// an empty id with an authority) is absent, in key() and in concat() used
// as a key, in op keys, lanes and ref keys: such patients are refused,
// never written under one shared key like "| " or "HOSP|".
func TestBlankKeyPartsAreAbsent(t *testing.T) {
	m := mapping(t, `when: {hl7: ADT}
lane: concat(PID-3.4, "|", PID-3.1)
ops:
  - id: viakey
    object: Account
    key_field: K
    key: key(PID-3.4, PID-3.1)
    fields: {N: PID-5.1}
  - id: viaconcat
    object: Account
    key_field: K
    key: concat(PID-3.4, "|", PID-3.1)
    fields:
      N: PID-5.1
      R: ref(Account, K, concat(PID-3.4, "|", PID-3.1))
  - id: bare
    object: Account
    key_field: K
    key: PID-3.1
    fields: {N: PID-5.1}
`)
	for name, pid3 := range map[string]string{
		"whitespace":             " ",
		"HL7 null":               `""`,
		"empty id, authority":    "^^^HOSP^MR",
		"blank id, authority":    "  ^^^HOSP^MR",
		"null id, authority":     `""^^^HOSP^MR`,
		"id, blank authority":    "123^^^ ^MR",
		"id, null authority":     `123^^^""^MR`,
		"tab id, authority only": "\t^^^HOSP",
	} {
		in := Input{HL7: parse(t, adtWithPID(pid3))}
		_, err := m.Map(in)
		var me *Error
		if !errors.As(err, &me) || me.Op != "viakey" || !strings.Contains(err.Error(), "key expression gave no value") {
			t.Errorf("%s: err = %v, want op viakey refused", name, err)
		}
		// Each op on its own refuses too (the bare PID-3.1 only when the
		// id is blank).
		for _, od := range m.ops {
			e := m.newEnv(in)
			if _, err := m.emit(e, od, nil); err == nil && !(od.ID == "bare" && strings.HasPrefix(pid3, "123")) {
				t.Errorf("%s: op %s mapped", name, od.ID)
			}
		}
		if l, err := (&Set{Mappings: []*Mapping{m}}).Lane(in); err != nil || l != "" {
			t.Errorf("%s: lane = %q, %v; want none", name, l, err)
		}
	}
	ops, err := m.Map(Input{HL7: parse(t, adtWithPID("123^^^HOSP^MR"))})
	if err != nil || len(ops) != 3 || ops[0].Key != "HOSP|123" || ops[1].Key != "HOSP|123" || ops[2].Key != "123" {
		t.Fatalf("ops = %+v, %v", ops, err)
	}
	if r, _ := ops[1].Field("R"); r.Kind != Ref || r.Ref.Key != "HOSP|123" {
		t.Errorf("ref = %v", r)
	}
	// Outside a key, concat keeps blanks as they are (a name may have a
	// space in it).
	if v, _ := evalField(t, `concat(" ", PID-5.2)`); v.Text != " MARY" {
		t.Errorf("concat in a field = %q", v.Text)
	}
}

// A ref whose key is blank is no reference; a concat part written as a
// fallback to a literal (coalesce(x, "")) may be empty by the mapping's
// word; present() and empty() see a field of spaces as empty.
func TestOptionalKeyPartsAndPresent(t *testing.T) {
	m := mapping(t, `when: {hl7: ADT}
ops:
  - object: CodeSet
    key_field: K
    key: concat(coalesce(PID-3.4, ""), "|", PID-3.1)
    fields:
      P: present(PID-3.1)
      E: empty(PID-3.1)
      R: ref(Account, K, PID-3.1)
`)
	ops, err := m.Map(Input{HL7: parse(t, adtWithPID("123"))})
	if err != nil || ops[0].Key != "|123" {
		t.Fatalf("ops = %+v, %v", ops, err)
	}
	_, err = m.Map(Input{HL7: parse(t, adtWithPID(" ^^^HOSP"))})
	if err == nil {
		t.Fatal("a blank id mapped")
	}
	m2 := mapping(t, `when: {hl7: ADT}
ops:
  - object: X
    key_field: K
    key: PID-5.1
    fields:
      P: present(PID-3.1)
      E: empty(PID-3.1)
      R: ref(Account, K, PID-3.1)
`)
	ops, err = m2.Map(Input{HL7: parse(t, adtWithPID("   "))})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ops[0].Field("P")
	e, _ := ops[0].Field("E")
	if _, ok := ops[0].Field("R"); ok || p.Text != "false" || e.Text != "true" {
		t.Errorf("fields = %+v", ops[0].Fields)
	}
}

// required() refuses the input with the mapping's own reason, in a key
// and in a field, and its reason must be literal text.
func TestRequired(t *testing.T) {
	m := mapping(t, `when: {hl7: ADT}
ops:
  - id: patient
    object: Account
    key_field: K
    key: required(concat(PID-3.4, "|", PID-3.1), "no patient identifier")
    fields:
      LastName: required(PID-5.1, "no patient name (PID-5)")
`)
	_, err := m.Map(Input{HL7: parse(t, adtWithPID(" "))})
	if err == nil || err.Error() != "mapping test, op patient, key: no patient identifier" {
		t.Errorf("err = %v", err)
	}
	for _, pid5 := range []string{"", `""`, "  ^ANNA"} {
		msg := strings.Replace(adtWithPID("1^^^H"), "ALPHA^ANNA", pid5, 1)
		_, err = m.Map(Input{HL7: parse(t, msg)})
		if err == nil || err.Error() != "mapping test, op patient, field LastName: no patient name (PID-5)" {
			t.Errorf("PID-5 %q: err = %v", pid5, err)
		}
	}
	_, err = Compile("t.yaml", []byte("when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: required(PID-3.1, PID-5.1)\n    fields: {X: PID-5}\n"), Options{})
	if err == nil || !strings.Contains(err.Error(), "the reason must be quoted text") {
		t.Errorf("compile = %v", err)
	}
}

// Issue 25.2: ns() renders a whole namespace (HD, or EI components 2-4)
// in one normal form, so that a key carries its authority.
func TestNamespace(t *testing.T) {
	const msg = "MSH|^~\\&|LAB|%s|CRM|CRM|20260105103000||ORU^R01|C1|P|2.5.1\r" +
		"PID|1||123^^^%s^MR~9^^^X^PI||ALPHA^ANNA\r" +
		"OBR|1||%s|GLU^Glucose^L\r"
	cases := []struct {
		msh4, pid34, obr3 string
		want              map[string]Value
	}{
		{"HOSP", "HOSP", "1001^LAB", map[string]Value{
			"ns(MSH-4)": Str("HOSP"), "ns(PID-3.4)": Str("HOSP"), "ns(OBR-3.2, OBR-3.3, OBR-3.4)": Str("LAB"),
			`ns(pick(PID-3, 5, "MR", 4))`: Str("HOSP"), `ns(pick(PID-3, 5, "PI", 4))`: Str("X")}},
		{"HOSP^2.16.840.1^ISO", "HOSP&2.16.840.1&ISO", "1001^LAB^1.2.3^ISO", map[string]Value{
			"ns(MSH-4)": Str("HOSP^2.16.840.1^ISO"), "ns(PID-3.4)": Str("HOSP^2.16.840.1^ISO"),
			"ns(OBR-3.2, OBR-3.3, OBR-3.4)": Str("LAB^1.2.3^ISO"), `ns(pick(PID-3, 5, "MR", 4))`: Str("HOSP^2.16.840.1^ISO")}},
		{" HOSP ^^", "&1.2&ISO", "1001^^1.2.3", map[string]Value{
			"ns(MSH-4)": Str("HOSP"), "ns(PID-3.4)": Str("^1.2^ISO"), "ns(OBR-3.2, OBR-3.3, OBR-3.4)": Str("^1.2.3")}},
		{"", `""`, "1001", map[string]Value{
			"ns(MSH-4)": {}, "ns(PID-3.4)": {}, "ns(OBR-3.2, OBR-3.3, OBR-3.4)": {}, `ns(pick(PID-3, 5, "MR", 4))`: {}}},
		{"  ", "  &  ", "1001^ ^ ", map[string]Value{
			"ns(MSH-4)": {}, "ns(PID-3.4)": {}, "ns(OBR-3.2, OBR-3.3, OBR-3.4)": {}}},
	}
	for _, c := range cases {
		in := Input{HL7: parse(t, strings.NewReplacer("%s", "").Replace(
			strings.Replace(strings.Replace(strings.Replace(msg, "%s", c.msh4, 1), "%s", c.pid34, 1), "%s", c.obr3, 1)))}
		for expr, want := range c.want {
			m := mapping(t, "when: {hl7: ORU}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields:\n      F: '="+expr+"'\n")
			ops, err := m.Map(in)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := ops[0].Field("F")
			if !got.Equal(want) {
				t.Errorf("MSH-4 %q PID-3.4 %q OBR-3 %q: %s = %v, want %v", c.msh4, c.pid34, c.obr3, expr, got, want)
			}
		}
	}
}

// Issue 25.3: date() and datetime() read every HL7 DTM precision. A
// value with a day or more is written; a year or month cannot be written
// to a Date field without inventing a day, so in a field it is left out
// with a warning (the record is still mapped), as is a malformed optional
// timestamp; in a key, a lane or a condition a malformed or dayless value
// still refuses the input. Warnings never quote the value.
func TestPartialDates(t *testing.T) {
	m := mapping(t, `when: {hl7: ADT}
ops:
  - id: patient
    object: Account
    key_field: K
    key: PID-3.1
    fields:
      Birth: date(PID-7)
      Stamp: datetime(PID-7)
      Name: PID-5.1
`)
	cases := []struct{ in, date, dt string }{
		{"1962", "", ""},
		{"196203", "", ""},
		{"19620315", "1962-03-15", "1962-03-15T00:00:00-06:00"},
		{"1962031514", "1962-03-15", "1962-03-15T14:00:00-06:00"},
		{"196203151430", "1962-03-15", "1962-03-15T14:30:00-06:00"},
		{"19620315143059", "1962-03-15", "1962-03-15T14:30:59-06:00"},
		{"19620315143059.1234", "1962-03-15", "1962-03-15T14:30:59.123-06:00"},
		{"19620315143059.1234+0200", "1962-03-15", "1962-03-15T14:30:59.123+02:00"},
		{"1962+0200", "", ""},
		{"196203-0500", "", ""},
		{"19620315-0500", "1962-03-15", "1962-03-15T00:00:00-05:00"},
		{"1962031514+0100", "1962-03-15", "1962-03-15T14:00:00+01:00"},
		{"1962-03", "", ""},
		{"1962-03-15", "1962-03-15", "1962-03-15T00:00:00-06:00"},
		{"19621", "bad", "bad"},
		{"19620230", "bad", "bad"},
		{"1962031525", "bad", "bad"},
		{"19620315.5", "bad", "bad"},
		{"SECRET1962", "bad", "bad"},
	}
	for _, c := range cases {
		msg := strings.Replace(adtWithPID("123"), "19500101", c.in, 1)
		ops, warns, err := m.MapWarnings(Input{HL7: parse(t, msg)})
		if err != nil {
			t.Errorf("%s: the input failed: %v", c.in, err)
			continue
		}
		birth, hasBirth := ops[0].Field("Birth")
		stamp, hasStamp := ops[0].Field("Stamp")
		if _, ok := ops[0].Field("Name"); !ok {
			t.Errorf("%s: the other fields were not written", c.in)
		}
		switch c.date {
		case "", "bad":
			if hasBirth || hasStamp || len(warns) != 2 {
				t.Errorf("%s: fields %+v, warnings %v; want both left out with a warning each", c.in, ops[0].Fields, warns)
				continue
			}
			want := "has no day"
			if c.date == "bad" {
				want = "not a date/time"
			}
			for _, w := range warns {
				if w.Mapping != "test" || w.Op != "patient" || !strings.Contains(w.Text, want) || strings.Contains(w.String(), c.in) {
					t.Errorf("%s: warning %q", c.in, w)
				}
			}
			if warns[0].Field != "Birth" || warns[1].Field != "Stamp" {
				t.Errorf("%s: warnings %v", c.in, warns)
			}
		default:
			if len(warns) != 0 || birth.Text != c.date || stamp.Text != c.dt {
				t.Errorf("%s: %v %v %v, want %s %s", c.in, birth, stamp, warns, c.date, c.dt)
			}
		}
	}
	// In a key, an if: or a lane a value that is not a date still fails.
	for _, yaml := range []string{
		"when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: concat(PID-3.1, \"|\", date(PID-7))\n    fields: {N: PID-5.1}\n",
		"when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    if: present(date(PID-7))\n    fields: {N: PID-5.1}\n",
		"when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields: {N: '=ref(Account, K, concat(PID-3.1, \"|\", datetime(PID-7)))'}\n",
	} {
		m := mapping(t, yaml)
		for _, in := range []string{"1962", "SECRET"} {
			_, err := m.Map(Input{HL7: parse(t, strings.Replace(adtWithPID("123"), "19500101", in, 1))})
			if err == nil || strings.Contains(err.Error(), in) {
				t.Errorf("%s in %q: err = %v, want a failure naming no value", in, yaml, err)
			}
		}
	}
	ml := mapping(t, "when: {hl7: ADT}\nlane: concat(PID-3.1, \"|\", date(PID-7))\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields: {N: PID-5.1}\n")
	if _, err := (&Set{Mappings: []*Mapping{ml}}).Lane(Input{HL7: parse(t, strings.Replace(adtWithPID("123"), "19500101", "SECRET", 1))}); err == nil {
		t.Error("a lane with a malformed date did not fail")
	}
}

// A malformed optional timestamp (OBR-22) leaves that field out with a
// warning in Result.Warnings and in Explain, with the repeat named; the
// record is mapped.
func TestMalformedOptionalTimestamp(t *testing.T) {
	m := mapping(t, `when: {hl7: ORU}
ops:
  - id: obs
    object: CareObservation
    foreach: OBX
    key_field: K
    key: concat(OBR-3.1, "|", OBX-3.1)
    fields:
      Issued: datetime(OBR-22)
      Value: OBX-5
`)
	msg := "MSH|^~\\&|LAB|LABF|CRM|CRM|20260105103000||ORU^R01|C1|P|2.5.1\rPID|1||1^^^H\r" +
		"OBR|1||1001^LAB|GLU" + strings.Repeat("|", 18) + "2026-13-45T99\rOBX|1|NM|GLU||5\rOBX|2|NM|NA||140\r"
	set := &Set{Mappings: []*Mapping{m}}
	res, err := set.Map(Input{HL7: parse(t, msg)})
	if err != nil || len(res.Ops) != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	if _, ok := res.Ops[0].Field("Issued"); ok {
		t.Error("Issued was written")
	}
	if len(res.Warnings) != 2 || res.Warnings[1].String() != "test/obs[2].Issued: datetime(): the value is not a date/time (HL7 YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ] or ISO 8601); the field is left out" {
		t.Errorf("warnings = %v", res.Warnings)
	}
	ex, err := m.Explain(Input{HL7: parse(t, msg)})
	if err != nil || len(ex) != 2 || ex[0].Fields[0].Warning == "" || ex[0].Fields[1].Warning != "" {
		t.Errorf("explain = %+v, %v", ex, err)
	}
}

// Lint warns, without refusing the mapping, about key parts that run
// together and identifiers read without their namespace; the shipped sets
// have no such warnings.
func TestKeyLint(t *testing.T) {
	m := mapping(t, `when: {hl7: ORU}
lane: PID-3.1
ops:
  - object: A
    key_field: K
    key: concat(OBR-3.1, OBX-3.1)
    fields:
      R: ref(Account, K, format("{1}{2}", PID-3.4, PID-3.1))
  - object: B
    key_field: K
    key: concat(coalesce(ns(OBR-3.2, OBR-3.3, OBR-3.4), ns(MSH-4)), "|", OBR-3.1)
    fields: {X: OBX-5}
  - object: C
    key_field: K
    key: concat(ns(MSH-4), "|", PV1-19.1, "|", pick(PID-3, 5, "MR", 1))
    fields: {X: OBX-5}
  - object: D
    key_field: K
    key: concat(coalesce(ns(PID-3.4), ns(MSH-4), ""), "|", coalesce(PID-3.1, " "))
    fields: {X: OBX-5}
`)
	got := m.Lint().Error()
	for _, want := range []string{
		"test.yaml:2:7: warning: lane: PID-3.1 is an identifier (CX) read without its assigning authority",
		"test.yaml:6:10: warning: key: parts 1 and 2 of concat() run together",
		"test.yaml:6:10: warning: key: OBR-3.1 is an entity identifier (EI) read without its namespace",
		"test.yaml:8:10: warning: R: the key of ref(): values {1} and {2} of format() run together",
		// Issue 25.1: a fallback to blank text writes the blank part the
		// key rules would refuse (once per expression).
		"test.yaml:19:10: warning: key: a part falls back to blank text in coalesce()",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lint lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "\n") != 4 {
		t.Errorf("lint:\n%s", got)
	}
	for _, set := range []string{"healthcloud", "dynamics"} {
		s, err := Load([]string{filepath.Join("..", "configs", "mappings", set)}, Options{Zone: time.UTC})
		if err != nil {
			t.Fatal(err)
		}
		if w := s.Lint(); len(w) > 0 {
			t.Errorf("%s has lint warnings:\n%v", set, w)
		}
	}
}

// A test case lists the warnings it expects; an unexpected or missing
// one fails the case.
func TestTestRunnerWarnings(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pat.yaml"), []byte("when: {hl7: ADT}\nops:\n  - id: patient\n    object: Account\n    key_field: K\n    key: PID-3.1\n    fields:\n      Birth: date(PID-7)\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "pat_test.yaml"), []byte(`tests:
  - name: year only, expected
    input: "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5.1\rPID|1||7||X||1962\r"
    expect: [{object: Account, key_field: K, key: "7"}]
    warnings: ["patient.Birth: date(): the value has no day"]
  - name: year only, not expected
    input: "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5.1\rPID|1||7||X||1962\r"
    expect: [{object: Account, key_field: K, key: "7"}]
  - name: expected, not produced
    input: "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5.1\rPID|1||7||X||19620101\r"
    expect: [{object: Account, key_field: K, key: "7", fields: {Birth: "1962-01-01"}}]
    warnings: ["Birth"]
`), 0o600)
	set, err := Load([]string{dir}, Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	tf, err := ParseTestFile(filepath.Join(dir, "pat_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if failed := WriteReport(&out, RunTests(set, []*TestFile{tf}), true); failed != 2 {
		t.Errorf("failed = %d\n%s", failed, out.String())
	}
	for _, want := range []string{
		"ok   " + tf.Path + ":2: year only, expected",
		"warning not expected (list it under warnings:): pat/patient.Birth: date(): the value has no day",
		`warning: want one containing "Birth", got none`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// split() takes a namespace that ns() joined apart again (write-back puts
// the authority of a patient key into PID-3.4's subcomponents).
func TestSplit(t *testing.T) {
	for expr, want := range map[string]Value{
		`split("HOSP^1.2.3^ISO", "^", 1)`: Str("HOSP"),
		`split("HOSP^1.2.3^ISO", "^", 3)`: Str("ISO"),
		`split("HOSP", "^", 2)`:           {},
		`split("^1.2", "^", 1)`:           {},
		`split(PID-39, "^", 1)`:           {},
	} {
		got, err := evalField(t, expr)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s = %v, %v; want %v", expr, got, err, want)
		}
	}
	if _, err := Compile("t.yaml", []byte("when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields: {X: 'split(PID-3.4, \"^\", 0)'}\n"), Options{}); err != nil {
		t.Errorf("a quoted field compiled as an expression: %v", err)
	}
	if _, err := Compile("t.yaml", []byte("when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: PID-3.1\n    fields: {X: '=split(PID-3.4, \"^\", 0)'}\n"), Options{}); err == nil {
		t.Error("split with piece 0 compiled")
	}
}

// A key longer than an external id field holds is refused, not cut (two
// cut keys could become one).
func TestKeyLength(t *testing.T) {
	m := mapping(t, "when: {hl7: ADT}\nops:\n  - object: A\n    key_field: K\n    key: concat(ns(PID-3.4), \"|\", PID-3.1)\n    fields: {N: PID-5.1}\n")
	ok := strings.Repeat("é", 255-len("H|"))
	if ops, err := m.Map(Input{HL7: parse(t, adtWithPID(ok+"^^^H"))}); err != nil || len([]rune(ops[0].Key)) != 255 {
		t.Fatalf("255 characters: %v", err)
	}
	_, err := m.Map(Input{HL7: parse(t, adtWithPID(ok+"x^^^H"))})
	if err == nil || !strings.Contains(err.Error(), "the key is 256 characters long; an external id holds at most 255") {
		t.Errorf("err = %v", err)
	}
}

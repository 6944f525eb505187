package mappings

import (
	"strconv"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// FuzzCompile feeds arbitrary expressions (and whole files) to the
// compiler: it must report problems, never panic.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{"PID-5.1", `concat(PID-5.2, " ", PID-5.1)`, `lookup(sex, PID-8, "x")`, `ref(patient)`, `pick(PID-3, 5, "MR", 1)`,
		`"=format('{1}', PID-5)"`, `if(eq(PV1-2, "I"), 1, 2)`, `date(PID-7, "America/Chicago")`, `text(OBX-5)`, `concat(`, `'unterminated`, `OBX[2]-5[3].1.2`} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, expr string, fhir bool) {
		when := "{hl7: ADT}"
		if fhir {
			when = "{fhir: Patient}"
		}
		doc := "when: " + when + "\ntables:\n  sex: {F: female}\nops:\n  - id: patient\n    object: A\n    key_field: K\n    key: " + strconv.Quote("="+expr) + "\n    fields:\n      X: " + strconv.Quote("="+expr) + "\n"
		_, _ = Compile("fuzz.yaml", []byte(doc), Options{Zone: time.UTC})
		_, _ = Compile("fuzz.yaml", []byte(expr), Options{Zone: time.UTC})
	})
}

// FuzzMap maps arbitrary HL7 messages with the benchmark mappings: every
// outcome is ops or an *Error, never a panic.
func FuzzMap(f *testing.F) {
	set, err := Load([]string{"testdata/bench_adt.yaml", "testdata/bench_oru.yaml"}, Options{Zone: time.UTC})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(benchADT))
	f.Add([]byte(benchORU))
	f.Add([]byte(testADT))
	f.Add([]byte("MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5\rPID|1||\"\"^^^\"\"\rPV1|1||||||||||||||||||x\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := hl7.Parse(data)
		if err != nil {
			return
		}
		_, _ = set.Map(Input{HL7: m})
		_, _ = set.Lane(Input{HL7: m})
	})
}

// FuzzMapFHIR maps arbitrary JSON with a FHIR mapping.
func FuzzMapFHIR(f *testing.F) {
	m, err := Compile("f.yaml", []byte(`when: {fhir: [Patient, Observation]}
ops:
  - id: p
    object: A
    key_field: K
    key: coalesce(identifier.where(type.coding.code = 'MR').value, id)
    fields:
      Last: name.where(use = 'official').family
      Born: date(birthDate)
      When: datetime(effectiveDateTime)
      Value: number(valueQuantity.value)
  - object: C
    foreach: component
    key_field: K
    key: concat(%resource.id, "-", index())
    fields:
      V: valueQuantity.value
      P: ref(p)
`), Options{Zone: time.UTC})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"resourceType":"Patient","id":"p1","name":[{"use":"official","family":"X"}],"birthDate":"1980-05-17"}`))
	f.Add([]byte(`{"resourceType":"Observation","id":"o1","effectiveDateTime":"2026-01-05T10:00:00Z","valueQuantity":{"value":1.5},"component":[{"valueQuantity":{"value":2}}]}`))
	f.Add([]byte(`{"resourceType":"Patient","id":7,"birthDate":["x"],"name":"y"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := Input{FHIR: data}
		if m.Accepts(in) {
			_, _ = m.Map(in)
		}
	})
}

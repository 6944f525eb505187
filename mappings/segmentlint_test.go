package mappings

import (
	"errors"
	"strings"
	"testing"
)

// Paths into segments no HL7 version defines and past a segment's last
// field are lint errors at the path's own line:col, with a suggestion
// (undeclared Z segments: TestUndeclaredZSegmentWarns).
func TestSegmentLint(t *testing.T) {
	const head = "when: {hl7: ADT}\n"
	op := func(fields string) string {
		return "ops:\n  - object: Account\n    key_field: K__c\n    key: key(PID-3.4, PID-3.1)\n    fields:\n" + fields
	}
	for _, c := range []struct {
		name, yaml string
		want       []string // "line:col: text"; none: it compiles
	}{
		{"PDI is no segment", head + op("      LastName: PDI-5.1.1\n"),
			[]string{"7:17: LastName: PDI-5.1.1: PDI is not an HL7 segment (no version 2.3 to 2.7.1 defines it); did you mean PD1, PDA, PDC or PID?"}},
		{"inside a call", head + op("      X: concat(PID-5.1, \" \", PDI-5.2)\n"),
			[]string{"7:31: X: PDI-5.2: PDI is not an HL7 segment"}},
		{"declared Z segment", head + "z_segments: [ZZZ, ZPD]\n" + op("      Z: ZZZ-5\n      P: ZPD-99.2\n"), nil},
		{"field past the end", head + op("      Phone: PID-41.1\n"),
			[]string{"7:14: Phone: PID-41.1: no HL7 version (2.3 to 2.7.1) defines field 41 of PID; its last field is PID-40 (Patient Telecommunication Information)"}},
		{"last field is fine", head + op("      Phone: PID-40.1\n      V: PV1-52\n      M: MSH-21\n"), nil},
		{"key and lane", head + "lane: key(PID-3.4, PDI-3.1)\n" + strings.Replace(op("      X: PID-5\n"), "key(PID-3.4, PID-3.1)", "key(MSH-4, PV1-99)", 1),
			[]string{"2:20: lane: PDI-3.1: PDI is not an HL7 segment", "6:21: key: PV1-99: no HL7 version (2.3 to 2.7.1) defines field 99 of PV1"}},
		{"foreach segment", head + strings.Replace(op("      X: OBX-5\n"), "    fields:", "    foreach: OBZ\n    fields:", 1),
			[]string{"6:14: foreach: OBZ is not an HL7 segment (no version 2.3 to 2.7.1 defines it); did you mean OBR or OBX?"}},
		{"foreach field", head + strings.Replace(op("      X: PID-3.1\n"), "    fields:", "    foreach: PID-77\n    fields:", 1),
			[]string{"6:14: foreach: PID-77: no HL7 version (2.3 to 2.7.1) defines field 77 of PID"}},
		{"z_segments must be Z ids", head + "z_segments: [PID, Z1, ZAB, ZAB]\n" + op("      X: PID-5\n"),
			[]string{`2:14: z_segments: "PID" is not a Z segment id`, `2:19: z_segments: "Z1" is not a Z segment id`, "2:28: z_segments: ZAB is listed twice"}},
		{"hl7 output: an op writing a Z segment declares it", "when: {fhir: CoordinatorNote}\noutput: hl7\nops:\n  - object: ZNT\n    fields: {ZNT-1: owner, ZNT-40: owner}\n", nil},
		{"hl7 output: unknown object", "when: {fhir: CoordinatorNote}\noutput: hl7\nops:\n  - object: TXB\n    fields: {TXB-1: owner}\n",
			[]string{"4:13: object: TXB is not an HL7 segment (no version 2.3 to 2.7.1 defines it); did you mean TXA?"}},
		{"hl7 output: target past the end", "when: {fhir: CoordinatorNote}\noutput: hl7\nops:\n  - object: TXA\n    fields: {TXA-12.1: documentId, TXA-99: x}\n",
			[]string{"5:36: target TXA-99: no HL7 version (2.3 to 2.7.1) defines field 99 of TXA; its last field is TXA-"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile("m.yaml", []byte(c.yaml), Options{})
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("does not compile: %v", err)
				}
				return
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("compiled (err %v), want %q", err, c.want)
			}
			if len(ps) != len(c.want) {
				t.Fatalf("problems:\n%v\nwant %d: %q", ps, len(c.want), c.want)
			}
			for i, w := range c.want {
				if got := strings.TrimPrefix(ps[i].String(), "m.yaml:"); !strings.HasPrefix(got, w) {
					t.Errorf("problem %d:\n got %s\nwant %s", i, got, w)
				}
			}
		})
	}
}

// A path into a Z segment the mapping does not declare is a warning at
// its expression, once per segment, with a suggestion: the mapping still
// compiles, since mappings written before z_segments existed read their
// site's Z segments undeclared and an upgrade must not stop them.
func TestUndeclaredZSegmentWarns(t *testing.T) {
	const head = "when: {hl7: ADT}\n"
	op := func(fields string) string {
		return "ops:\n  - object: Account\n    key_field: K__c\n    key: key(PID-3.4, PID-3.1)\n    fields:\n" + fields
	}
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"undeclared", head + op("      Z: ZZZ-5\n      Y: concat(ZZZ-6, ZZZ-7)\n"),
			[]string{"7:10: warning: ZZZ is a site-defined (Z) segment that this mapping does not declare: add z_segments: [ZZZ]"}},
		{"a typo suggests the declared one", head + "z_segments: [ZPD]\n" + op("      P: ZPX-1\n      Q: ZPD-2\n"),
			[]string{"8:10: warning: ZPX is a site-defined (Z) segment that this mapping does not declare: add z_segments: [ZPX] if the sender sends it; did you mean ZPD?"}},
		{"declared", head + "z_segments: [ZZZ]\n" + op("      Z: ZZZ-5\n"), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := Compile("m.yaml", []byte(c.yaml), Options{})
			if err != nil {
				t.Fatalf("does not compile: %v", err)
			}
			var got []string
			for _, w := range m.Lint() {
				got = append(got, strings.TrimPrefix(w.String(), "m.yaml:"))
			}
			if len(got) != len(c.want) {
				t.Fatalf("warnings %q, want %q", got, c.want)
			}
			for i, w := range c.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("warning %d:\n got %s\nwant %s", i, got[i], w)
				}
			}
		})
	}
}

package mappings_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// loadShipped loads the two shipped CRM sets.
func loadShipped(t *testing.T) map[string]*mappings.Set {
	t.Helper()
	root := shared.ModuleRoot(t)
	out := map[string]*mappings.Set{}
	for _, name := range []string{"healthcloud", "dynamics"} {
		s, err := mappings.Load([]string{filepath.Join(root, "configs", "mappings", name)}, mappings.Options{Zone: time.UTC})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = s
	}
	return out
}

func hl7In(t *testing.T, lines ...string) mappings.Input {
	t.Helper()
	m, err := hl7.Parse([]byte(strings.Join(lines, "\r") + "\r"))
	if err != nil {
		t.Fatal(err)
	}
	return mappings.Input{HL7: m}
}

// admission is an ADT^A01 from facility fac for one patient with a visit,
// an allergy and a diagnosis.
func admission(t *testing.T, fac, pid3, name, birth, sex, visit string) mappings.Input {
	return hl7In(t,
		"MSH|^~\\&|EPIC|"+fac+"|CRM|CRM|20260105103000||ADT^A01^ADT_A01|A-"+visit+"|P|2.5.1",
		"EVN|A01|20260105103000",
		"PID|1||"+pid3+"||"+name+"||"+birth+"|"+sex,
		"PV1|1|I|W^1^1||||||||||||||||"+visit+"||||||||||||||||||||||||||20260105100000",
		"AL1|1|DA|70618^PENICILLIN^RXNORM|SV",
		"DG1|1||I10^Hypertension^I10")
}

// patientScoped are the objects whose records belong to one patient (code
// records are shared by design).
var patientScoped = map[string]bool{
	"Account": true, "ClinicalEncounter": true, "AllergyIntolerance": true, "HealthCondition": true,
	"CareObservation": true, "ServiceAppointment": true,
	"contact": true, "msemr_encounter": true, "msemr_allergyintolerance": true, "msemr_condition": true,
	"msemr_observation": true, "msemr_appointmentemr": true,
}

// keysOf lists the patient-scoped op keys and the references' keys.
func keysOf(ops []mappings.Op) map[string]bool {
	out := map[string]bool{}
	for _, op := range ops {
		if patientScoped[op.Object] {
			out[op.Object+" "+op.Key] = true
		}
		for _, f := range op.Fields {
			if f.Value.Kind == mappings.Ref && patientScoped[f.Value.Ref.Object] {
				out[f.Value.Ref.Object+" "+f.Value.Ref.Key] = true
			}
		}
	}
	return out
}

func shareNoKey(t *testing.T, what string, a, b []mappings.Op) {
	t.Helper()
	ka, kb := keysOf(a), keysOf(b)
	if len(ka) == 0 || len(kb) == 0 {
		t.Errorf("%s: no keys (%d, %d)", what, len(ka), len(kb))
	}
	for k := range ka {
		if kb[k] {
			t.Errorf("%s: both write or refer to %s", what, k)
		}
	}
}

// Issue 25 acceptance, through both shipped sets: two patients with blank
// MRNs never share a CRM record (they are refused: "no patient
// identifier"), two patients with the same MRN from two facilities share
// no key, and two labs with the same order number never share an
// observation.
func TestShippedKeysNeverShared(t *testing.T) {
	for name, set := range loadShipped(t) {
		// The reproduction, and the other blank ids.
		for _, pid3 := range []string{" ", `""`, "^^^HOSP^MR", "  ^^^HOSP&1.2.3&ISO^MR"} {
			for _, p := range []struct{ name, birth, sex, visit string }{
				{"ALPHA^ANNA", "19500101", "F", "V1"}, {"BRAVO^BEN", "19600202", "M", "V2"},
			} {
				res, err := set.Map(admission(t, "HOSP", pid3, p.name, p.birth, p.sex, p.visit))
				if err == nil || !strings.Contains(err.Error(), "no patient identifier") || len(res.Ops) > 0 {
					t.Errorf("%s: PID-3 %q, %s: %d ops, err %v; want refused with \"no patient identifier\"", name, pid3, p.name, len(res.Ops), err)
				}
				if err != nil && (strings.Contains(err.Error(), "ALPHA") || strings.Contains(err.Error(), "BRAVO")) {
					t.Errorf("%s: the reason quotes the message: %v", name, err)
				}
			}
		}
		// Same MRN and visit number, no authority, two facilities; same
		// MRN, two authorities (one facility: its visit numbers differ).
		for _, c := range []struct{ facA, pidA, facB, pidB, visitB string }{
			{"HOSP", "1001", "CLINIC", "1001", "V1"},
			{"HOSP", "1001^^^EAST^MR", "HOSP", "1001^^^WEST^MR", "V2"},
			{"HOSP", "1001^^^MPI&1.2.3&ISO^MR", "HOSP", "1001^^^MPI&1.2.4&ISO^MR", "V2"},
			// "|" and "^" inside values (\F\, \S\) are escaped in keys:
			// authority A with MRN "B|C" is not authority "A|B" with MRN C,
			// an HD A&B is not the namespace "A^B", and so on.
			{"HOSP", `B\F\C^^^A^MR`, "HOSP", `C^^^A\F\B^MR`, "V2"},
			{"HOSP", "1001^^^A&B^MR", "HOSP", `1001^^^A\S\B^MR`, "V2"},
			{"HOSP", `1001^^^A\E\S\E\B^MR`, "HOSP", `1001^^^A\S\B^MR`, "V2"},
			{"HOSP", `1\F\2^^^A^MR`, "HOSP", `1\E\F\E\2^^^A^MR`, "V2"},
			{"A^B", "1001", `A\S\B`, "1001", "V2"},
			// keysafe() (Dynamics) on top: "/" and a literal "~2F".
			{"HOSP", "1/2^^^A^MR", "HOSP", "1~2F2^^^A^MR", "V2"},
			{"HOSP", `1\E\2^^^A^MR`, "HOSP", "1~5C2^^^A^MR", "V2"},
			// An authority is not a facility of another form.
			{"X", "1001^^^HOSP^MR", "HOSP^1.2^ISO", "1001", "V2"},
			// Another identifier type's number is another identifier: a
			// PI 1001 is not the MR 1001 of the same authority.
			{"HOSP", "1001^^^HOSP^MR", "HOSP", "1001^^^HOSP^PI", "V2"},
			{"HOSP", "1001^^^HOSP^PI", "HOSP", "1001^^^HOSP^SS", "V2"},
		} {
			a, err := set.Map(admission(t, c.facA, c.pidA, "ALPHA^ANNA", "19500101", "F", "V1"))
			if err != nil {
				t.Fatal(err)
			}
			b, err := set.Map(admission(t, c.facB, c.pidB, "BRAVO^BEN", "19600202", "M", c.visitB))
			if err != nil {
				t.Fatal(err)
			}
			shareNoKey(t, name+": "+c.pidA+" from "+c.facA+" and "+c.pidB+" from "+c.facB, a.Ops, b.Ops)
		}
		// Two labs, the same order number 1001.
		for _, c := range []struct{ labA, obrA, labB, obrB string }{
			{"LABA", "1001", "LABB", "1001"},
			{"LAB", "1001^CHEM", "LAB", "1001^MICRO"},
			{"LABA", "1001^LAB^2.16.1^ISO", "LABB", "1001^LAB^2.16.2^ISO"},
			// An HD with a universal id type but no universal id names no
			// one (HL7 2.A.33: HD-3 qualifies HD-2): its namespace id
			// decides, never the bare type both share.
			{"LABA^^ISO", "1001", "LABB^^ISO", "1001"},
			{"LAB", "1001^CHEM^^ISO", "LAB", "1001^MICRO^^ISO"},
		} {
			oru := func(lab, obr3, pid3, name string) mappings.Input {
				return hl7In(t,
					"MSH|^~\\&|LIS|"+lab+"|CRM|CRM|20260105103000||ORU^R01^ORU_R01|R-"+lab+"|P|2.5.1",
					"PID|1||"+pid3+"||"+name+"||19500101|F",
					"OBR|1||"+obr3+"|2345-7^Glucose^LN|||20260105090000",
					"OBX|1|NM|2345-7^Glucose^LN||95|mg/dL|70-99|N|||F",
					"OBX|2|NM|2951-2^Sodium^LN||140|mmol/L|135-145|N|||F")
			}
			a, err := set.Map(oru(c.labA, c.obrA, "P1^^^"+c.labA+"^MR", "ALPHA^ANNA"))
			if err != nil {
				t.Fatal(err)
			}
			b, err := set.Map(oru(c.labB, c.obrB, "P2^^^"+c.labB+"^MR", "BRAVO^BEN"))
			if err != nil {
				t.Fatal(err)
			}
			shareNoKey(t, name+": lab "+c.labA+" order "+c.obrA+" and lab "+c.labB+" order "+c.obrB, a.Ops, b.Ops)
		}
	}
}

// An assigning authority and a sending facility are one namespace: a
// message without PID-3.4 says the facility assigned the MRN, so HOSP's
// MRN 1001 is one patient whether it comes as PID-3.4 HOSP (from any
// facility) or without PID-3.4 from facility HOSP; and ns() renders an
// HD alike from PID-3.4 and MSH-4, its universal id type in upper case.
func TestShippedKeysSameNamespace(t *testing.T) {
	for name, set := range loadShipped(t) {
		for _, c := range []struct{ facA, pidA, facB, pidB string }{
			{"CLINIC", "1001^^^HOSP^MR", "HOSP", "1001"},
			{"CLINIC", "1001^^^HOSP&1.2&ISO^MR", "HOSP^1.2^ISO", "1001^^^^MR"},
			{"HOSP", "1001^^^MPI&1.2&iso^MR", "HOSP", "1001^^^ MPI &1.2&ISO^MR"},
		} {
			a, err := set.Map(admission(t, c.facA, c.pidA, "ALPHA^ANNA", "19500101", "F", "V1"))
			if err != nil {
				t.Fatal(err)
			}
			b, err := set.Map(admission(t, c.facB, c.pidB, "ALPHA^ANNA", "19500101", "F", "V1"))
			if err != nil {
				t.Fatal(err)
			}
			if a.Ops[0].Key != b.Ops[0].Key {
				t.Errorf("%s: %s from %s keys %q, %s from %s %q; want one patient", name, c.pidA, c.facA, a.Ops[0].Key, c.pidB, c.facB, b.Ops[0].Key)
			}
		}
	}
}

// Issue 25.3 and 8: a year-only (or year and month) birth date maps, the
// birth date left out with a warning; a nameless patient is refused with a
// reason instead of being bounced by the CRM.
func TestShippedPartialBirthDateAndNameless(t *testing.T) {
	birthField := map[string]string{"healthcloud": "PersonBirthdate", "dynamics": "birthdate"}
	for name, set := range loadShipped(t) {
		for _, birth := range []string{"1962", "196203"} {
			res, err := set.Map(admission(t, "HOSP", "1001^^^HOSP^MR", "ALPHA^ANNA", birth, "F", "V1"))
			if err != nil {
				t.Errorf("%s: birth date %s: %v", name, birth, err)
				continue
			}
			if len(res.Ops) < 3 {
				t.Errorf("%s: %d ops", name, len(res.Ops))
			}
			if _, ok := res.Ops[0].Field(birthField[name]); ok {
				t.Errorf("%s: birth date %s written: %+v", name, birth, res.Ops[0])
			}
			if len(res.Warnings) != 1 || res.Warnings[0].Field != birthField[name] || !strings.Contains(res.Warnings[0].Text, "has no day") {
				t.Errorf("%s: birth date %s: warnings %v", name, birth, res.Warnings)
			}
		}
		for _, pid5 := range []string{"", `""`, " ^ANNA"} {
			_, err := set.Map(admission(t, "HOSP", "1001^^^HOSP^MR", pid5, "19500101", "F", "V1"))
			if err == nil || !strings.Contains(err.Error(), "no patient name (PID-5)") {
				t.Errorf("%s: PID-5 %q: err = %v", name, pid5, err)
			}
		}
	}
}

// The shipped HL7 mappings write the patient key (and the encounter key)
// out in full wherever it is needed — lane, op key, every ref() — since
// YAML anchors cannot reach into an expression or across files. This
// keeps the copies one: each is the same text, and every namespace falls
// back in the same order (its own, then MSH-4, then MSH-3).
func TestShippedKeyCopiesAgree(t *testing.T) {
	root := shared.ModuleRoot(t)
	for _, set := range []string{"healthcloud", "dynamics"} {
		files, err := filepath.Glob(filepath.Join(root, "configs", "mappings", set, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		copies := map[string]map[string]bool{} // start -> texts
		for _, f := range files {
			if strings.HasSuffix(f, "_test.yaml") {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src, base := string(data), filepath.Base(f)
			for _, start := range []string{`if(present(pick(PID-3, `, `if(present(pick(MRG-1, `, `concat(coalesce(ns(PV1-19.4)`} {
				for i := strings.Index(src, start); i >= 0; i = nextIndex(src, start, i) {
					text := balanced(src[i:])
					if copies[start] == nil {
						copies[start] = map[string]bool{}
					}
					copies[start][text] = true
				}
			}
			if n4, n3, both := strings.Count(src, "ns(MSH-4)"), strings.Count(src, "ns(MSH-3)"), strings.Count(src, "ns(MSH-4), ns(MSH-3))"); n4 != both || n3 != both {
				t.Errorf("%s/%s: %d ns(MSH-4) and %d ns(MSH-3), %d of them as the fallback \"ns(MSH-4), ns(MSH-3))\": every namespace falls back to MSH-4, then MSH-3", set, base, n4, n3, both)
			}
		}
		pid, mrg := copies[`if(present(pick(PID-3, `], copies[`if(present(pick(MRG-1, `]
		if len(pid) == 0 {
			t.Fatalf("%s: no patient key found", set)
		}
		for start, texts := range copies {
			if len(texts) > 1 {
				t.Errorf("%s: %d different copies of the key starting %q: %v", set, len(texts), start, texts)
			}
		}
		// The set's README shows the patient key: it must be the one shipped.
		readme, err := os.ReadFile(filepath.Join(root, "configs", "mappings", set, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		doc := strings.Join(strings.Fields(string(readme)), " ")
		for i := strings.Index(doc, `if(present(pick(PID-3, `); i >= 0; i = nextIndex(doc, `if(present(pick(PID-3, `, i) {
			if text := strings.ReplaceAll(strings.ReplaceAll(balanced(doc[i:]), "( ", "("), ", ", ", "); !pid[text] {
				t.Errorf("%s/README.md shows a patient key that is not the one shipped:\n%s", set, text)
			}
		}
		for p := range pid {
			for m := range mrg {
				if strings.ReplaceAll(m, "MRG-1", "PID-3") != p {
					t.Errorf("%s: the prior patient key (MRG-1) is not the patient key's form:\n%s\n%s", set, m, p)
				}
			}
		}
	}
}

func nextIndex(s, sub string, i int) int {
	j := strings.Index(s[i+1:], sub)
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// balanced returns the call at the start of s, up to its closing
// parenthesis (quoted text skipped).
func balanced(s string) string {
	depth, quote := 0, byte(0)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return s[:i+1]
			}
		}
	}
	return s
}

package mappings

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// The lane keys a typed identifier gives must be those the set gives the
// real messages of that patient, and never another patient's.
func TestPatientLaneKeysMatchTheMessagesOwnLanes(t *testing.T) {
	for _, dir := range []string{"../configs/mappings/healthcloud", "../configs/mappings/dynamics"} {
		set, err := Load([]string{dir}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		lane := func(raw string) string {
			m, err := hl7.Parse([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			k, err := set.Lane(Input{HL7: m})
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
		msg := func(pid3 string) string {
			return "MSH|^~\\&|ADT|GOOD HEALTH HOSPITAL|CRM|X|20250101120000||ADT^A01^ADT_A01|C1|P|2.5.1\rEVN|A01|20250101120000\rPID|1||" +
				pid3 + "||DOE^JANE\rPV1|1|I\r"
		}
		real := lane(msg("PATID1234^5^M11^test1&2.16.1&HCD^MR^GOOD HEALTH HOSPITAL"))
		for _, typed := range []string{"test1^2.16.1^HCD", "test1&2.16.1&HCD", " test1 ^ 2.16.1 ^ HCD "} {
			if !contains(set.PatientLaneKeys(typed, "PATID1234"), real) {
				t.Errorf("%s: authority %q, MRN PATID1234: keys %q lack the message's lane %q", dir, typed, set.PatientLaneKeys(typed, "PATID1234"), real)
			}
		}
		// Another authority, a longer MRN, a blank part: never that lane.
		for _, c := range [][2]string{{"test2^2.16.1^HCD", "PATID1234"}, {"test1^2.16.1^HCD", "PATID12345"}, {"test1^2.16.1^HCD", "PATID123"},
			{"", "PATID1234"}, {"test1^2.16.1^HCD", ""}, {"test1^2.16.1^HCD", `""`}} {
			if contains(set.PatientLaneKeys(c[0], c[1]), real) {
				t.Errorf("%s: authority %q MRN %q finds patient PATID1234 of test1", dir, c[0], c[1])
			}
		}
		if k := set.PatientLaneKeys("", "PATID1234"); len(k) != 0 {
			t.Errorf("%s: a blank authority gives keys %q", dir, k)
		}
		// An identifier without PID-3.4 takes the sending facility as its
		// authority: searching under that facility finds it.
		facility := lane(msg("MRN77^^^^MR"))
		if !contains(set.PatientLaneKeys("GOOD HEALTH HOSPITAL", "MRN77"), facility) {
			t.Errorf("%s: the facility's patient MRN77 (lane %q) is not found by authority and MRN", dir, facility)
		}
		// MRNs with delimiters are escaped, not parsed.
		if k := set.PatientLaneKeys("A", "1|2^3"); len(k) == 0 {
			t.Errorf("%s: an MRN with delimiters gives no key", dir)
		}
	}
	if _, err := os.Stat(filepath.Join("..", "configs")); err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

package hl7

import (
	"slices"
	"testing"
)

func TestLookupSegmentByVersion(t *testing.T) {
	for _, c := range []struct {
		version, id   string
		field         int
		wantVersion   string
		name, typ     string
		repeats       bool
		wantFieldsMin int
	}{
		{"2.5.1", "PID", 5, "2.5.1", "Patient Name", "XPN", true, 39},
		{"2.5.1", "pid", 3, "2.5.1", "Patient Identifier List", "CX", true, 39},
		{"2.3", "PID", 7, "2.3", "Date of Birth", "TS", false, 30},
		{"2.8", "PID", 40, "2.7.1", "Patient Telecommunication Information", "XTN", true, 40}, // 2.8: nearest is 2.7.1
		{"", "MSH", 12, "2.7.1", "Version ID", "VID", false, 25},                              // no version: the newest
		{"2.2", "PV1", 19, "2.3", "Visit Number", "CX", false, 52},                            // older than any: the oldest
		{"2.3", "SFT", 1, "2.5", "Software Vendor Organization", "XON", false, 6},             // SFT is new in 2.5
		{"2.5", "OBX", 5, "2.5", "Observation Value", "VARIES", true, 19},
	} {
		s, ok := LookupSegment(c.version, c.id)
		if !ok {
			t.Errorf("LookupSegment(%q, %q): not found", c.version, c.id)
			continue
		}
		if s.Version != c.wantVersion || len(s.Fields) < c.wantFieldsMin {
			t.Errorf("LookupSegment(%q, %q): version %s with %d fields, want %s with at least %d", c.version, c.id, s.Version, len(s.Fields), c.wantVersion, c.wantFieldsMin)
		}
		f, ok := s.Field(c.field)
		if !ok || f.Seq != c.field || f.Name != c.name || f.Type != c.typ || f.Repeats() != c.repeats {
			t.Errorf("%s %s-%d = %+v (found %v), want %q %s repeats=%v", c.version, c.id, c.field, f, ok, c.name, c.typ, c.repeats)
		}
	}
}

func TestStandardSegments(t *testing.T) {
	for _, id := range []string{"MSH", "PID", "PD1", "PV1", "OBX", "TXA", "SFT", "IAM"} {
		if !IsStandardSegment(id) {
			t.Errorf("%s is a standard segment", id)
		}
	}
	for _, id := range []string{"PDI", "ZZZ", "ZPD", "ED", "XYZ", ""} {
		if IsStandardSegment(id) {
			t.Errorf("%q is not a standard segment", id)
		}
		if _, ok := LookupSegment("2.5", id); ok {
			t.Errorf("LookupSegment(2.5, %q) found a definition", id)
		}
	}
	ids := StandardSegmentIDs()
	if len(ids) < 170 || !slices.IsSorted(ids) || !slices.Contains(ids, "PID") {
		t.Errorf("StandardSegmentIDs: %d ids, sorted %v", len(ids), slices.IsSorted(ids))
	}
	if n := MaxFieldCount("PID"); n != 40 {
		t.Errorf("MaxFieldCount(PID) = %d, want 40 (2.7.1 adds PID-40)", n)
	}
	if n := MaxFieldCount("ZZZ"); n != 0 {
		t.Errorf("MaxFieldCount(ZZZ) = %d", n)
	}
	if v := DefinedVersions(); !slices.Equal(v, []string{"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1"}) {
		t.Errorf("DefinedVersions = %v", v)
	}
	if DefinitionsSource() == "" {
		t.Error("no source named")
	}
}

func TestLookupType(t *testing.T) {
	x, ok := LookupType("2.5", "XPN")
	if !ok || x.Version != "2.5" {
		t.Fatalf("XPN: %+v %v", x, ok)
	}
	if c, ok := x.Component(1); !ok || c.Name != "Family Name" || c.Type != "FN" {
		t.Errorf("XPN.1 = %+v", c)
	}
	if _, ok := x.Component(99); ok {
		t.Error("XPN.99 found")
	}
	if st, ok := LookupType("2.5", "ST"); !ok || len(st.Components) != 0 || st.Name != "String Data" {
		t.Errorf("ST (primitive) = %+v %v", st, ok)
	}
	if _, ok := LookupType("2.5", "ZZZ"); ok {
		t.Error("ZZZ found")
	}
}

func TestVersionDistance(t *testing.T) {
	for _, c := range []struct {
		want, a, b string
		closer     bool
	}{
		{"2.8", "2.7.1", "2.3", true},
		{"2.5", "2.5", "2.5.1", true},
		{"2.5.1", "2.5.1", "2.5", true},
		{"2.4", "2.5", "2.3", true}, // a tie goes to the later version
		{"junk", "2.7.1", "2.7", true},
		{"", "2.3", "2.7.1", false},
	} {
		if got := closer(c.want, c.a, c.b); got != c.closer {
			t.Errorf("closer(%q, %q, %q) = %v", c.want, c.a, c.b, got)
		}
	}
}

func TestPathName(t *testing.T) {
	for _, c := range []struct{ version, path, want string }{
		{"2.5.1", "PID-5", "Patient Name"},
		{"2.5.1", "PID-5[2].1", "Patient Name / Family Name"},
		{"2.5.1", "PID-5.1.1", "Patient Name / Family Name / Surname"},
		{"2.5.1", "PID-3.4.1", "Patient Identifier List / Assigning Authority / Namespace ID"},
		{"2.8", "MSH-9.2", "Message Type / Trigger Event"},
		{"2.5", "PID-8.2", "Administrative Sex"}, // IS has no components: the field alone
		{"2.5", "OBX[2]-5", "Observation Value"},
		{"2.5", "ZPD-1", ""},
		{"2.5", "PID-99", ""},
	} {
		if got := PathName(c.version, MustPath(c.path)); got != c.want {
			t.Errorf("PathName(%s, %s) = %q, want %q", c.version, c.path, got, c.want)
		}
	}
}

func TestVersionNumber(t *testing.T) {
	for v, want := range map[string]int{"2.5.1": 20501, "2.5": 20500, " 2.8 ": 20800, "2.10": 21000, "2": -1, "2.5.1.1": -1, "2.x": -1, "": -1, "2..1": -1, "2.100": -1} {
		got, ok := versionNumber(v)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("versionNumber(%q) = %d, want %d", v, got, want)
		}
	}
}

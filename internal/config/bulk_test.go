package config

import (
	"strings"
	"testing"
)

// The Bulk Data bounds of a FHIR source: defaults, sizes with units, and
// values out of range refused with the key's position.
func TestFHIRBulkBounds(t *testing.T) {
	const src = "sources:\n  fhir:\n    - name: ehrfhir\n      base_url: https://ehr.example/fhir/R4\n"
	c, err := Parse("c.yaml", []byte(src), lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Sources.FHIR[0]; s.BulkMaxLine != 16*MiB || s.BulkMaxFile != 8*GiB {
		t.Errorf("defaults: line %s file %s, want 16MiB and 8GiB", s.BulkMaxLine, s.BulkMaxFile)
	}
	c, err = Parse("c.yaml", []byte(src+"      bulk_max_line: 1MiB\n      bulk_max_file: 100GiB\n"), lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Sources.FHIR[0]; s.BulkMaxLine != MiB || s.BulkMaxFile != 100*GiB {
		t.Errorf("set: line %s file %s", s.BulkMaxLine, s.BulkMaxFile)
	}
	_, err = Parse("c.yaml", []byte(src+"      bulk_max_line: 1KiB\n      bulk_max_file: 2048GiB\n"), lookupTestEnv)
	if err == nil {
		t.Fatal("bounds out of range were accepted")
	}
	for _, want := range []string{"c.yaml:5:22: sources.fhir[0].bulk_max_line: must be between 64KiB and 1GiB",
		"c.yaml:6:22: sources.fhir[0].bulk_max_file: must be between 1MiB and 1024GiB"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

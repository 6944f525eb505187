package ehr

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// TestNewFHIRTarget checks that the target is built from its settings
// as written (the daemon used to copy them field by field into the
// target and build its auth itself).
func TestNewFHIRTarget(t *testing.T) {
	t.Setenv("EHRB_TEST_TARGET_TOKEN", "tok")
	ft, err := NewFHIRTarget(FHIRTargetConfig{BaseURL: "https://ehr.example/fhir/R4", DocSystem: "urn:x", TypeCode: "11506-3",
		AuthConfig: fhirhttp.AuthConfig{Token: configvalue.SecretRef{Env: "EHRB_TEST_TARGET_TOKEN", Key: "token"}}})
	if err != nil {
		t.Fatal(err)
	}
	if ft.Base != "https://ehr.example/fhir/R4" || ft.DocSystem != "urn:x" || ft.TypeCode != "11506-3" || ft.Auth != fhirhttp.StaticToken("tok") {
		t.Errorf("NewFHIRTarget = %+v, want the settings as written", ft)
	}
	_, err = NewFHIRTarget(FHIRTargetConfig{BaseURL: "https://ehr.example/fhir/R4",
		AuthConfig: fhirhttp.AuthConfig{SMARTTokenURL: "https://ehr.example/token", SMARTClientID: "x", SMARTKeyFile: filepath.Join(t.TempDir(), "none.pem")}})
	if err == nil || !strings.HasPrefix(err.Error(), "smart_key_file: ") {
		t.Errorf("missing SMART key: error %v, want one naming smart_key_file", err)
	}
}

// problemList is a configvalue.Reporter that lists what it is told.
type problemList []string

func (p *problemList) Add(key, format string, args ...any) {
	*p = append(*p, key+": "+fmt.Sprintf(format, args...))
}
func (p *problemList) Show(_, text string) string { return text }
func (p *problemList) Readable(string, string)    {}

// TestFHIRSourceConfigValidate checks the defaults a source's settings
// get and the ranges they are held to.
func TestFHIRSourceConfigValidate(t *testing.T) {
	var c FHIRSourceConfig
	var got problemList
	c.Validate(&got)
	want := FHIRSourceConfig{Types: []string{"Patient", "Encounter", "Observation", "Condition", "AllergyIntolerance"}, PageSize: 100,
		Overlap: configvalue.Duration(60e9), Deletes: DeletesIgnore, BulkMaxLine: DefaultBulkMaxLine, BulkMaxFile: DefaultBulkMaxFile}
	if len(got) != 0 || !reflect.DeepEqual(c, want) {
		t.Errorf("defaults: %+v with problems %q, want %+v", c, got, want)
	}
	c = FHIRSourceConfig{Types: []string{"patient"}, PageSize: 1001, Overlap: -1, Deletes: "purge", BulkMaxLine: 1, BulkMaxFile: 2 * 1024 * configvalue.GiB}
	got = nil
	c.Validate(&got)
	wantProbs := []string{`types[0]: "patient" is not a FHIR resource type like Patient`, "page_size: must be between 1 and 1000",
		"overlap: must be between 0s and 24h", "bulk_max_line: must be between 64KiB and 1GiB, got 1B",
		"bulk_max_file: must be between 1MiB and 1024GiB, got 2048GiB", `deletes: must be "ignore" or "inactivate", got "purge"`}
	if !reflect.DeepEqual([]string(got), wantProbs) {
		t.Errorf("problems:\n%q\nwant\n%q", got, wantProbs)
	}
}

// TestNewMLLPTarget checks that the MLLP target is built from
// writeback.target's settings as written (the daemon used to copy them
// into the target's own config and build the TLS configuration itself).
func TestNewMLLPTarget(t *testing.T) {
	mt, err := NewMLLPTarget(MLLPTargetConfig{MLLP: "ehr.example:2575", MLLPMaxBackoff: configvalue.Duration(5e9),
		TLS: &configvalue.TLSClient{ServerName: "ehr.example", MinVersion: "1.3"}})
	if err != nil {
		t.Fatal(err)
	}
	c := mt.Client
	if c.Addr != "ehr.example:2575" || c.MaxBackoff != 5e9 || c.TLSConfig == nil || c.TLSConfig.ServerName != "ehr.example" || c.TLSConfig.MinVersion != 0x0304 {
		t.Errorf("client = %+v, want the settings as written", c)
	}
	if mt, err := NewMLLPTarget(MLLPTargetConfig{MLLP: "127.0.0.1:2575"}); err != nil || mt.Client.TLSConfig != nil {
		t.Errorf("without tls: %v, %v; want plain TCP", mt, err)
	}
	_, err = NewMLLPTarget(MLLPTargetConfig{MLLP: "ehr.example:2575", TLS: &configvalue.TLSClient{CAFile: filepath.Join(t.TempDir(), "none.pem")}})
	if err == nil || !strings.HasPrefix(err.Error(), "tls: CA file: ") {
		t.Errorf("missing CA file: %v, want an error naming it", err)
	}
}

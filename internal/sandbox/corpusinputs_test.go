package sandbox

import (
	"encoding/json"
	"testing"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// CorpusInputs is corpusInputs for the sandbox_test package.
var CorpusInputs = corpusInputs

// corpusInputs are the inputs the corpus-against-schema tests map: every
// message of the shared HL7 v2 corpus and of hl7/testdata/wild, and of
// the FHIR R4 corpus up to perType resources of each type mapped accepts
// per file (Synthea bundles repeat the same resource shapes thousands of
// times: that keeps the tests quick and every shape in).
func corpusInputs(t *testing.T, perType int, mapped map[string]bool) []mappings.Input {
	t.Helper()
	var inputs []mappings.Input
	for _, f := range shared.CorpusFiles(t) {
		ins, err := mappings.ParseInput(f.Data)
		if err != nil {
			continue // malformed on purpose; the hl7 and fhir tests cover them
		}
		seen := map[string]int{}
		for _, in := range ins {
			if in.FHIR != nil {
				var r struct {
					ResourceType string `json:"resourceType"`
				}
				_ = json.Unmarshal(in.FHIR, &r)
				if !mapped[r.ResourceType] {
					continue // the set accepts no other resource
				}
				if seen[r.ResourceType]++; seen[r.ResourceType] > perType {
					continue
				}
			}
			inputs = append(inputs, in)
		}
	}
	files := shared.WildFiles(t)
	for _, n := range shared.WildNames(files) {
		for _, raw := range shared.SplitMessages(files[n]) {
			if m, err := hl7.Parse(raw); err == nil {
				inputs = append(inputs, mappings.Input{HL7: m})
			}
		}
	}
	return inputs
}

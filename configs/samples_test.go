package configs

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// TestFHIRSamplesComeFromTheCorpus: the FHIR resources the shipped mapping
// tests read (copied here so that an installed set's tests run without
// ../shared) are resources of the public corpus, unchanged.
func TestFHIRSamplesComeFromTheCorpus(t *testing.T) {
	type key struct{ typ, id string }
	corpus := map[key][]map[string]any{}
	root := shared.Path(t, "corpus", "fhir-r4")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var doc struct {
			ResourceType string `json:"resourceType"`
			Entry        []struct {
				Resource map[string]any `json:"resource"`
			} `json:"entry"`
		}
		if json.Unmarshal(data, &doc) != nil {
			return nil // not JSON a sample could come from
		}
		var resources []map[string]any
		if doc.ResourceType == "Bundle" {
			for _, e := range doc.Entry {
				resources = append(resources, e.Resource)
			}
		} else {
			var r map[string]any
			_ = json.Unmarshal(data, &r)
			resources = append(resources, r)
		}
		for _, r := range resources {
			k := key{typ: str(r["resourceType"]), id: str(r["id"])}
			corpus[k] = append(corpus[k], r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	samples, _ := filepath.Glob(filepath.Join("samples", "fhir", "*.json"))
	if len(samples) < 5 {
		t.Fatalf("%d FHIR samples, want at least 5 (Patient, Encounter, Observation, Condition, AllergyIntolerance)", len(samples))
	}
	for _, f := range samples {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r map[string]any
		if err := json.Unmarshal(data, &r); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		found := false
		for _, c := range corpus[key{typ: str(r["resourceType"]), id: str(r["id"])}] {
			found = found || reflect.DeepEqual(c, r)
		}
		if !found {
			t.Errorf("%s (%s/%s) is not a resource of ../shared/corpus/fhir-r4, unchanged", f, str(r["resourceType"]), str(r["id"]))
		}
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

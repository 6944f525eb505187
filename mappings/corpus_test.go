package mappings_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// TestShippedSetsOnCorpus maps every public corpus message and FHIR
// resource with each shipped set. Every message is either mapped, not
// accepted, or refused with a *mappings.Error naming no patient data; the
// ADT, ORU and SIU messages of the sets' triggers produce ops; and every
// op has an object, an action and a key.
func TestShippedSetsOnCorpus(t *testing.T) {
	root := shared.ModuleRoot(t)
	sets, _ := filepath.Glob(filepath.Join(root, "configs", "mappings", "*"))
	var inputs []struct {
		name string
		in   mappings.Input
	}
	for _, f := range shared.CorpusFiles(t) {
		ins, err := mappings.ParseInput(f.Data)
		if err != nil {
			continue // the corpus's malformed cases; the hl7 tests cover them
		}
		// Large Synthea bundles repeat the same resource shapes: the first
		// entries of each file are enough, and keep the test quick.
		if len(ins) > 12 {
			ins = ins[:12]
		}
		for _, in := range ins {
			inputs = append(inputs, struct {
				name string
				in   mappings.Input
			}{f.Rel, in})
		}
	}
	if len(inputs) < 2000 {
		t.Fatalf("only %d corpus inputs found", len(inputs))
	}
	for _, dir := range sets {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		set, err := mappings.Load([]string{dir}, mappings.Options{Zone: time.UTC})
		if err != nil {
			t.Fatalf("%s does not lint:\n%v", dir, err)
		}
		if set.Mappings[0].Output() == mappings.OutputHL7 {
			continue // write-back's outbound mappings; the corpus is inbound
		}
		mapped := map[string]int{}
		failed := 0
		for _, c := range inputs {
			res, err := set.Map(c.in)
			if err != nil {
				var me *mappings.Error
				if !errors.As(err, &me) {
					t.Errorf("%s: %s: error of type %T: %v", filepath.Base(dir), c.name, err, err)
				}
				failed++
				continue
			}
			for _, op := range res.Ops {
				if op.Object == "" || op.Key == "" || op.KeyField == "" || op.Action == "" {
					t.Errorf("%s: %s: incomplete op %+v", filepath.Base(dir), c.name, op)
				}
			}
			if len(res.Ops) > 0 {
				mapped[kindOf(c.in)]++
			}
		}
		t.Logf("%s: %d inputs, mapped %v, %d refused with an error", filepath.Base(dir), len(inputs), mapped, failed)
		for _, k := range []string{"ADT", "ORU", "SIU", "Patient", "Encounter", "Observation", "Condition"} {
			if mapped[k] == 0 {
				t.Errorf("%s: no %s input of the corpus was mapped", filepath.Base(dir), k)
			}
		}
	}
}

func kindOf(in mappings.Input) string {
	if in.HL7 != nil {
		return in.HL7.Header().Type
	}
	s := string(in.FHIR)
	i := strings.Index(s, `"resourceType"`)
	if i < 0 {
		return ""
	}
	rest := s[i+len(`"resourceType"`):]
	rest = strings.TrimLeft(rest, " :\t\n\"")
	if j := strings.IndexByte(rest, '"'); j >= 0 {
		return rest[:j]
	}
	return ""
}

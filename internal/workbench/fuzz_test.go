package workbench_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/workbench"
)

// FuzzTree feeds arbitrary bytes to Trees, seeded with the corpus's small
// HL7 and FHIR files: never a panic, and a tree's leaves are Walk's values
// of the message hl7 reads from the same bytes.
func FuzzTree(f *testing.F) {
	seeds := 0
	for _, c := range shared.CorpusFiles(f) {
		if len(c.Data) > 4<<10 || (seeds > 40 && filepath.Ext(c.Rel) != ".hl7") {
			continue
		}
		f.Add(c.Data)
		seeds++
	}
	f.Add([]byte("MSH|^~\\&|A|B|C|D|2024||ADT^A01|X|P|2.8\rPID|1||1~~2^^^&&||\"\"\rZZ1|a&b^c\r"))
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","a":[[],{}]}}]}`))
	f.Add([]byte("MSH#^~\\&#A\rPID#1##a~b\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		trees, err := workbench.Trees(data)
		if err != nil || len(trees) == 0 || trees[0].Format != workbench.FormatHL7 {
			return
		}
		parts, err := hl7.Split(data)
		if err != nil || len(parts) != len(trees) {
			t.Fatalf("%d trees, Split gives %d messages (%v)", len(trees), len(parts), err)
		}
		for i, p := range parts {
			m, err := hl7.Parse(p)
			if err != nil {
				t.Fatalf("message %d has a tree but does not parse: %v", i+1, err)
			}
			var want, got []string
			m.Walk(func(path string, v hl7.Value) bool {
				want = append(want, path+"="+v.String())
				return true
			})
			for _, n := range trees[i].Leaves() {
				got = append(got, n.Path+"="+n.Value)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("message %d: leaves\n%q\nWalk\n%q", i+1, got, want)
			}
		}
	})
}

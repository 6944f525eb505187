package workbench_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/internal/workbench"
)

// Every corpus HL7 file that hl7 reads gives one tree per message, whose
// leaves are exactly Message.Walk's paths and values (what hl7 show and
// mappings address); files hl7 refuses give an error, not a panic.
func TestTreeCorpusMatchesWalk(t *testing.T) {
	files, refused, messages := 0, 0, 0
	versions := map[string]int{}
	for _, f := range shared.CorpusFiles(t) {
		if filepath.Ext(f.Rel) != ".hl7" {
			continue
		}
		files++
		trees, err := workbench.Trees(f.Data)
		parts, serr := hl7.Split(f.Data)
		var msgs []*hl7.Message
		perr := serr
		for _, p := range parts {
			if perr != nil {
				break
			}
			var m *hl7.Message
			m, perr = hl7.Parse(p)
			msgs = append(msgs, m)
		}
		if perr != nil || len(parts) == 0 {
			if err == nil {
				t.Errorf("%s: hl7 refuses it (%v) but Trees did not", f.Rel, perr)
			} else if tok := quotedPIDValue(f.Data, err.Error()); tok != "" {
				t.Errorf("%s: the error quotes the PID value %q: %v", f.Rel, tok, err)
			}
			refused++
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", f.Rel, err)
			continue
		}
		if len(trees) != len(msgs) {
			t.Fatalf("%s: %d trees for %d messages", f.Rel, len(trees), len(msgs))
		}
		for i, m := range msgs {
			messages++
			var want []string
			m.Walk(func(path string, v hl7.Value) bool {
				want = append(want, path+"="+v.String())
				return true
			})
			var got []string
			for _, n := range trees[i].Leaves() {
				got = append(got, n.Path+"="+n.Value)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s message %d: tree leaves differ from Walk (%d vs %d values)", f.Rel, i+1, len(got), len(want))
			}
			versions[trees[i].Version]++
		}
	}
	t.Logf("%d files, %d messages, %d refused; versions %v", files, messages, refused, versions)
	if files < 200 || messages < 200 {
		t.Fatalf("only %d corpus files, %d messages", files, messages)
	}
	if refused == 0 {
		t.Error("no corpus file was refused: the malformed cases were not covered")
	}
}

// Standard fields are named from the message's own version (or, for 2.8,
// from 2.7.1 with a note), for every version the definitions cover. The
// corpus has 2.3, 2.4, 2.5, 2.5.1, 2.6 and 2.8 messages; 2.7 is a corpus
// message with MSH-12 rewritten.
func TestTreeNamesPerVersion(t *testing.T) {
	byVersion := map[string][]byte{}
	for _, f := range shared.CorpusFiles(t) {
		if filepath.Ext(f.Rel) != ".hl7" {
			continue
		}
		tr, err := workbench.Tree(f.Data)
		if err != nil || byVersion[tr.Version] != nil || !hasPID5(tr) {
			continue
		}
		byVersion[tr.Version] = f.Data
	}
	for _, v := range []string{"2.3", "2.4", "2.5", "2.5.1", "2.6", "2.8"} {
		if byVersion[v] == nil {
			t.Errorf("the corpus has no readable %s message with PID-5", v)
		}
	}
	base := byVersion["2.5.1"]
	for _, v := range []string{"2.7"} {
		m, err := hl7.Parse(normalise(base))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Set(hl7.MustPath("MSH-12"), v); err != nil {
			t.Fatal(err)
		}
		byVersion[v] = m.Bytes()
	}
	for _, v := range []string{"2.3", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"} {
		tr, err := workbench.Tree(byVersion[v])
		if err != nil {
			t.Errorf("%s: %v", v, err)
			continue
		}
		named := v
		if v == "2.8" {
			named = "2.7.1"
			if tr.NamesNote != `names from HL7 2.7.1 definitions (MSH-12 is "2.8")` {
				t.Errorf("2.8: note %q", tr.NamesNote)
			}
		} else if tr.NamesNote != "" {
			t.Errorf("%s: named by its own version, yet the note says %q", v, tr.NamesNote)
		}
		if tr.NamesVersion != named {
			t.Errorf("%s: names from %q, want %q", v, tr.NamesVersion, named)
		}
		want := map[string]string{
			"MSH":     "Message Header",
			"MSH-9":   "Message Type",
			"MSH-9.1": "Message Type / ",
			"PID":     "Patient Identification",
			"PID-5":   "Patient Name",
			"PID-5.1": "Patient Name / ",
		}
		found := map[string]*workbench.Node{}
		walk(tr.Nodes, func(n *workbench.Node) {
			p := strings.Split(n.Path, "[")[0] // PID-5[1].1 as PID-5
			if i := strings.Index(n.Path, "]"); i > 0 {
				p += n.Path[i+1:]
			}
			if _, ok := want[p]; ok && found[p] == nil {
				found[p] = n
			}
		})
		for path, prefix := range want {
			n := found[path]
			if n == nil {
				t.Errorf("%s: no node %s", v, path)
				continue
			}
			name := strings.ToLower(n.Name)
			if !strings.HasPrefix(name, strings.ToLower(prefix)) || strings.HasSuffix(prefix, " ") && name == strings.ToLower(prefix) {
				t.Errorf("%s: %s is named %q, want %q...", v, path, n.Name, prefix)
			}
			if n.Kind == workbench.KindSegment && n.NamedBy != named {
				t.Errorf("%s: segment %s named by %q, want %q", v, path, n.NamedBy, named)
			}
		}
		if found["PID-5"] != nil && found["PID-5"].Type != "XPN" {
			t.Errorf("%s: PID-5 has type %q, want XPN", v, found["PID-5"].Type)
		}
	}
}

// quotedPIDValue returns a PID value (a token of five characters or
// more: names, ids, birth dates) that text quotes, or "".
func quotedPIDValue(data []byte, text string) string {
	for _, line := range strings.FieldsFunc(string(data), func(r rune) bool { return r == '\r' || r == '\n' }) {
		if !strings.HasPrefix(line, "PID|") {
			continue
		}
		for _, tok := range strings.FieldsFunc(line, func(r rune) bool { return strings.ContainsRune("|^~&", r) }) {
			if len(tok) >= 5 && strings.Contains(text, tok) {
				return tok
			}
		}
	}
	return ""
}

func hasPID5(tr *workbench.MessageTree) bool {
	for _, n := range tr.Leaves() {
		if strings.HasPrefix(n.Path, "PID-5") {
			return true
		}
	}
	return false
}

func normalise(b []byte) []byte {
	s := strings.ReplaceAll(strings.ReplaceAll(string(b), "\r\n", "\r"), "\n", "\r")
	return []byte(strings.TrimSpace(s))
}

func walk(ns []*workbench.Node, fn func(*workbench.Node)) {
	for _, n := range ns {
		fn(n)
		walk(n.Children, fn)
	}
}

// The levels of the tree, repetitions, subcomponents, explicit nulls,
// formatting escapes and an unnamed Z segment.
func TestTreeLevels(t *testing.T) {
	msg := "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|M1|P|2.5.1\r" +
		"PID|1||111^^^H&1.2.3&ISO^MR~222^^^X^PI||\"\"||19800101|M|||a\\.br\\b\r" +
		"ZPD|1|VIP\r"
	tr, err := workbench.Tree([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Format != workbench.FormatHL7 || tr.Type != "ADT^A01" || tr.Version != "2.5.1" {
		t.Errorf("header: %+v", tr)
	}
	if len(tr.Nodes) != 3 {
		t.Fatalf("%d segments, want 3", len(tr.Nodes))
	}
	pid := tr.Nodes[1]
	var pid3 *workbench.Node
	for _, f := range pid.Children {
		if f.Path == "PID-3" {
			pid3 = f
		}
	}
	if pid3 == nil || pid3.Kind != workbench.KindField || len(pid3.Children) != 2 {
		t.Fatalf("PID-3: %+v", pid3)
	}
	rep2 := pid3.Children[1]
	if rep2.Kind != workbench.KindRepetition || rep2.Path != "PID-3[2]" || rep2.Leaf {
		t.Errorf("PID-3[2]: %+v", rep2)
	}
	aa := pid3.Children[0].Children[1] // PID-3[1].4, components 2 and 3 are empty
	if aa.Path != "PID-3[1].4" || aa.Kind != workbench.KindComponent || aa.Type != "HD" || len(aa.Children) != 3 {
		t.Fatalf("PID-3[1].4: %+v", aa)
	}
	if s := aa.Children[1]; s.Path != "PID-3[1].4.2" || s.Value != "1.2.3" || !s.Leaf ||
		s.Name != "Patient Identifier List / Assigning Authority / Universal ID" {
		t.Errorf("PID-3[1].4.2: %+v", s)
	}
	leaves := map[string]*workbench.Node{}
	for _, n := range tr.Leaves() {
		leaves[n.Path] = n
	}
	if n := leaves["PID-5"]; n == nil || !n.Null || n.Name != "Patient Name" {
		t.Errorf("PID-5 explicit null: %+v", n)
	}
	if n := leaves["PID-11"]; n == nil || n.Value != `a\.br\b` || n.Text == nil || *n.Text != "a\nb" {
		t.Errorf("PID-11 formatting: %+v", n)
	}
	if n := leaves["PID-8"]; n == nil || n.Text != nil || n.Value != "M" {
		t.Errorf("PID-8: %+v", n)
	}
	z := tr.Nodes[2]
	if z.Name != "" || z.NamedBy != "" || leaves["ZPD-2"] == nil || leaves["ZPD-2"].Name != "" {
		t.Errorf("Z segment named: %+v", z)
	}
	if _, err := json.Marshal(tr); err != nil {
		t.Errorf("tree does not encode as JSON: %v", err)
	}
}

func TestTreeErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":           "  \n",
		"not hl7":         "hello",
		"two messages":    "MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\rPID|2\r",
		"bad hl7":         "MSH|^~\\&|A\rP\x00D|VIP\r",
		"bad json":        `{"resourceType": "Patient", "id": }`,
		"no resourceType": `{"id": "1"}`,
		"trailing data":   `{"resourceType": "Patient"} {}`,
		"deep json":       `{"resourceType":"Patient","x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`,
		"json type":       `{"resourceType": ["SECRETNAME"]}`,
		"json array":      `[1]`,
	} {
		t.Run(name, func(t *testing.T) {
			tr, err := workbench.Tree([]byte(in))
			if err == nil {
				t.Fatalf("no error; tree %+v", tr)
			}
			if name == "deep json" && !strings.Contains(err.Error(), "256 levels deep") {
				t.Errorf("deep JSON: %v", err)
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "VIP") {
				t.Errorf("error quotes the input: %v", err)
			}
		})
	}
	big := make([]byte, workbench.MaxInput+1)
	if _, err := workbench.Tree(big); err == nil {
		t.Error("an input over MaxInput is accepted")
	}
}

// A FHIR resource is a tree of JSON paths in the order written.
func TestTreeFHIR(t *testing.T) {
	in := `{"resourceType":"Patient","id":"p1","name":[{"family":"Doe","given":["A","B"]}],"active":true,"deceasedBoolean":null,"multipleBirthInteger":2,"odd key":1}`
	tr, err := workbench.Tree([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Format != workbench.FormatFHIR || tr.Type != "Patient" || len(tr.Nodes) != 1 || tr.Nodes[0].Kind != workbench.KindObject {
		t.Fatalf("tree: %+v", tr)
	}
	var got []string
	for _, n := range tr.Leaves() {
		got = append(got, n.Path+"="+n.Value)
	}
	want := "Patient.resourceType=Patient Patient.id=p1 Patient.name[0].family=Doe Patient.name[0].given[0]=A " +
		"Patient.name[0].given[1]=B Patient.active=true Patient.deceasedBoolean= Patient.multipleBirthInteger=2 Patient.`odd key`=1"
	if strings.Join(got, " ") != want {
		t.Errorf("leaves\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	for _, n := range tr.Leaves() {
		if n.Path == "Patient.deceasedBoolean" && (!n.Null || n.Kind != workbench.KindNull) {
			t.Errorf("null: %+v", n)
		}
	}
	// Every corpus resource gives a tree.
	count := 0
	for _, f := range shared.CorpusFiles(t) {
		if filepath.Ext(f.Rel) == ".hl7" || len(f.Data) > 2<<20 {
			continue
		}
		if _, err := workbench.Tree(f.Data); err != nil {
			t.Errorf("%s: %v", f.Rel, err)
		}
		count++
	}
	if count < 50 {
		t.Errorf("only %d FHIR corpus files", count)
	}
}

// BenchmarkTree builds the tree of an ADT^A01 of about 1 KB, the record
// view's work per revealed message.
func BenchmarkTree(b *testing.B) {
	msg := []byte("MSH|^~\\&|EPIC|HOSP|CRM|HOSP|20240101120000||ADT^A01^ADT_A01|M1|P|2.5.1\r" +
		"EVN|A01|20240101120000\r" +
		"PID|1||123^^^HOSP&1.2.3&ISO^MR~456^^^SSA^SS||DOE^JOHN^Q^JR^^^L~DOE^JACK^^^^^A||19800101|M|||1 MAIN ST^APT 2^SPRINGFIELD^IL^62701^USA^H||555-0101^PRN^PH~^NET^Internet^john@example.org|||M||ACCT1|\r" +
		"PV1|1|I|WARD^101^A^HOSP||||1234^SMITH^ANNA^^^DR|||MED||||1|||1234^SMITH^ANNA^^^DR|IN||||||||||||||||||||||||20240101120000\r" +
		"AL1|1|DA|1545^PENICILLIN^RXNORM|SV|RASH\r" +
		"DG1|1||I10^Hypertension^I10|||A\r" +
		"OBX|1|NM|8867-4^Heart rate^LN||72|/min|60-100|N|||F\r")
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := workbench.Tree(msg); err != nil {
			b.Fatal(err)
		}
	}
}

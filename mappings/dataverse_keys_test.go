package mappings_test

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// dataverseForbidden are the characters with which a Dataverse
// alternate-key value cannot address a row (Microsoft Learn, "Define
// alternate keys using Power Apps"; crm-metadata connector_checks DV-5).
const dataverseForbidden = `/#<>*%&:\?+`

// TestKeySafe: the escaping is exactly of the forbidden characters and
// '~', deterministic, reversible, and so never gives two values one key.
func TestKeySafe(t *testing.T) {
	for in, want := range map[string]string{
		"GHH|555":                        "GHH|555",
		"GLU/CIT":                        "GLU~2FCIT",
		`/#<>*%&:\?+~`:                   "~2F~23~3C~3E~2A~25~26~3A~5C~3F~2B~7E",
		"urn:oid:2.16.840.1.113883.19.5": "urn~3Aoid~3A2.16.840.1.113883.19.5",
		"a~2Fb":                          "a~7E2Fb",
		"HOSP^2.16.840.1^ISO|M'1 é":      "HOSP^2.16.840.1^ISO|M'1 é",
		"":                               "",
	} {
		got := mappings.KeySafe(in)
		if got != want {
			t.Errorf("KeySafe(%q) = %q, want %q", in, got, want)
		}
		if back := mappings.KeyUnsafe(got); back != in {
			t.Errorf("KeyUnsafe(%q) = %q, want %q", got, back, in)
		}
	}
	// "a/b" and the literal text "a~2Fb" must not collide.
	if mappings.KeySafe("a/b") == mappings.KeySafe("a~2Fb") {
		t.Error("two values give one key")
	}
	rng := rand.New(rand.NewSource(26))
	alphabet := []rune("ab|^~/#<>*%&:\\?+2F7E é")
	seen := map[string]string{}
	for i := 0; i < 20000; i++ {
		r := make([]rune, rng.Intn(8))
		for j := range r {
			r[j] = alphabet[rng.Intn(len(alphabet))]
		}
		in := string(r)
		out := mappings.KeySafe(in)
		if strings.ContainsAny(out, dataverseForbidden) {
			t.Fatalf("KeySafe(%q) = %q holds a forbidden character", in, out)
		}
		if prev, ok := seen[out]; ok && prev != in {
			t.Fatalf("%q and %q both give %q", prev, in, out)
		}
		seen[out] = in
		if mappings.KeyUnsafe(out) != in {
			t.Fatalf("round trip of %q: %q", in, mappings.KeyUnsafe(out))
		}
	}
}

// TestDataverseKeysOnCorpus maps the public corpus and the wild corpus
// with the dynamics set: no op key and no reference key holds a character
// Dataverse cannot address a row by. The corpus has values that do
// (GLU/CIT lab codes, URL identifier systems), so some keys come out
// escaped, and each unescapes to a key with such a character.
func TestDataverseKeysOnCorpus(t *testing.T) {
	set := loadWildSet(t, "dynamics")
	var inputs []mappings.Input
	for _, f := range shared.CorpusFiles(t) {
		ins, err := mappings.ParseInput(f.Data)
		if err != nil {
			continue
		}
		if len(ins) > 12 {
			ins = ins[:12] // as TestShippedSetsOnCorpus: the first entries of a bundle
		}
		inputs = append(inputs, ins...)
	}
	for _, w := range wildMessages(t) {
		inputs = append(inputs, mappings.Input{HL7: w.msg})
	}
	keys, escaped := 0, 0
	check := func(what, key string) {
		keys++
		if strings.ContainsAny(key, dataverseForbidden) {
			t.Errorf("%s key holds a character Dataverse cannot address a row by (value not shown)", what)
		}
		if strings.ContainsAny(mappings.KeyUnsafe(key), dataverseForbidden) {
			escaped++
		}
	}
	for _, in := range inputs {
		res, err := set.Map(in)
		if err != nil {
			continue // refusals are TestShippedSetsOnCorpus's and TestWildKeys's
		}
		for _, op := range res.Ops {
			check(op.Object+"."+op.KeyField, op.Key)
			for _, f := range op.Fields {
				if f.Value.Kind == mappings.Ref {
					check(op.Object+"."+f.Name+" reference", f.Value.Ref.Key)
				}
			}
		}
	}
	t.Logf("%d inputs, %d keys, %d of them escaped", len(inputs), keys, escaped)
	if keys < 2000 || escaped == 0 {
		t.Errorf("%d keys, %d escaped: the corpus should give keys with forbidden characters to escape", keys, escaped)
	}
}

package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors/dynamics"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// TestDynamicsCorpusAgainstSchema is the proof that the shipped
// Dataverse set sends nothing the published metadata rejects: every
// message of the shared HL7 v2 corpus, of hl7/testdata/wild and (up to 4
// of each accepted type per file) every resource of the FHIR R4 corpus is
// mapped through configs/mappings/dynamics, and each op, rendered as
// connectors/dynamics' Sink renders it, is checked against dvschema.json
// as the sandbox checks a write that may create (dvColumns, without
// looking up the rows references point at): the table known, every column
// known, every @odata.bind a navigation property of the table pointing at
// the referenced table, option values in their option sets, text within
// MaxLength, numbers within range; the op's key and every reference's key
// an alternate key of its table (Keys) whose values Dataverse can address
// a row by. Findings are counted by mapping, table and column, never by
// value.
func TestDynamicsCorpusAgainstSchema(t *testing.T) {
	const perType = 4
	mapped := map[string]bool{"Patient": true, "Encounter": true, "Observation": true, "Condition": true, "AllergyIntolerance": true}
	set, err := mappings.Load([]string{filepath.Join(shared.ModuleRoot(t), "configs", "mappings", "dynamics")}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	inputs := corpusInputs(t, perType, mapped)
	st := newStore(time.Now)
	schema := st.dvTables()
	isKey := func(table, col string) bool {
		ts := schema.tables[strings.ToLower(table)]
		if ts == nil {
			return false
		}
		for _, k := range ts.def.Keys {
			if len(k.KeyAttributes) == 1 && strings.EqualFold(k.KeyAttributes[0], col) {
				return true
			}
		}
		return false
	}
	findings := map[string]int{}
	ops, checked := 0, map[string]bool{}
	for _, in := range inputs {
		res, err := set.Map(in)
		if err != nil {
			var me *mappings.Error
			if !errors.As(err, &me) {
				t.Errorf("error of type %T", err)
			}
			continue // refused with a reason (a dead letter), nothing sent
		}
		for _, op := range res.Ops {
			ops++
			table := strings.ToLower(op.Object)
			checked[table] = true
			where := fmt.Sprintf("%s op %s (%s)", op.Mapping, table, op.Action)
			if schema.tables[table] == nil {
				findings[where+": table not in dvschema.json"]++
				continue
			}
			if !isKey(table, op.KeyField) {
				findings[fmt.Sprintf("%s: key %s is not an alternate key of the table", where, op.KeyField)]++
			}
			if strings.ContainsAny(op.Key, keyUnaddressable) {
				findings[fmt.Sprintf("%s: key %s holds a character Dataverse cannot address a row by", where, op.KeyField)]++
			}
			if op.Action == mappings.Delete {
				continue
			}
			// The body as connectors/dynamics' Sink.fields renders it.
			body := Record{}
			for _, f := range op.Fields {
				switch v := f.Value; v.Kind {
				case mappings.Ref:
					if !isKey(v.Ref.Object, v.Ref.KeyField) {
						findings[fmt.Sprintf("%s: reference %s by %s.%s, not an alternate key", where, f.Name, strings.ToLower(v.Ref.Object), v.Ref.KeyField)]++
					}
					body[f.Name+"@odata.bind"] = "/" + dynamics.Plural(strings.ToLower(v.Ref.Object)) + dynamics.KeyPredicate(strings.ToLower(v.Ref.KeyField), v.Ref.Key)
				case mappings.Null:
					body[f.Name] = nil
				case mappings.Number:
					var n float64
					if json.Unmarshal([]byte(v.Text), &n) != nil {
						findings[fmt.Sprintf("%s: %s is not a JSON number", where, f.Name)]++
						continue
					}
					body[f.Name] = n
				case mappings.Bool:
					body[f.Name] = v.Text == "true"
				default:
					body[f.Name] = v.Text
				}
			}
			if op.Action == mappings.Upsert {
				body[strings.ToLower(op.KeyField)] = op.Key // an upsert that creates sets its key columns
			}
			// Each fault is reported, not only the first: check the
			// columns one at a time.
			tbl := st.dvTable(table, true)
			for _, name := range sortedKeys(body) {
				if _, derr := st.dvColumns(tbl, Record{name: body[name]}, false); derr != nil {
					col := strings.TrimSuffix(name, "@odata.bind")
					findings[fmt.Sprintf("%s: %s %s: %s", where, col, derr.Code, scrub(derr.Message))]++
				}
			}
		}
	}
	t.Logf("%d inputs, %d ops on %d tables checked", len(inputs), ops, len(checked))
	if ops < 5000 || len(checked) < 6 {
		t.Errorf("only %d ops on %v: the corpus did not reach every table", ops, checked)
	}
	keys := make([]string, 0, len(findings))
	for k := range findings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Errorf("%s: %d ops", k, findings[k])
	}
}

// scrub keeps the part of a sandbox error that names the rule: the
// texts name columns and metadata, never values, so they can be counted.
func scrub(msg string) string {
	if i := strings.Index(msg, "InnerException : "); i >= 0 {
		msg = msg[i+len("InnerException : "):]
	}
	return msg
}

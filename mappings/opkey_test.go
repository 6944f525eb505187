package mappings

import (
	"strings"
	"testing"
)

// opkey() writes the op's key, exactly as sent (escaped as keys are), to
// a second field: the Health Cloud set's SourceSystemIdentifier beside
// the External ID it upserts by. A concat() of the same parts outside key
// position would not escape the MRN's "|" and would differ.
func TestOpKeyIsTheKeyAsSent(t *testing.T) {
	m := mapping(t, `when: {hl7: ADT}
ops:
  - id: patient
    object: Account
    key_field: EHR_Patient_Key__c
    key: concat(PID-3.4, "|", PID-3.1)
    fields:
      SourceSystemIdentifier: opkey()
      Plain: concat(PID-3.4, "|", PID-3.1)
`)
	ops, err := m.Map(Input{HL7: parse(t, adtWithPID(`B\F\C^^^HOSP^MR`))})
	if err != nil || len(ops) != 1 {
		t.Fatalf("ops %v, err %v", ops, err)
	}
	op := ops[0]
	var ssi, plain string
	for _, f := range op.Fields {
		switch f.Name {
		case "SourceSystemIdentifier":
			ssi = f.Value.Text
		case "Plain":
			plain = f.Value.Text
		}
	}
	if op.Key != `HOSP|B\F\C` || ssi != op.Key {
		t.Errorf("key %q, SourceSystemIdentifier %q: want both HOSP|B\\F\\C", op.Key, ssi)
	}
	if plain == op.Key {
		t.Errorf("concat outside key position gave the key %q: the test no longer shows why opkey() exists", plain)
	}

	// Outside an op's fields it is an error, not an empty value.
	bad := mapping(t, `when: {hl7: ADT}
ops:
  - id: patient
    object: Account
    key_field: K
    key: concat(PID-3.4, "|", opkey())
    fields: {N: PID-5.1}
`)
	if _, err := bad.Map(Input{HL7: parse(t, adtWithPID("1^^^HOSP^MR"))}); err == nil || !strings.Contains(err.Error(), "opkey()") {
		t.Errorf("opkey() in a key: err %v", err)
	}
}

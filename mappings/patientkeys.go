package mappings

import (
	"encoding/json"
	"strings"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// PatientLaneKeys returns the lane keys the set gives a patient with this
// medical record number from this assigning authority, for a search of
// the checkpoint log's patient index: the set's lane: applied to a
// minimal HL7 v2 ADT message whose PID-3 carries the identifier (with and
// without the MR type code) and to a minimal FHIR Patient with it, so
// that the typed identifier is normalised exactly as the messages' own
// identifiers were. The authority is typed as PID-3.4 carries it: a
// namespace ("GOOD HEALTH HOSPITAL"), or namespace, universal id and its
// type joined by "^" or "&" ("test1^2.16.1^HCD"). A blank MRN or
// authority gives none: blank parts are no identity.
func (s *Set) PatientLaneKeys(authority, mrn string) []string {
	authority, mrn = strings.TrimSpace(authority), strings.TrimSpace(mrn)
	if s == nil || authority == "" || mrn == "" {
		return nil
	}
	d := hl7.DefaultDelimiters
	// The authority's parts are subcomponents of PID-3.4.
	var parts []string
	for _, p := range strings.FieldsFunc(authority, func(r rune) bool { return r == '^' || r == '&' }) {
		parts = append(parts, hl7.Escape(strings.TrimSpace(p), d))
	}
	hd := strings.Join(parts, "&")
	id := hl7.Escape(mrn, d)
	var out []string
	seen := map[string]bool{}
	add := func(in Input) {
		if k, err := s.Lane(in); err == nil && k != "" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, typeCode := range []string{"MR", ""} {
		raw := "MSH|^~\\&|EHRBRIDGE|SEARCH|EHRBRIDGE|SEARCH|20260101000000||ADT^A08^ADT_A01|SEARCH|P|2.5.1\r" +
			"EVN|A08|20260101000000\r" +
			"PID|1||" + id + "^^^" + hd + "^" + typeCode + "||SEARCH^PATIENT\r" +
			"PV1|1|O\r"
		if m, err := hl7.Parse([]byte(raw)); err == nil {
			add(Input{HL7: m})
		}
	}
	type coding struct {
		Code string `json:"code"`
	}
	patient := map[string]any{"resourceType": "Patient", "id": "search", "identifier": []any{map[string]any{
		"type": map[string]any{"coding": []coding{{Code: "MR"}}}, "system": authority, "value": mrn}}}
	if b, err := json.Marshal(patient); err == nil {
		add(Input{FHIR: b})
	}
	return out
}

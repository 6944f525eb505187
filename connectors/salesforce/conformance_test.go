package salesforce

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/connectortest"
	"github.com/ehrbridge/ehrbridge/internal/sandbox"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// The Salesforce sink passes the connector conformance suite against the
// sandbox.
func TestConformance(t *testing.T) {
	connectortest.Run(t, func(t *testing.T) connectortest.Target {
		r := newRig(t, sandbox.Options{})
		c := r.client(t, func(cfg *Config) { cfg.RetryMax = 2 })
		post := func(body string) {
			resp, err := http.Post(r.base+"/sandbox/v1/faults", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		return connectortest.Target{
			Sink:     &Sink{Client: c},
			Records:  func(object string) []map[string]any { return toMaps(r.sb.Records(object)) },
			Throttle: func(d time.Duration) { post(fmt.Sprintf(`{"request_limit_exceeded":true,"seconds":%g}`, d.Seconds())) },
			DropAnswers: func(ratio float64) {
				if ratio == 0 {
					r.clearFaults(t)
					return
				}
				post(fmt.Sprintf(`{"drop_after_commit_ratio":%g}`, ratio))
			},
			Unavailable: func(n int) { post(fmt.Sprintf(`{"status":503,"count":%d}`, n)) },
			Patient:     "Account", PatientKey: "EHR_Patient_Key__c", PatientText: "LastName",
			Encounter: "ClinicalEncounter", EncounterKey: "EHR_Encounter_Key__c", EncounterToPat: "PatientId",
			EncounterFields: []mappings.Field{{Name: "Category", Value: mappings.Str("Ambulatory")}},
			Invalid: func(key string) connectors.Op {
				// A person account without LastName: REQUIRED_FIELD_MISSING.
				return connectors.Op{Object: "Account", Action: mappings.Upsert, KeyField: "EHR_Patient_Key__c", Key: key,
					Fields: []mappings.Field{{Name: "FirstName", Value: mappings.Str("NoLastName")}}}
			},
			IDOf: func(rec map[string]any) string { s, _ := rec["Id"].(string); return s },
		}
	})
}

func toMaps(recs []sandbox.Record) []map[string]any {
	out := make([]map[string]any, len(recs))
	for i, r := range recs {
		out[i] = r
	}
	return out
}

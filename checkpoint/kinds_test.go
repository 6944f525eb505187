package checkpoint

import "testing"

// Kinds and state keys are stored in logs already written: their text is
// a contract with every log on disk and may not change.
func TestStoredKindsAndKeysAreStable(t *testing.T) {
	for got, want := range map[string]string{
		string(KindHL7v2):                                 "hl7v2",
		string(KindFHIR):                                  "fhir",
		string(KindFHIRDelete):                            "fhir-delete",
		string(KindNote):                                  "note",
		string(FHIRWatermarkKey("ehr", "Patient")):        "fhir|ehr|Patient|watermark",
		string(FHIRDeletesWatermarkKey("ehr", "Patient")): "fhir|ehr|Patient|deletes-watermark",
		string(FHIRBulkKey("ehr")):                        "fhir|ehr|bulk",
		string(FHIRAddressKey("ehr", "Encounter", "e1")):  "fhir|ehr|addr|Encounter/e1",
		string(FilingKey("00T1")):                         "writeback|filing|00T1",
		FHIRRecordKey("ehr", "Patient", "p1", "3"):        "fhir|ehr|Patient/p1/_history/3",
		FHIRHistoryPrefix("ehr", "Patient", "p1"):         "fhir|ehr|Patient/p1/_history/",
	} {
		if got != want {
			t.Errorf("%q, want %q: logs on disk hold the old text", got, want)
		}
	}
}

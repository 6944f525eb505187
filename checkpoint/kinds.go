package checkpoint

// RecordKind says what a record holds; the pipeline routes records by it.
// Every kind is declared here.
type RecordKind string

const (
	// KindHL7v2 is an HL7 v2 message (connectors/ehr's MLLP source).
	KindHL7v2 RecordKind = "hl7v2"
	// KindFHIR is a version of a FHIR resource (connectors/ehr's FHIR
	// source).
	KindFHIR RecordKind = "fhir"
	// KindFHIRDelete is a FHIR resource's deletion; its payload is
	// {"resourceType", "id"}.
	KindFHIRDelete RecordKind = "fhir-delete"
	// KindNote is a version of a CRM note to file in the EHR
	// (internal/writeback).
	KindNote RecordKind = "note"
)

// StateKey names an entry of the sources' state (SourceState). Every key
// is built by a function here, so that the parts that write and read one
// agree on it.
type StateKey string

// FHIRWatermarkKey is where FHIR source source keeps the last change time
// of resource type typ it has read.
func FHIRWatermarkKey(source, typ string) StateKey {
	return StateKey("fhir|" + source + "|" + typ + "|watermark")
}

// FHIRDeletesWatermarkKey is where FHIR source source keeps how far it has
// read typ's history for deletions.
func FHIRDeletesWatermarkKey(source, typ string) StateKey {
	return StateKey("fhir|" + source + "|" + typ + "|deletes-watermark")
}

// FHIRBulkKey is where FHIR source source keeps a Bulk Data export under
// way.
func FHIRBulkKey(source string) StateKey { return StateKey("fhir|" + source + "|bulk") }

// FHIRAddressKey is where the pipeline keeps the CRM records a FHIR
// resource (typ/id of source source) was written to, for its deletion.
func FHIRAddressKey(source, typ, id string) StateKey {
	return StateKey("fhir|" + source + "|addr|" + typ + "/" + id)
}

// FilingKey is where write-back keeps the filing state of CRM note noteID.
func FilingKey(noteID string) StateKey { return StateKey("writeback|filing|" + noteID) }

// FHIRHistoryPrefix is the common start of the record keys of every
// version of resource typ/id read by FHIR source source
// (FHIRRecordKey).
func FHIRHistoryPrefix(source, typ, id string) string {
	return "fhir|" + source + "|" + typ + "/" + id + "/_history/"
}

// FHIRRecordKey is the record key of version version of resource typ/id
// read by FHIR source source.
func FHIRRecordKey(source, typ, id, version string) string {
	return FHIRHistoryPrefix(source, typ, id) + version
}

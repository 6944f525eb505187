// Package ehr holds the EHR-facing connectors: the MLLP source, the FHIR
// source, and the write-back targets that file a note's MDM message in
// the EHR (connectors.EHRTarget): MLLPTarget (MDM^T02 over MLLP, waiting
// for the acknowledgments), FileDrop (an outbox directory the EHR's
// interface engine reads) and FHIRTarget (a DocumentReference on the
// EHR's FHIR server).
//
// The MLLP source receives HL7 v2 messages, validates their header,
// appends each valid one to the checkpoint log and answers only after
// that append was fsynced.
//
// Acknowledgments follow the message's mode (MSH-15/MSH-16, HL7 table
// 0155): one AA, AE or AR in original mode; in enhanced mode a commit
// acknowledgment (CA, CE, CR) and an application acknowledgment, each
// only when asked for. A record stores the acknowledgments sent (see
// EncodeAcks), so that a retransmit gets them again byte for byte.
//
// Record keys (RecordKey) hold the whole sending application and facility
// designators; LegacyRecordKey, the form before issue 25, is consulted
// for retransmits of records stored by earlier releases.
//
// Every frame that starts with "MSH" and a field separator is answered,
// with AR and ERR segments naming the problem when it cannot be
// accepted; only a frame without one is answered by closing the
// connection.
//
// The FHIR source (FHIRSource) takes FHIR R4 changes from an EHR's FHIR
// server (Bulk Data backfill, subscription notifications and deletes
// besides) by polling: per resource type, a search for what changed since the
// watermark (?_lastUpdated=gt...&_sort=_lastUpdated&_count=N), following
// link[next], each resource version appended to the checkpoint log (keyed
// by type/id/_history/versionId, so a version seen twice is one record),
// and the watermark, kept in the log, advanced only once a page is durable.
// The first poll of a type without a watermark loads everything: that is
// the backfill, and tailing goes on from where it ended, with no gap.
//
// Every URL the server supplies (link[next], a Bulk Data status or file
// URL, a notification's fullUrl) goes through fhirhttp.Client.Resolve
// before the token is sent there: resolved against the base and held to
// its origin and path.
package ehr

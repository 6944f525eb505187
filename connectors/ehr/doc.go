// Package ehr holds the EHR-facing connectors. Today that is the MLLP
// source: it receives HL7 v2 messages, validates their header and answers
// each with an acknowledgment.
//
// Until the checkpoint log exists (issue 3) an accepted message is
// acknowledged with AA and then dropped: nothing is stored or forwarded.
// The Intake hook is where the durable append will sit; the source sends AA
// only after Intake returns without error, and AE with a reason otherwise.
package ehr

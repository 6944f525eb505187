package connectors

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// EHRTarget files a note's MDM message in the EHR (ehr.MLLPTarget,
// ehr.FileDrop, ehr.FHIRTarget). Filing the same message again must not
// make a second document. A target whose sends can still reach the EHR
// after File returned without an answer also has InFlight() time.Duration
// (see write-back's filing state).
type EHRTarget interface {
	File(ctx context.Context, doc *Document) error
}

// Document is one note version ready to file: the MDM built for it and
// the facts a FHIR target needs.
type Document struct {
	Note *Note
	// ID is the document id (TXA-12): the prefix and the note id.
	ID string
	// Authority and MRN identify the patient; Visit the encounter ("" for
	// none); Author the EHR provider id ("" for none).
	Authority, MRN, Visit, Author string
	// MDM is the HL7 document: T02, or T10 replacing an earlier version.
	MDM *hl7.Message
}

// Rejected is an EHR's refusal of a document (MLLP AR, or CR at commit
// level; a FHIR error outcome): the note gets status Error with the text
// (for MLLP, the acknowledgment code and the EHR's text); retrying cannot
// help.
type Rejected struct{ Text string }

func (r *Rejected) Error() string { return "the EHR rejected the document" }

// Deferred is an EHR's AE (or CE at commit level): HL7 table 0008 "Application
// Error" / "Commit Error", the receiver could not process the message now
// (ehrbridge's own listener answers AE to mean "resend"). The note is retried
// with backoff, up to write-back's AEMaxAttempts answers, then it is dead and
// the note gets status Error with the last answer's code and text.
type Deferred struct {
	Code hl7.AckCode
	Text string
}

// Error names the code only: the text may quote the document.
func (d *Deferred) Error() string {
	return "the EHR answered " + string(d.Code) + " (could not file the document now); it will be resent"
}

// Held marks a note that cannot be resolved or filed yet (no patient
// with its identifier, no encounter, no author id): it is retried later.
// Reason names what is missing, never a value.
type Held struct{ Reason string }

func (e *Held) Error() string { return HeldPrefix + " " + e.Reason }

// HeldPrefix starts the checkpoint reason of a held note.
const HeldPrefix = "held:"

// HeldReason says whether a record's reason is a held note's: the one
// test of "held" for the write-back, the log commands and the console.
func HeldReason(reason string) bool { return strings.HasPrefix(reason, HeldPrefix) }

// Unreachable is a send to the EHR that got no answer: the connection was
// refused or lost, or no acknowledgment came in time. The note is retried,
// not before RetryAfter (when the client's backoff allows its next try).
type Unreachable struct {
	Err        error
	RetryAfter time.Duration
}

func (e *Unreachable) Error() string { return "the EHR did not answer: " + e.Err.Error() }

func (e *Unreachable) Unwrap() error { return e.Err }

// ErrUnconfirmable is returned for an MDM message whose MSH-15 and MSH-16
// are each NE or ER: such a message asks the EHR for no answer when it
// files the document (HL7 table 0155), so ehrbridge could never know that a
// note was filed. The note is dead-lettered; fix the MDM mapping.
var ErrUnconfirmable = errors.New("the MDM message asks the EHR for no acknowledgment on success (MSH-15 and MSH-16 each NE or ER); " +
	"write-back needs AL or SU in one of them to know that a note was filed")

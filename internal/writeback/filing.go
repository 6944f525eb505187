package writeback

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// The checkpoint log keeps, per note, what write-back sent to the EHR and
// what the EHR answered, so that whether an edit is a new document or a
// replacement never rests on the CRM's status field (written after the
// EHR's AA, lost when the daemon stops in between) or on comparing clocks
// (Dataverse's modifiedon has whole seconds). Kept under the note's CRM
// id, which is no patient data.
//
// A version whose send went without an answer (the daemon stopped while
// waiting, or no acknowledgment came) may or may not be filed. Before an
// edit of it goes out, that version is sent again, the same message with
// the same MSH-10 (a receiver that has it acknowledges the duplicate), so
// the edit is a replacement of a document the EHR surely holds, or a new
// document when the EHR answered that it never filed it; and the edit
// waits until the unanswered send can no longer reach the EHR, so the EHR
// never applies an older version after a newer one.

// filingKey is the note's source-state key in the checkpoint log.
func filingKey(noteID string) checkpoint.StateKey { return checkpoint.FilingKey(noteID) }

// filingState is what the log knows of a note's filings.
type filingState struct {
	// Sending is the version being sent, with no filing recorded yet;
	// SentAt when it was last handed to the target (Unix ms). Answered:
	// its last try was answered AE (not filed), so far.
	Sending  string `json:"sending,omitempty"`
	SentAt   int64  `json:"sent_at,omitempty"`
	Answered bool   `json:"answered,omitempty"`
	// Unanswered is the version that last went to the EHR without an
	// answer, UnansweredAt when (Unix ms): that send may still reach the
	// EHR until UnansweredAt plus the target's InFlight. Kept after a
	// filing.
	Unanswered   string `json:"unanswered,omitempty"`
	UnansweredAt int64  `json:"unanswered_at,omitempty"`
	// Filed is the document id the EHR filed, FiledVersion the version
	// it filed last.
	Filed        string `json:"filed,omitempty"`
	FiledVersion string `json:"filed_version,omitempty"`
	// known: the log holds a state for the note (not stored).
	known bool
}

// settle accounts for a try whose end was never recorded, read before
// the next try: a send of Sending neither answered nor given up on (the
// daemon stopped while it waited) went without an answer at SentAt.
func (st *filingState) settle() {
	if st.Sending != "" && !st.Answered && (st.Unanswered != st.Sending || st.SentAt > st.UnansweredAt) {
		st.Unanswered, st.UnansweredAt = st.Sending, st.SentAt
	}
}

// unsure reports whether the EHR may hold version without ehrbridge
// knowing: a send of it went without an answer and no answer since said
// it was filed or refused.
func (st *filingState) unsure(version string) bool {
	return st.Sending == version && st.Unanswered == version
}

// filing reads the note's state; the zero state without a log.
func (h *Handler) filing(noteID string) (filingState, error) {
	var st filingState
	if h.Log == nil {
		return st, nil
	}
	v, ok, err := h.Log.SourceState(filingKey(noteID))
	if err != nil || !ok {
		return st, err
	}
	if err := json.Unmarshal(v, &st); err != nil {
		return st, fmt.Errorf("write-back: the log's filing state of a note cannot be read: %v", err)
	}
	st.known = true
	return st, nil
}

func (h *Handler) putFiling(noteID string, st filingState) error {
	if h.Log == nil {
		return nil
	}
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return h.Log.SetSourceState(filingKey(noteID), v)
}

// update applies fn to the note's state when the state's Sending is
// version, and writes it; a failure is logged (the state stays on the
// safe side: a send without a recorded answer).
func (h *Handler) update(noteID, version, what string, fn func(*filingState)) {
	st, err := h.filing(noteID)
	if err != nil || st.Sending != version {
		return
	}
	fn(&st)
	if err := h.putFiling(noteID, st); err != nil && h.Logger != nil {
		h.Logger.Warn("write-back: could not record "+what, "err", err)
	}
}

// recordSending notes, before the send, that version goes to the EHR.
func (h *Handler) recordSending(noteID, version string, st filingState, now time.Time) error {
	st.Sending, st.SentAt, st.Answered = version, now.UnixMilli(), false
	return h.putFiling(noteID, st)
}

// unanswered records that the send of version got no answer: the target
// may have written it (again) up to now.
func (h *Handler) unanswered(noteID, version string) {
	now := h.now().UnixMilli()
	h.update(noteID, version, "that a note version's send got no answer", func(st *filingState) {
		st.SentAt, st.Unanswered, st.UnansweredAt = now, version, now
	})
}

// deferred records the EHR's AE (or CE) for version: this try filed
// nothing. When every try of it was answered so, the EHR does not have it:
// a later edit is a new document, not a replacement of one the EHR never
// had.
func (h *Handler) deferred(noteID, version string) {
	h.update(noteID, version, "the EHR's AE for a note version", func(st *filingState) {
		st.Answered = true
		if st.Unanswered != version {
			st.Sending = ""
		}
	})
}

// notFiled forgets that version was sent when the EHR answered that it did
// not file it (AR, or AE for the last time).
func (h *Handler) notFiled(noteID, version string) {
	h.update(noteID, version, "that the EHR did not file a note version", func(st *filingState) {
		st.Sending, st.Answered = "", false
	})
}

// recordFiled notes the EHR's AA for version, before the CRM is told.
func (h *Handler) recordFiled(noteID, version, docID string, st filingState) error {
	return h.putFiling(noteID, filingState{Filed: docID, FiledVersion: version, Unanswered: st.Unanswered, UnansweredAt: st.UnansweredAt})
}

// inFlighter is a connectors.EHRTarget whose sends can still reach the EHR after
// ehrbridge stopped waiting for their answer (or stopped): a message
// written to a connection before a crash is delivered all the same, and
// an EHR that serves connections side by side may apply it after a newer
// one sent on a new connection. InFlight is how long after a send that can
// happen: the target's answer timeout.
type inFlighter interface{ InFlight() time.Duration }

// inFlightUntil is when an unanswered send of another version of the note
// can no longer reach the EHR; zero when there is none to wait for. A
// different version is not sent before then.
func (h *Handler) inFlightUntil(past filingState, version string) time.Time {
	f, ok := h.Target.(inFlighter)
	if !ok || past.Unanswered == "" || past.Unanswered == version || past.UnansweredAt == 0 {
		return time.Time{}
	}
	return time.UnixMilli(past.UnansweredAt).Add(f.InFlight())
}

// errInFlight: an earlier version's send may still reach the EHR; the
// note is tried again at until.
type errInFlight struct{ until time.Time }

func (e *errInFlight) Error() string {
	return "waiting until an earlier version's unanswered send can no longer reach the EHR"
}

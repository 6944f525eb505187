package writeback

import (
	"encoding/json"
	"fmt"
	"time"
)

// The checkpoint log keeps, per note, what write-back sent to the EHR and
// what the EHR filed, so that whether an edit is a new document or a
// replacement never rests on the CRM's status field (written after the
// EHR's AA, lost when the daemon stops in between) or on comparing clocks
// (Dataverse's modifiedon has whole seconds). Kept under the note's CRM
// id, which is no patient data.

// filingKey is the note's source-state key in the checkpoint log.
func filingKey(noteID string) string { return "writeback|filing|" + noteID }

// filingState is what the log knows of a note's filings.
type filingState struct {
	// Sending is the version last sent (or about to be) with no answer
	// recorded yet, SentAt when it was handed to the target (Unix ms).
	Sending string `json:"sending,omitempty"`
	SentAt  int64  `json:"sent_at,omitempty"`
	// Filed is the document id the EHR filed, FiledVersion the version
	// it filed last.
	Filed        string `json:"filed,omitempty"`
	FiledVersion string `json:"filed_version,omitempty"`
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

// recordSending notes, before the send, that version goes to the EHR.
func (h *Handler) recordSending(noteID, version string, st filingState, now time.Time) error {
	st.Sending, st.SentAt = version, now.UnixMilli()
	return h.putFiling(noteID, st)
}

// unanswered moves the unanswered send of version to now: the target may
// have written it (again) up to the moment it gave up.
func (h *Handler) unanswered(noteID, version string) {
	st, err := h.filing(noteID)
	if err != nil || st.Sending != version {
		return
	}
	st.SentAt = h.now().UnixMilli()
	if err := h.putFiling(noteID, st); err != nil && h.Logger != nil {
		h.Logger.Warn("write-back: could not record when an unanswered note version was last sent", "err", err)
	}
}

// inFlighter is a Target whose sends can still reach the EHR after
// ehrbridge stopped waiting for their answer (or stopped): a message
// written to a connection before a crash is delivered all the same, and
// an EHR that serves connections side by side may apply it after a newer
// one sent on a new connection. InFlight is how long after a send that can
// happen: the target's answer timeout.
type inFlighter interface{ InFlight() time.Duration }

// inFlightUntil is when an unanswered send of another version of the note
// can no longer reach the EHR; zero when there is none to wait for. A
// newer version is not sent before then, so that the EHR never applies an
// older version of a document after a newer one.
func (h *Handler) inFlightUntil(past filingState, version string) time.Time {
	f, ok := h.Target.(inFlighter)
	if !ok || past.Sending == "" || past.Sending == version || past.SentAt == 0 {
		return time.Time{}
	}
	return time.UnixMilli(past.SentAt).Add(f.InFlight())
}

// errInFlight: an earlier version's send may still reach the EHR; the
// note is tried again at until.
type errInFlight struct{ until time.Time }

func (e *errInFlight) Error() string {
	return "waiting until an earlier version's unanswered send can no longer reach the EHR"
}

// notFiled forgets that version was sent when the EHR answered that it did
// not file it (AR, or AE for the last time): a later edit is then a new
// document, not a replacement of one the EHR never had.
func (h *Handler) notFiled(noteID, version string) {
	st, err := h.filing(noteID)
	if err != nil || st.Sending != version {
		return
	}
	st.Sending = ""
	if err := h.putFiling(noteID, st); err != nil && h.Logger != nil {
		h.Logger.Warn("write-back: could not record that the EHR did not file a note version", "err", err)
	}
}

// recordFiled notes the EHR's AA for version, before the CRM is told.
func (h *Handler) recordFiled(noteID, version, docID string) error {
	return h.putFiling(noteID, filingState{Filed: docID, FiledVersion: version})
}

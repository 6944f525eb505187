package logadmin

import (
	"encoding/hex"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
)

// RecordView is a record as the admin tools show it. It holds no patient
// data: the lane is a hash prefix, the payload only its size. Payload is
// set only for a revealed record.
type RecordView struct {
	ID     uint64 `json:"id"`
	Key    string `json:"key"`
	Source string `json:"source"`
	Kind   string `json:"kind,omitempty"`
	Type   string `json:"type,omitempty"`
	State  string `json:"state"`
	// Warned: done with warnings (fields its mapping left out), listed
	// in Reason.
	Warned         bool       `json:"warned,omitempty"`
	Received       time.Time  `json:"received"`
	Attempts       int        `json:"attempts"`
	ReadyAt        *time.Time `json:"ready_at,omitempty"`
	Reason         string     `json:"reason,omitempty"`
	Targets        []string   `json:"targets,omitempty"`
	DoneAt         *time.Time `json:"done_at,omitempty"`
	Lane           string     `json:"lane"`
	ContentHash    string     `json:"content_hash"`
	PayloadBytes   int        `json:"payload_bytes"`
	PayloadDropped bool       `json:"payload_dropped,omitempty"`
	Ack            string     `json:"ack,omitempty"`
	Payload        string     `json:"payload,omitempty"`
	// Detail is the prose behind Reason (the CRM's error message, which
	// may quote patient data): revealed with the payload, never listed.
	Detail string `json:"detail,omitempty"`
}

// ackText renders the acknowledgments stored with a record as text: in
// enhanced mode a record may hold several (CA, then AA), stored as MLLP
// frames back to back, or none; they are shown without the framing bytes,
// one after the other (each ends its last segment with CR, so a CR between
// two makes a blank line). A single one is shown byte for byte as sent.
func ackText(stored []byte) string {
	frames := ehr.DecodeAcks(stored)
	out := make([]string, len(frames))
	for i, f := range frames {
		out[i] = string(f)
	}
	return strings.Join(out, "\r")
}

// ViewOf converts a record.
func ViewOf(r *checkpoint.Record) RecordView {
	v := RecordView{
		ID: r.ID, Key: r.Key, Source: r.Source, Kind: string(r.Kind), Type: r.Type, State: r.State.String(),
		Received: r.Received.UTC(), Attempts: r.Attempts, Reason: r.Reason, Targets: r.Targets,
		Lane: hex.EncodeToString(r.Lane[:6]), ContentHash: hex.EncodeToString(r.Hash[:8]),
		PayloadBytes: r.PayloadLen, PayloadDropped: r.PayloadDropped, Ack: ackText(r.Ack), Warned: r.Warned(),
	}
	if r.State == checkpoint.Retrying || r.State == checkpoint.Received {
		t := r.ReadyAt.UTC()
		v.ReadyAt = &t
	}
	if !r.DoneAt.IsZero() {
		t := r.DoneAt.UTC()
		v.DoneAt = &t
	}
	if r.Payload != nil {
		v.Payload = string(r.Payload)
	}
	v.Detail = r.Detail // only Reveal fills it
	return v
}

// ConflictView is a conflict entry as the admin tools show it.
type ConflictView struct {
	ID           uint64    `json:"id"`
	RecordID     uint64    `json:"record_id"`
	Key          string    `json:"key"`
	Source       string    `json:"source"`
	Type         string    `json:"type,omitempty"`
	Received     time.Time `json:"received"`
	ContentHash  string    `json:"content_hash"`
	PayloadBytes int       `json:"payload_bytes"`
	Payload      string    `json:"payload,omitempty"`
	// Resolution is how an admin resolved it ("keep", "accept"), in the
	// answer to the resolution.
	Resolution string `json:"resolution,omitempty"`
}

// ConflictViewOf converts a conflict entry.
func ConflictViewOf(c *checkpoint.ConflictEntry) ConflictView {
	return ConflictView{ID: c.ID, RecordID: c.RecordID, Key: c.Key, Source: c.Source, Type: c.Type,
		Received: c.Received.UTC(), ContentHash: hex.EncodeToString(c.Hash[:8]), PayloadBytes: c.PayloadLen}
}

// StatsView is `log stats --json`.
type StatsView struct {
	States           map[string]int64 `json:"states"`
	OldestPending    *time.Time       `json:"oldest_pending,omitempty"`
	OldestPendingAge float64          `json:"oldest_pending_age_seconds"`
	Conflicts        int64            `json:"conflicts"`
	FileBytes        int64            `json:"file_bytes"`
	Encrypted        bool             `json:"encrypted"`
	Schema           int              `json:"schema"`
	WrittenBy        string           `json:"written_by,omitempty"`
	// Seal, when counted, says how much is not under the active key
	// until `ehrbridge log reseal` runs (see sealViewOf).
	Seal *SealView `json:"seal,omitempty"`
}

// SealView is what of an encrypted log is not yet under its active key.
type SealView struct {
	RecordsWithPayload int64 `json:"records_with_payload"`
	Unencrypted        int64 `json:"records_unencrypted"`
	OldKey             int64 `json:"records_under_old_key"`
	OtherNotSealed     int64 `json:"other_values_not_under_active_key"`
	BareHashes         int64 `json:"records_with_bare_content_hash"`
	CRMMessageReasons  int64 `json:"dead_reasons_with_crm_message"`
}

// sealViewOf converts the seal counts, nil when they were not counted.
func sealViewOf(s checkpoint.Stats) *SealView {
	if !s.SealCounted {
		return nil
	}
	return &SealView{RecordsWithPayload: s.Seal.Records, Unencrypted: s.Seal.Unencrypted, OldKey: s.Seal.OldKey,
		OtherNotSealed: s.Seal.Other, BareHashes: s.Seal.RawHashes, CRMMessageReasons: s.Seal.LegacyReasons}
}

// StatsViewOf converts stats, with ages measured from now.
func StatsViewOf(s checkpoint.Stats, now time.Time) StatsView {
	v := StatsView{States: map[string]int64{}, Conflicts: s.Conflicts, FileBytes: s.FileSize, Encrypted: s.Encrypted,
		Schema: s.Schema, WrittenBy: s.WrittenBy, Seal: sealViewOf(s)}
	for _, st := range checkpoint.States {
		v.States[st.String()] = s.States[st]
	}
	if !s.OldestPending.IsZero() {
		t := s.OldestPending.UTC()
		v.OldestPending = &t
		v.OldestPendingAge = now.Sub(s.OldestPending).Seconds()
	}
	return v
}

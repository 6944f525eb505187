// Package writeback files coordinators' notes from the CRM in the EHR,
// exactly once: a poller appends each note version to the checkpoint log
// (keyed by note id and content, so the status updates ehrbridge itself
// writes back are not new versions), and a handler resolves the patient,
// encounter and author, builds an MDM^T02 (T10 for an edited note), hands
// it to the EHR target, and marks the note Filed in the CRM.
//
// Exactly once: the document id (TXA-12) is the configured prefix and the
// note id, and MSH-10 is derived from the note version, so a resend after a
// crash is the same document: the file drop writes the same file name, an
// MLLP receiver sees the same control id.
package writeback

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/salesforce"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
)

// Config names the CRM's note object and fields and the EHR's document.
type Config struct {
	// Object is the note object; default Task. Its fields: WhatId (the
	// patient's Account), Subject, Description, OwnerId, and the flag and
	// status fields below.
	Object                                          string
	FlagField                                       string // default Send_to_EHR__c
	StatusField, DocIDField, FiledAtField, ErrField string // default EHR_Status__c, EHR_Document_Id__c, EHR_Filed_At__c, EHR_Error__c
	// PatientObject and PatientKeyField give the patient's MRN: the key
	// is "<assigning authority>|<MRN>" as the shipped mappings write it.
	PatientObject, PatientKeyField string // default Account, SourceSystemIdentifier
	// Encounter: the patient's most recent encounter not finished or
	// cancelled gives PV1-19; none leaves PV1-19 empty.
	EncounterObject, EncounterKeyField, EncounterPatientField, EncounterStartField, EncounterStatusField string
	// DocPrefix starts every document id (TXA-12); default "EHRB-".
	DocPrefix string
	// Authors maps CRM user ids to EHR provider ids (TXA-9).
	Authors map[string]string
	// SendingApp and SendingFacility fill MSH-3/4; ReceivingApp and
	// ReceivingFacility MSH-5/6.
	SendingApp, SendingFacility, ReceivingApp, ReceivingFacility string
	// Overlap re-reads notes changed this long before the watermark,
	// against clock skew; default 30s.
	Overlap time.Duration
	// HeldRetry is how soon a held note is tried again; default 1m.
	HeldRetry time.Duration
}

func (c *Config) defaults() {
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&c.Object, "Task")
	def(&c.FlagField, "Send_to_EHR__c")
	def(&c.StatusField, "EHR_Status__c")
	def(&c.DocIDField, "EHR_Document_Id__c")
	def(&c.FiledAtField, "EHR_Filed_At__c")
	def(&c.ErrField, "EHR_Error__c")
	def(&c.PatientObject, "Account")
	def(&c.PatientKeyField, "SourceSystemIdentifier")
	def(&c.EncounterObject, "ClinicalEncounter")
	def(&c.EncounterKeyField, "SourceSystemIdentifier")
	def(&c.EncounterPatientField, "PatientId")
	def(&c.EncounterStartField, "StartDate")
	def(&c.EncounterStatusField, "Status")
	def(&c.DocPrefix, "EHRB-")
	def(&c.SendingApp, "EHRBRIDGE")
	def(&c.SendingFacility, "CRM")
	if c.Overlap <= 0 {
		c.Overlap = 30 * time.Second
	}
	if c.HeldRetry <= 0 {
		c.HeldRetry = time.Minute
	}
}

// Note is one note version as stored in the checkpoint log.
type Note struct {
	ID       string `json:"id"`
	WhatID   string `json:"what_id"`
	Subject  string `json:"subject"`
	Text     string `json:"text"`
	OwnerID  string `json:"owner_id"`
	Modstamp string `json:"modstamp"`
	// Filed is the document id the note was already filed under, for an
	// edit (a replacement of that document).
	Filed string `json:"filed,omitempty"`
	// Version identifies the content: an edit is a new version, a status
	// update is not.
	Version string `json:"version"`
}

// Kind is the checkpoint record kind of note versions.
const Kind = "note"

// Source polls the CRM for notes flagged for the EHR and appends each new
// version to the log.
type Source struct {
	Cfg    Config
	Client *salesforce.Client
	Log    *checkpoint.Log
	// WatermarkFile keeps the newest SystemModstamp seen.
	WatermarkFile string
	// Appended is called after new versions were stored.
	Appended func()
	Logger   *slog.Logger
}

// Poll runs one query and appends what is new; it returns how many
// versions were new.
func (s *Source) Poll(ctx context.Context) (int, error) {
	s.Cfg.defaults()
	wm := s.watermark()
	since := "1970-01-01T00:00:00Z"
	if !wm.IsZero() {
		since = wm.Add(-s.Cfg.Overlap).UTC().Format("2006-01-02T15:04:05Z")
	}
	q := fmt.Sprintf("SELECT Id, WhatId, Subject, Description, OwnerId, SystemModstamp, %s FROM %s WHERE %s = true AND SystemModstamp > %s ORDER BY SystemModstamp LIMIT 2000",
		s.Cfg.DocIDField, s.Cfg.Object, s.Cfg.FlagField, since)
	recs, err := s.Client.Query(ctx, q)
	if err != nil {
		return 0, err
	}
	n := 0
	newest := wm
	for _, r := range recs {
		note := Note{ID: str(r["Id"]), WhatID: str(r["WhatId"]), Subject: str(r["Subject"]), Text: str(r["Description"]),
			OwnerID: str(r["OwnerId"]), Modstamp: str(r["SystemModstamp"]), Filed: str(r[s.Cfg.DocIDField])}
		h := sha256.Sum256([]byte(note.WhatID + "\x00" + note.Subject + "\x00" + note.Text))
		note.Version = hex.EncodeToString(h[:8])
		payload, _ := json.Marshal(note)
		res, err := s.Log.Append(ctx, checkpoint.Entry{Key: "crm|" + note.ID + "|" + note.Version, Source: "crm", Kind: Kind,
			Type: "note", Hash: sha256.Sum256([]byte(note.Version)), Lane: "note|" + note.ID, Payload: payload, Ack: []byte("-")})
		if err != nil {
			return n, err
		}
		if res.Outcome == checkpoint.Appended {
			n++
		}
		if t, err := time.Parse("2006-01-02T15:04:05.000-0700", note.Modstamp); err == nil && t.After(newest) {
			newest = t
		}
	}
	if newest.After(wm) {
		if err := s.setWatermark(newest); err != nil {
			return n, err
		}
	}
	if n > 0 && s.Appended != nil {
		s.Appended()
	}
	return n, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func (s *Source) watermark() time.Time {
	b, err := os.ReadFile(s.WatermarkFile)
	if err != nil {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	return t
}

// setWatermark writes the watermark atomically. Losing it only makes the
// next poll re-read notes, which the log recognises.
func (s *Source) setWatermark(t time.Time) error {
	tmp := s.WatermarkFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(t.UTC().Format(time.RFC3339Nano)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.WatermarkFile)
}

// Target files an MDM message in the EHR. Filing the same message again
// must not make a second document.
type Target interface {
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

// Rejected is an EHR's refusal of a document (AE/AR): the note gets
// status Error with the text; retrying cannot help.
type Rejected struct{ Text string }

func (r *Rejected) Error() string { return "the EHR rejected the document" }

// Handler files claimed note versions.
type Handler struct {
	Cfg    Config
	Client *salesforce.Client
	Target Target
	Logger *slog.Logger
	Now    func() time.Time
}

// DocPrefix is the document id prefix in use, for the echo guard.
func (h *Handler) DocPrefix() string {
	h.Cfg.defaults()
	return h.Cfg.DocPrefix
}

// errHeld marks a note that cannot be resolved yet.
type errHeld struct{ reason string }

func (e *errHeld) Error() string { return "held: " + e.reason }

// Handle files each record and returns its settlement.
func (h *Handler) Handle(ctx context.Context, recs []*checkpoint.Record) []checkpoint.Settlement {
	h.Cfg.defaults()
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	out := make([]checkpoint.Settlement, len(recs))
	for i, rec := range recs {
		s := &out[i]
		s.ID = rec.ID
		var note Note
		if err := json.Unmarshal(rec.Payload, &note); err != nil {
			s.State, s.Reason = checkpoint.Dead, "the stored note cannot be read"
			continue
		}
		docID, err := h.file(ctx, &note)
		var held *errHeld
		var rej *Rejected
		switch {
		case err == nil:
			s.State, s.Targets = checkpoint.Done, []string{docID}
		case errors.As(err, &held):
			h.status(ctx, note.ID, "Held", "", held.reason)
			s.State, s.RetryAt, s.Reason = checkpoint.Retrying, now().Add(h.Cfg.HeldRetry), err.Error()
		case errors.As(err, &rej):
			h.status(ctx, note.ID, "Error", "", truncate(rej.Text, 250))
			s.State, s.Reason = checkpoint.Dead, "the EHR rejected the document"
		case connectors.KindOf(err) == connectors.Permanent:
			s.State, s.Reason = checkpoint.Dead, err.Error()
		default:
			wait := time.Duration(1<<min(rec.Attempts, 10)) * time.Second
			s.State, s.RetryAt, s.Reason = checkpoint.Retrying, now().Add(wait), err.Error()
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// file resolves, builds, files and reports one note version.
func (h *Handler) file(ctx context.Context, note *Note) (string, error) {
	pat, err := h.patient(ctx, note.WhatID)
	if err != nil {
		return "", err
	}
	visit, err := h.encounter(ctx, note.WhatID)
	if err != nil {
		return "", err
	}
	docID := h.Cfg.DocPrefix + note.ID
	msg, err := h.build(note, pat, visit, docID)
	if err != nil {
		return "", &connectors.Error{Kind: connectors.Permanent, Code: "BUILD", Message: err.Error()}
	}
	doc := &Document{Note: note, ID: docID, Authority: pat.authority, MRN: pat.mrn, Visit: visit, Author: h.Cfg.Authors[note.OwnerID], MDM: msg}
	if err := h.Target.File(ctx, doc); err != nil {
		return "", err
	}
	filedAt := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	if err := h.setStatus(ctx, note.ID, map[string]any{h.Cfg.StatusField: "Filed", h.Cfg.DocIDField: docID, h.Cfg.FiledAtField: filedAt, h.Cfg.ErrField: nil}); err != nil {
		return "", err
	}
	return docID, nil
}

// patientID is a patient's MRN and assigning authority.
type patientID struct{ authority, mrn string }

func (h *Handler) patient(ctx context.Context, accountID string) (patientID, error) {
	if accountID == "" {
		return patientID{}, &errHeld{"the note is not linked to a patient"}
	}
	recs, err := h.Client.Query(ctx, fmt.Sprintf("SELECT Id, %s FROM %s WHERE Id = '%s'", h.Cfg.PatientKeyField, h.Cfg.PatientObject, soqlQuote(accountID)))
	if err != nil {
		return patientID{}, err
	}
	if len(recs) == 0 {
		return patientID{}, &errHeld{"the linked patient does not exist"}
	}
	key := str(recs[0][h.Cfg.PatientKeyField])
	i := strings.LastIndexByte(key, '|')
	if key == "" || i == len(key)-1 {
		return patientID{}, &errHeld{"the patient has no EHR identifier yet"}
	}
	return patientID{authority: key[:max(i, 0)], mrn: key[i+1:]}, nil
}

// encounter returns the visit number of the patient's most recent open
// encounter, "" when there is none.
func (h *Handler) encounter(ctx context.Context, accountID string) (string, error) {
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s = '%s' AND %s != 'Finished' AND %s != 'Cancelled' ORDER BY %s DESC NULLS LAST LIMIT 1",
		h.Cfg.EncounterKeyField, h.Cfg.EncounterObject, h.Cfg.EncounterPatientField, soqlQuote(accountID),
		h.Cfg.EncounterStatusField, h.Cfg.EncounterStatusField, h.Cfg.EncounterStartField)
	recs, err := h.Client.Query(ctx, q)
	if err != nil || len(recs) == 0 {
		return "", err
	}
	key := str(recs[0][h.Cfg.EncounterKeyField])
	return key[strings.LastIndexByte(key, '|')+1:], nil
}

func soqlQuote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}

// build makes the MDM: T02 for a new document, T10 (replacement) for an
// edit of one already filed.
func (h *Handler) build(note *Note, pat patientID, visit, docID string) (*hl7.Message, error) {
	trigger := "T02"
	if note.Filed != "" {
		trigger = "T10"
	}
	m := hl7.NewMessage("MDM", trigger, "MDM_T02", "2.5.1")
	ctrl := sha256.Sum256([]byte(note.ID + "|" + note.Version))
	set := func(path, v string) error {
		if v == "" {
			return nil
		}
		return m.Set(hl7.MustPath(path), v)
	}
	ts := hl7.FormatTime(time.Now())
	if t, err := time.Parse("2006-01-02T15:04:05.000-0700", note.Modstamp); err == nil {
		ts = hl7.FormatTime(t)
	}
	steps := []struct{ path, v string }{
		{"MSH-3", h.Cfg.SendingApp}, {"MSH-4", h.Cfg.SendingFacility}, {"MSH-5", h.Cfg.ReceivingApp}, {"MSH-6", h.Cfg.ReceivingFacility},
		{"MSH-7", ts}, {"MSH-10", "EHRB" + hex.EncodeToString(ctrl[:8])},
		{"EVN-1", trigger}, {"EVN-2", ts},
		{"PID-1", "1"}, {"PID-3.1", pat.mrn}, {"PID-3.4", pat.authority}, {"PID-3.5", "MR"},
		{"PV1-1", "1"}, {"PV1-19.1", visit},
		{"TXA-1", "1"}, {"TXA-2", "CN"}, {"TXA-3", "TX"}, {"TXA-4", ts}, {"TXA-9.1", h.Cfg.Authors[note.OwnerID]},
		{"TXA-12.1", docID}, {"TXA-17", "AU"},
	}
	if trigger == "T10" {
		steps = append(steps, struct{ path, v string }{"TXA-13.1", note.Filed})
	}
	for _, st := range steps {
		if err := set(st.path, st.v); err != nil {
			return nil, err
		}
	}
	lines := []string{}
	if note.Subject != "" {
		lines = append(lines, note.Subject)
	}
	lines = append(lines, strings.Split(strings.ReplaceAll(note.Text, "\r\n", "\n"), "\n")...)
	for i, line := range lines {
		seg, err := m.AddSegment("OBX")
		if err != nil {
			return nil, err
		}
		for _, f := range []struct {
			n int
			v string
		}{{1, fmt.Sprint(i + 1)}, {2, "TX"}, {3, "NOTE^Coordinator note"}, {5, line}, {11, "F"}} {
			if f.n == 3 {
				if err := seg.SetFieldRaw(3, "NOTE^Coordinator note"); err != nil {
					return nil, err
				}
				continue
			}
			if err := seg.SetField(f.n, f.v); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// status writes a status (Held, Error) with its reason to the note; a
// failure here is logged, not fatal: the note retries or is dead anyway.
func (h *Handler) status(ctx context.Context, noteID, status, docID, reason string) {
	fields := map[string]any{h.Cfg.StatusField: status, h.Cfg.ErrField: reason}
	if err := h.setStatus(ctx, noteID, fields); err != nil && h.Logger != nil {
		h.Logger.Warn("could not set a note's status in the CRM", "status", status, "err", err)
	}
}

func (h *Handler) setStatus(ctx context.Context, noteID string, fields map[string]any) error {
	fields["Id"] = noteID
	res, err := h.Client.Update(ctx, h.Cfg.Object, []map[string]any{fields})
	if err != nil {
		return err
	}
	return res[0].Err
}

// FileDrop writes each message atomically (temp file, fsync, rename) into
// Dir as <MSH-10>.hl7: filing a version again rewrites the same file.
type FileDrop struct{ Dir string }

// File implements Target.
func (f *FileDrop) File(_ context.Context, doc *Document) error {
	msg := doc.MDM
	if err := os.MkdirAll(f.Dir, 0o750); err != nil {
		return err
	}
	name := filepath.Join(f.Dir, msg.Header().ControlID+".hl7")
	tmp, err := os.CreateTemp(f.Dir, ".mdm-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(msg.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// MLLP sends each message to the EHR's MLLP receiver and waits for its
// AA (past a commit-level CA). AE or AR is a rejection.
type MLLP struct{ Client *mllp.Client }

// File implements Target.
func (t *MLLP) File(ctx context.Context, doc *Document) error {
	msg := doc.MDM
	resp, err := t.Client.Send(ctx, msg.Bytes())
	if err != nil {
		return &connectors.Error{Kind: connectors.Transient, Code: "EHR_UNREACHABLE"}
	}
	switch resp.Code {
	case hl7.AA, hl7.CA:
		return nil
	case hl7.AE, hl7.AR, hl7.CE, hl7.CR:
		return &Rejected{Text: string(resp.Code) + " " + resp.Text}
	}
	return &connectors.Error{Kind: connectors.Transient, Code: "EHR_ANSWER_" + string(resp.Code)}
}

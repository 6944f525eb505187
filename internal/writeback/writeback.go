// Package writeback files coordinators' notes from the CRM in the EHR,
// exactly once: a poller appends each note version to the checkpoint log
// (keyed by note id and content, so the status updates ehrbridge itself
// writes back are not new versions), and a handler resolves the patient,
// encounter and author, builds an MDM^T02 (T10 for an edited note), hands
// it to the EHR target, and marks the note Filed in the CRM. The CRM and
// the EHR are reached only through connectors.NoteReader and
// connectors.EHRTarget (implemented in connectors/salesforce,
// connectors/dynamics and connectors/ehr).
//
// Exactly once: the document id (TXA-12) is the configured prefix and the
// note id, and MSH-10 is derived from the note version, so a resend after a
// crash is the same document: the file drop writes the same file name, an
// MLLP receiver sees the same control id.
package writeback

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/configvalue"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// Config names the CRM's note object and fields and the EHR's document.
// Defaults depend on the CRM: Salesforce's are given first, Dataverse's
// after "|". The fields with a yaml tag are the keys of the config file's
// writeback section (internal/config embeds Config there, inline); the
// others are the CRM's names and the daemon's.
type Config struct {
	// Object is the note object; default Task | task.
	Object string `yaml:"object"`
	// The note's fields: its link to the patient (WhatId |
	// _regardingobjectid_value), Subject | subject, Description |
	// description, OwnerId | _ownerid_value, and the time it last changed
	// (SystemModstamp | modifiedon).
	WhatField, SubjectField, TextField, OwnerField, ModifiedField string
	// FlagField is the "send to the EHR" checkbox: Send_to_EHR__c |
	// new_sendtoehr.
	FlagField string `yaml:"flag_field"`
	// The status fields ehrbridge writes: EHR_Status__c, EHR_Document_Id__c,
	// EHR_Filed_At__c, EHR_Error__c | new_ehrstatus, new_ehrdocumentid,
	// new_ehrfiledat, new_ehrerror.
	StatusField, DocIDField, FiledAtField, ErrField string
	// PatientObject and PatientKeyField give the patient's MRN: the key
	// is "<assigning authority>|<MRN>" as the shipped mappings write it
	// (on Dataverse escaped by keysafe(), which keyPart undoes).
	PatientObject, PatientKeyField string // Account, EHR_Patient_Key__c | contact, msemr_medicalrecordnumber
	// Encounter records: their key field holds "<authority>|<visit
	// number>", as the shipped mappings write it. ClinicalEncounter,
	// EHR_Encounter_Key__c, PatientId, StartDate, Status |
	// msemr_encounter, msemr_encounteridentifier,
	// _msemr_encounterpatientidentifier_value, msemr_periodstart,
	// msemr_encounterstatus.
	EncounterObject, EncounterKeyField, EncounterPatientField, EncounterStartField, EncounterStatusField string
	// EncounterRule says which encounter a note is filed against (PV1-19):
	// EncounterLink, EncounterOpen, EncounterLinkOrOpen (default) or
	// EncounterNone.
	EncounterRule string `yaml:"encounter_rule"`
	// EncounterLinkField is a note field holding an encounter record's
	// id. Without one, a note linked (WhatId) to an encounter rather than
	// to the patient is the note's link.
	EncounterLinkField string `yaml:"encounter_link_field"`
	// ClosedStatuses are encounter statuses that are not open: Finished,
	// Cancelled | 935000005, 935000006 (msemr_encounterstatus).
	ClosedStatuses []any
	// EncounterRequired holds a note for which the rule finds no
	// encounter, instead of filing it without one.
	EncounterRequired bool `yaml:"encounter_required"`
	// DocPrefix starts every document id (TXA-12); default "EHRB-".
	DocPrefix string `yaml:"doc_prefix"`
	// ReplaceTrigger is the MDM trigger of an edit of a filed note: T10
	// (replacement, the default), T08 (edit) or T06 (addendum), or T02.
	ReplaceTrigger string `yaml:"replace_trigger"`
	// Authors maps CRM user ids to EHR provider ids (TXA-9); looked up
	// first.
	Authors map[string]string
	// AuthorObject and AuthorField: the CRM user record (User |
	// systemuser) and its field holding the EHR provider id, looked up
	// when Authors has no entry; "" (the default) does not look.
	AuthorObject string
	AuthorField  string `yaml:"author_field"`
	// AuthorRequired holds a note whose author has no EHR provider id.
	AuthorRequired bool `yaml:"author_required"`
	// MDM builds the message; nil uses the built-in mapping.
	MDM *MDMBuilder
	// SendingApp and SendingFacility fill MSH-3/4; ReceivingApp and
	// ReceivingFacility MSH-5/6.
	SendingApp        string `yaml:"sending_application"`
	SendingFacility   string `yaml:"sending_facility"`
	ReceivingApp      string `yaml:"receiving_application"`
	ReceivingFacility string `yaml:"receiving_facility"`
	// Overlap re-reads notes changed this long before the watermark,
	// against clock skew; default 30s.
	Overlap time.Duration
	// HeldRetry is how soon a held note is tried again; default 1m.
	HeldRetry time.Duration
	// AEMaxAttempts bounds how often a note the EHR answered AE (or CE)
	// is sent: an AE says the receiver could not process the message now
	// and may accept it resent (HL7 table 0008), so the note is retried
	// with backoff until this many answers, then dead; default 10.
	AEMaxAttempts int
}

// fieldNameRe is a CRM field's API name.
var fieldNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks the settings the config file gives (the tagged fields);
// keys are relative to the writeback section.
func (c Config) Validate(r configvalue.Reporter) {
	switch c.EncounterRule {
	case "", EncounterLinkOrOpen, EncounterLink, EncounterOpen, EncounterNone:
	default:
		r.Add("encounter_rule", "%s: use link_or_open (the default), link, open or none", r.Show("encounter_rule", configvalue.Quote(c.EncounterRule)))
	}
	switch c.ReplaceTrigger {
	case "", "T10", "T08", "T06", "T02":
	default:
		r.Add("replace_trigger", "%s: use T10 (replacement, the default), T08 (edit), T06 (addendum) or T02", r.Show("replace_trigger", configvalue.Quote(c.ReplaceTrigger)))
	}
	for _, f := range []struct{ key, val string }{{"author_field", c.AuthorField}, {"encounter_link_field", c.EncounterLinkField}} {
		if f.val != "" && !fieldNameRe.MatchString(f.val) {
			r.Add(f.key, "%s is not a field API name", r.Show(f.key, configvalue.Quote(f.val)))
		}
	}
}

// DefaultConfig is the configuration with every name defaulted for a CRM
// ("salesforce" or "dataverse"): what an admin creates in the CRM.
func DefaultConfig(flavor string) Config {
	var c Config
	c.defaults(flavor)
	return c
}

// WithDefaults is c with every name it leaves empty defaulted for the
// CRM's flavor ("salesforce" or "dataverse").
func (c Config) WithDefaults(flavor string) Config {
	c.defaults(flavor)
	return c
}

// defaults fills in the names of the CRM's flavor ("salesforce" or
// "dataverse").
func (c *Config) defaults(flavor string) {
	def := func(s *string, sf, dv string) {
		if *s == "" {
			*s = sf
			if flavor == "dataverse" {
				*s = dv
			}
		}
	}
	def(&c.Object, "Task", "task")
	def(&c.WhatField, "WhatId", "_regardingobjectid_value")
	def(&c.SubjectField, "Subject", "subject")
	def(&c.TextField, "Description", "description")
	def(&c.OwnerField, "OwnerId", "_ownerid_value")
	def(&c.ModifiedField, "SystemModstamp", "modifiedon")
	def(&c.FlagField, "Send_to_EHR__c", "new_sendtoehr")
	def(&c.StatusField, "EHR_Status__c", "new_ehrstatus")
	def(&c.DocIDField, "EHR_Document_Id__c", "new_ehrdocumentid")
	def(&c.FiledAtField, "EHR_Filed_At__c", "new_ehrfiledat")
	def(&c.ErrField, "EHR_Error__c", "new_ehrerror")
	def(&c.PatientObject, "Account", "contact")
	// The External ID keys the Health Cloud set upserts by (an account
	// an older ehrbridge wrote has only SourceSystemIdentifier until the
	// one-time copy of configs/mappings/healthcloud/README.md: its notes
	// are held as having no patient key, never filed to a guess).
	def(&c.PatientKeyField, "EHR_Patient_Key__c", "msemr_medicalrecordnumber")
	def(&c.EncounterObject, "ClinicalEncounter", "msemr_encounter")
	def(&c.EncounterKeyField, "EHR_Encounter_Key__c", "msemr_encounteridentifier")
	def(&c.EncounterPatientField, "PatientId", "_msemr_encounterpatientidentifier_value")
	def(&c.EncounterStartField, "StartDate", "msemr_periodstart")
	def(&c.EncounterStatusField, "Status", "msemr_encounterstatus")
	def(&c.AuthorObject, "User", "systemuser")
	def(&c.DocPrefix, "EHRB-", "EHRB-")
	def(&c.ReplaceTrigger, "T10", "T10")
	def(&c.SendingApp, "EHRBRIDGE", "EHRBRIDGE")
	def(&c.SendingFacility, "CRM", "CRM")
	if c.EncounterRule == "" {
		c.EncounterRule = EncounterLinkOrOpen
	}
	if c.ClosedStatuses == nil {
		c.ClosedStatuses = []any{"Finished", "Cancelled"}
		if flavor == "dataverse" {
			c.ClosedStatuses = []any{935000005, 935000006}
		}
	}
	if c.Overlap <= 0 {
		c.Overlap = 30 * time.Second
	}
	if c.HeldRetry <= 0 {
		c.HeldRetry = time.Minute
	}
	if c.AEMaxAttempts <= 0 {
		c.AEMaxAttempts = 10
	}
}

// Encounter rules (Config.EncounterRule).
const (
	EncounterLinkOrOpen = "link_or_open" // the note's link, else the most recent open encounter
	EncounterLink       = "link"         // only the note's link
	EncounterOpen       = "open"         // only the most recent open encounter
	EncounterNone       = "none"         // never an encounter
)

// parseModified reads a note's last-change time: Salesforce's
// SystemModstamp (2026-01-05T10:30:00.000+0000) or Dataverse's modifiedon
// (2026-01-05T10:30:00Z).
func parseModified(s string) (time.Time, error) {
	t, err := time.Parse("2006-01-02T15:04:05.000-0700", s)
	if err != nil {
		t, err = time.Parse(time.RFC3339Nano, s)
	}
	return t, err
}

// Source polls the CRM for notes flagged for the EHR and appends each new
// version to the log.
type Source struct {
	Cfg Config
	CRM connectors.NoteReader
	Log *checkpoint.Log
	// WatermarkFile keeps the newest SystemModstamp seen.
	WatermarkFile string
	// Appended is called after new versions were stored.
	Appended func()
	Logger   *slog.Logger
	// PageSize is how many notes one query reads; default 2000.
	PageSize int
}

// Poll reads the notes changed since the watermark (less the overlap)
// and appends what is new; it returns how many versions were new. A full
// page is followed by a query from the second of its newest change on
// (query literals have whole seconds; notes read twice are recognised by
// the log), until a page is not full: a burst of more notes than a page
// changed within the overlap (ehrbridge's own status writes after an EHR
// outage) would otherwise be read again and again from its start, and
// later edits never.
func (s *Source) Poll(ctx context.Context) (int, error) {
	s.Cfg.defaults(s.CRM.Flavor())
	limit := cmp.Or(s.PageSize, 2000)
	wm := s.watermark()
	op, since := ">", time.Unix(0, 0)
	if !wm.IsZero() {
		since = wm.Add(-s.Cfg.Overlap)
	}
	n := 0
	newest := wm
	for {
		recs, err := s.CRM.Find(ctx, connectors.Query{Object: s.Cfg.Object, Fields: s.Cfg.noteFields(s.CRM),
			Where:   []connectors.Cond{{Field: s.Cfg.FlagField, Op: "=", Value: true}, {Field: s.Cfg.ModifiedField, Op: op, Value: since}},
			OrderBy: s.Cfg.ModifiedField, Limit: limit})
		if err != nil {
			return n, err
		}
		last := since
		for _, r := range recs {
			note := s.Cfg.note(s.CRM, r)
			payload, _ := json.Marshal(note)
			res, err := s.Log.Append(ctx, checkpoint.Entry{Key: "crm|" + note.ID + "|" + note.Version, Source: "crm", Kind: checkpoint.KindNote,
				Type: "note", Hash: sha256.Sum256([]byte(note.Version)), Lane: "note|" + note.ID, Payload: payload, Ack: []byte("-")})
			if err != nil {
				return n, err
			}
			if res.Outcome == checkpoint.Appended {
				n++
			}
			if t, err := parseModified(note.Modstamp); err == nil {
				newest, last = later(newest, t), later(last, t)
			}
		}
		if len(recs) < limit {
			break
		}
		next := last.Truncate(time.Second)
		if op == ">=" && !next.After(since) {
			if s.Logger != nil {
				s.Logger.Warn("write-back: more notes changed within one second than a query reads; the rest are read only if they change again: raise the page size",
					"page_size", limit)
			}
			break
		}
		op, since = ">=", next
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

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// noteFields is the field list of note queries.
func (c *Config) noteFields(crm connectors.NoteReader) []string {
	f := []string{crm.IDField(c.Object), c.WhatField, c.SubjectField, c.TextField, c.OwnerField, c.ModifiedField,
		c.FlagField, c.DocIDField, c.StatusField, c.FiledAtField}
	if c.EncounterLinkField != "" {
		f = append(f, c.EncounterLinkField)
	}
	return f
}

// note reads a note version from a query result. Its version is a hash
// of what is filed: the patient and encounter links, subject and text.
// The status fields ehrbridge writes are not part of it.
func (c *Config) note(crm connectors.NoteReader, r map[string]any) connectors.Note {
	note := connectors.Note{ID: str(r[crm.IDField(c.Object)]), WhatID: str(r[c.WhatField]), Subject: str(r[c.SubjectField]), Text: str(r[c.TextField]),
		OwnerID: str(r[c.OwnerField]), Modstamp: str(r[c.ModifiedField]), Filed: str(r[c.DocIDField])}
	content := note.WhatID + "\x00" + note.Subject + "\x00" + note.Text
	if c.EncounterLinkField != "" {
		note.EncounterID = str(r[c.EncounterLinkField])
		if note.EncounterID != "" { // versions of notes without one keep their hash
			content += "\x00" + note.EncounterID
		}
	}
	h := sha256.Sum256([]byte(content))
	note.Version = hex.EncodeToString(h[:8])
	return note
}

// ControlID is the MSH-10 of a note version: the same for every resend.
func ControlID(note *connectors.Note) string {
	h := sha256.Sum256([]byte(note.ID + "|" + note.Version))
	return "EHRB" + hex.EncodeToString(h[:8])
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

// Handler files claimed note versions.
type Handler struct {
	Cfg    Config
	CRM    connectors.NoteReader
	Target connectors.EHRTarget
	// Log, when set, keeps what was sent to the EHR and what it filed
	// (filing.go): whether an edit is a new document or a replacement is
	// decided from it, not from the CRM's status field. The daemon sets
	// it; nil falls back to the CRM's status.
	Log    *checkpoint.Log
	Logger *slog.Logger
	Now    func() time.Time
	// Backoff is how long a note waits after its attempts so far failed
	// transiently: the pipeline's backoff (pipeline.Pipeline.Backoff), so
	// that notes and CRM records retry alike. Nil: HeldRetry.
	Backoff func(attempts int) time.Duration
}

// DocPrefix is the document id prefix in use, for the echo guard.
func (h *Handler) DocPrefix() string {
	h.Cfg.defaults(h.CRM.Flavor())
	return h.Cfg.DocPrefix
}

// errSuperseded: the note changed (or was withdrawn) since this version
// was read; the newer version, behind this one in the note's lane, is
// what gets filed. errEdited is the case of an edit.
var (
	errSuperseded = errors.New("superseded")
	errEdited     = fmt.Errorf("%w: edited since", errSuperseded)
)

// Handle files each record in turn and reports its settlement through
// settle before the next is sent (pipeline.NoteHandler).
func (h *Handler) Handle(ctx context.Context, recs []*checkpoint.Record, settle func(checkpoint.Settlement)) {
	h.handle(ctx, recs, settle)
}

// handle files the records, calling settle (when not nil) for each as
// soon as it is known, and returns the settlements.
func (h *Handler) handle(ctx context.Context, recs []*checkpoint.Record, settle func(checkpoint.Settlement)) []checkpoint.Settlement {
	h.Cfg.defaults(h.CRM.Flavor())
	out := make([]checkpoint.Settlement, len(recs))
	for i, rec := range recs {
		out[i] = h.one(ctx, rec)
		if settle != nil {
			settle(out[i])
		}
	}
	return out
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// one files one note version and says how it ended.
func (h *Handler) one(ctx context.Context, rec *checkpoint.Record) checkpoint.Settlement {
	now := h.now
	s := checkpoint.Settlement{ID: rec.ID}
	var note connectors.Note
	if err := json.Unmarshal(rec.Payload, &note); err != nil {
		s.State, s.Reason = checkpoint.Dead, "the stored note cannot be read"
		return s
	}
	docID, err := h.file(ctx, &note)
	var held *connectors.Held
	var rej *connectors.Rejected
	var def *connectors.Deferred
	var inflight *errInFlight
	switch {
	case err == nil:
		s.State, s.Targets = checkpoint.Done, []string{docID}
	case errors.Is(err, errSuperseded):
		s.State = checkpoint.Done
	case errors.As(err, &inflight):
		s.State, s.RetryAt, s.Reason = checkpoint.Retrying, inflight.until, err.Error()
	case errors.As(err, &held):
		h.status(ctx, note.ID, "Held", "", held.Reason)
		s.State, s.RetryAt, s.Reason = checkpoint.Retrying, now().Add(h.Cfg.HeldRetry), err.Error()
	case errors.As(err, &rej):
		h.notFiled(note.ID, note.Version)
		h.status(ctx, note.ID, "Error", "", truncate(rej.Text, 250))
		s.State, s.Reason, s.Code, s.Object = checkpoint.Dead, "the EHR rejected the document", "AR", "EHR document"
	case errors.As(err, &def) && rec.Attempts+1 >= h.Cfg.AEMaxAttempts:
		h.notFiled(note.ID, note.Version)
		h.status(ctx, note.ID, "Error", "", truncate(string(def.Code)+" "+def.Text, 250))
		s.State, s.Reason = checkpoint.Dead, fmt.Sprintf("the EHR answered %s %d times (writeback.target.ae_max_attempts)", def.Code, rec.Attempts+1)
		s.Code, s.Object = string(def.Code), "EHR document"
	case errors.Is(err, connectors.ErrUnconfirmable):
		h.status(ctx, note.ID, "Error", "", "the MDM mapping asks the EHR for no acknowledgment")
		s.State, s.Reason = checkpoint.Dead, err.Error()
	case connectors.KindOf(err) == connectors.Permanent:
		s.State, s.Reason = checkpoint.Dead, err.Error()
	default:
		wait := h.Cfg.HeldRetry
		if h.Backoff != nil {
			wait = h.Backoff(rec.Attempts)
		}
		var u *connectors.Unreachable
		var ce *connectors.Error
		switch {
		case errors.As(err, &u) && u.RetryAfter > wait:
			wait = u.RetryAfter // the MLLP client is backing off until then
		case errors.As(err, &ce) && ce.RetryAfter > wait:
			wait = ce.RetryAfter
		}
		s.State, s.RetryAt, s.Reason = checkpoint.Retrying, now().Add(wait), err.Error()
		if errors.As(err, &def) {
			s.Code, s.Object = string(def.Code), "EHR document"
		}
	}
	if ce := (*connectors.Error)(nil); s.Code == "" && errors.As(err, &ce) && ce.Code != "" && !strings.ContainsAny(ce.Code, " :") {
		s.Code = ce.Code // the CRM's code (the note's status update); never its message
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// file resolves, builds, files and reports one note version.
func (h *Handler) file(ctx context.Context, note *connectors.Note) (string, error) {
	past, err := h.filing(note.ID)
	if err != nil {
		return "", err
	}
	past.settle()
	if err := h.current(ctx, note, !past.known); err != nil {
		if !errors.Is(err, errEdited) || !past.unsure(note.Version) {
			return "", err
		}
		// This version went to the EHR without an answer and the note
		// was edited since: send it again (the same message, the same
		// MSH-10) to learn whether the EHR holds it, so that the edit,
		// next in the note's lane, is a replacement of a document the
		// EHR has, or a new document if it never filed this one.
	}
	docID := h.Cfg.DocPrefix + note.ID
	if past.known {
		note.Filed = "" // the log decides, not the document id the CRM showed when the version was read
	}
	switch {
	case past.Filed != "" && past.FiledVersion == note.Version:
		// The EHR filed this very version (its AA is in the log) and the
		// daemon stopped before the CRM heard of it: tell the CRM, send
		// nothing.
		return docID, h.filedStatus(ctx, note.ID, docID)
	case past.Filed != "":
		note.Filed = past.Filed // an edit of a filed note: a replacement
	case past.Sending != "" && past.Sending != note.Version:
		// An earlier version went to the EHR and its outcome was never
		// learned (a log an older release wrote; a note withdrawn and
		// flagged again): it may be filed. A replacement of it is safe
		// either way (an EHR without it refuses the replacement,
		// visibly); a second new document would not be.
		note.Filed = docID
	}
	if until := h.inFlightUntil(past, note.Version); h.now().Before(until) {
		return "", &errInFlight{until}
	}
	pat, linked, err := h.patient(ctx, note.WhatID)
	if err != nil {
		return "", err
	}
	visit, err := h.encounter(ctx, note, pat.accountID, linked)
	if err != nil {
		return "", err
	}
	author, err := h.author(ctx, note.OwnerID)
	if err != nil {
		return "", err
	}
	mdm := h.Cfg.MDM
	if mdm == nil {
		if mdm, err = LoadMDM("", mappings.Options{Zone: time.UTC}); err != nil {
			return "", err
		}
		h.Cfg.MDM = mdm
	}
	msg, err := mdm.Build(h.noteInput(note, pat, visit, author, docID))
	if err != nil {
		return "", &connectors.Error{Kind: connectors.Permanent, Code: "BUILD", Message: err.Error()}
	}
	doc := &connectors.Document{Note: note, ID: docID, Authority: pat.authority, MRN: pat.mrn, Visit: visit, Author: author, MDM: msg}
	if err := h.recordSending(note.ID, note.Version, past, h.now()); err != nil {
		return "", err
	}
	if err := h.Target.File(ctx, doc); err != nil {
		var rej *connectors.Rejected
		var def *connectors.Deferred
		var held *connectors.Held
		switch {
		case errors.As(err, &def):
			h.deferred(note.ID, note.Version)
		case !errors.As(err, &rej) && !errors.As(err, &held) && !errors.Is(err, connectors.ErrUnconfirmable):
			// No answer: the send (or the target's resends of it) may
			// still reach the EHR until the answer timeout from now.
			h.unanswered(note.ID, note.Version)
		}
		return "", err
	}
	if err := h.recordFiled(note.ID, note.Version, docID, past); err != nil {
		return "", err
	}
	return docID, h.filedStatus(ctx, note.ID, docID)
}

// filedStatus tells the CRM the note is filed under docID.
func (h *Handler) filedStatus(ctx context.Context, noteID, docID string) error {
	filedAt := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	return h.setStatus(ctx, noteID, map[string]any{h.Cfg.StatusField: "Filed", h.Cfg.DocIDField: docID, h.Cfg.FiledAtField: filedAt, h.Cfg.ErrField: nil})
}

// current reads the note as it is now. A version that is no longer the
// note's content (edited again before it was filed), or a note deleted or
// no longer flagged for the EHR, is superseded: nothing is filed for it.
// byStatus: the log knows nothing of the note (filed by a release before
// the log kept filings, or no log): an edit of a note whose earlier
// version the CRM's status says was filed before this version was made
// becomes a replacement of that document. With the log, the log decides.
func (h *Handler) current(ctx context.Context, note *connectors.Note, byStatus bool) error {
	recs, err := h.byID(ctx, h.Cfg.Object, note.ID, h.Cfg.noteFields(h.CRM)...)
	if err != nil {
		return err
	}
	if len(recs) == 0 || recs[0][h.Cfg.FlagField] != true {
		return errSuperseded
	}
	now := h.Cfg.note(h.CRM, recs[0])
	if now.Version != note.Version {
		return errEdited
	}
	if byStatus && note.Filed == "" && now.Filed != "" && str(recs[0][h.Cfg.StatusField]) == "Filed" {
		// Filed since this version was read: by this version (a retry
		// after a crash, filed at or after the version's time) or by an
		// earlier one (filed before this version existed).
		filedAt, err1 := time.Parse(time.RFC3339Nano, str(recs[0][h.Cfg.FiledAtField]))
		changed, err2 := parseModified(note.Modstamp)
		if err1 == nil && err2 == nil && filedAt.Before(changed) {
			note.Filed = now.Filed
		}
	}
	return nil
}

// patientID is a patient's MRN and assigning authority, and its CRM id.
// authority is as the key holds it (an HD normalised by ns(): its parts
// joined with "^", each escaped by hl7.KeyEscape); assigner is the same HD
// in its parts, unescaped, and mrn is unescaped: what the EHR sent.
type patientID struct {
	authority, mrn, accountID string
	assigner                  hl7.HD
}

// patient resolves the note's link (WhatId): the patient's record, or an
// encounter record, whose patient is then the patient. It returns the
// encounter's id when the note is linked to one.
func (h *Handler) patient(ctx context.Context, whatID string) (patientID, string, error) {
	if whatID == "" {
		return patientID{}, "", &connectors.Held{Reason: "the note is not linked to a patient"}
	}
	accountID, encounterID := whatID, ""
	recs, err := h.byID(ctx, h.Cfg.PatientObject, whatID, h.Cfg.PatientKeyField)
	if err != nil {
		return patientID{}, "", err
	}
	if len(recs) == 0 && h.Cfg.EncounterRule != EncounterNone {
		enc, err := h.byID(ctx, h.Cfg.EncounterObject, whatID, h.Cfg.EncounterPatientField)
		if err != nil {
			return patientID{}, "", err
		}
		if len(enc) > 0 && str(enc[0][h.Cfg.EncounterPatientField]) != "" {
			accountID, encounterID = str(enc[0][h.Cfg.EncounterPatientField]), whatID
			if recs, err = h.byID(ctx, h.Cfg.PatientObject, accountID, h.Cfg.PatientKeyField); err != nil {
				return patientID{}, "", err
			}
		}
	}
	if len(recs) == 0 {
		return patientID{}, "", &connectors.Held{Reason: "the linked patient does not exist"}
	}
	key := str(recs[0][h.Cfg.PatientKeyField])
	i := strings.LastIndexByte(key, '|')
	if key == "" || i == len(key)-1 {
		return patientID{}, "", &connectors.Held{Reason: "the patient has no EHR identifier yet"}
	}
	authority := h.keyPart(key[:max(i, 0)])
	var hd [3]string
	for n, part := range strings.SplitN(authority, "^", 3) {
		hd[n] = hl7.KeyUnescape(part)
	}
	return patientID{authority: authority, mrn: hl7.KeyUnescape(h.keyPart(key[i+1:])), accountID: accountID,
		assigner: hl7.HD{Namespace: hd[0], UniversalID: hd[1], UniversalIDType: hd[2]}}, encounterID, nil
}

// keyPart undoes keysafe() on a part of a Dataverse key: the shipped
// dynamics set escapes the characters a Dataverse alternate key cannot
// hold (mappings.KeySafe), and the EHR must get the identifier as it sent
// it. Salesforce keys are not keysafe()'d. On both, what is left is the
// part as the key holds it, hl7.KeyEscape'd (a "|" or "^" of the value
// written \F\ or \S\): callers unescape the pieces they take apart.
func (h *Handler) keyPart(s string) string {
	if h.CRM != nil && h.CRM.Flavor() == "dataverse" {
		return mappings.KeyUnsafe(s)
	}
	return s
}

// encounter applies the encounter rule and returns the visit number ("" for
// none). linked is the encounter the note's WhatId points at, if any.
func (h *Handler) encounter(ctx context.Context, note *connectors.Note, accountID, linked string) (string, error) {
	rule := h.Cfg.EncounterRule
	if rule == EncounterNone {
		return "", nil
	}
	if note.EncounterID != "" {
		linked = note.EncounterID
	}
	var visit string
	if linked != "" && rule != EncounterOpen {
		recs, err := h.byID(ctx, h.Cfg.EncounterObject, linked, h.Cfg.EncounterKeyField, h.Cfg.EncounterPatientField)
		if err != nil {
			return "", err
		}
		switch {
		case len(recs) == 0:
			return "", &connectors.Held{Reason: "the linked encounter does not exist"}
		case !strings.EqualFold(str(recs[0][h.Cfg.EncounterPatientField]), accountID):
			return "", &connectors.Held{Reason: "the linked encounter belongs to another patient"}
		}
		if visit = hl7.KeyUnescape(h.keyPart(visitNumber(str(recs[0][h.Cfg.EncounterKeyField])))); visit == "" {
			return "", &connectors.Held{Reason: "the linked encounter has no EHR visit number yet"}
		}
	}
	if visit == "" && (rule == EncounterOpen || rule == EncounterLinkOrOpen) {
		where := []connectors.Cond{{Field: h.Cfg.EncounterPatientField, Op: "=", Value: accountID}}
		for _, st := range h.Cfg.ClosedStatuses {
			where = append(where, connectors.Cond{Field: h.Cfg.EncounterStatusField, Op: "!=", Value: st})
		}
		recs, err := h.CRM.Find(ctx, connectors.Query{Object: h.Cfg.EncounterObject, Fields: []string{h.Cfg.EncounterKeyField}, Where: where,
			OrderBy: h.Cfg.EncounterStartField, Desc: true, Limit: 1})
		if err != nil {
			return "", err
		}
		if len(recs) > 0 {
			visit = hl7.KeyUnescape(h.keyPart(visitNumber(str(recs[0][h.Cfg.EncounterKeyField]))))
		}
	}
	if visit == "" && h.Cfg.EncounterRequired {
		return "", &connectors.Held{Reason: "no encounter to file the note against"}
	}
	return visit, nil
}

// visitNumber is the visit number of an encounter key "<authority>|<number>".
func visitNumber(key string) string { return key[strings.LastIndexByte(key, '|')+1:] }

// author returns the EHR provider id of the note's owner: from the map
// file, else from the CRM user's field when one is configured.
func (h *Handler) author(ctx context.Context, ownerID string) (string, error) {
	id := h.Cfg.Authors[ownerID]
	if id == "" && h.Cfg.AuthorField != "" && ownerID != "" {
		recs, err := h.byID(ctx, h.Cfg.AuthorObject, ownerID, h.Cfg.AuthorField)
		if err != nil {
			return "", err
		}
		if len(recs) > 0 {
			id = str(recs[0][h.Cfg.AuthorField])
		}
	}
	if id == "" && h.Cfg.AuthorRequired {
		return "", &connectors.Held{Reason: "the note's author has no EHR provider id"}
	}
	return id, nil
}

// byID reads fields of the record of object with id (none: empty).
func (h *Handler) byID(ctx context.Context, object, id string, fields ...string) ([]map[string]any, error) {
	idField := h.CRM.IDField(object)
	return h.CRM.Find(ctx, connectors.Query{Object: object, Fields: append([]string{idField}, fields...), Where: []connectors.Cond{{Field: idField, Op: "=", Value: id}}})
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
	return h.CRM.Update(ctx, h.Cfg.Object, noteID, fields)
}

// HeldWaker tries held notes again when EHR data has been applied to the
// CRM (the patient's identifier or the encounter a note waits for may just
// have arrived), at most once per Every (default 5s), instead of waiting
// for their next retry. Applied is meant for pipeline.Options.Applied.
type HeldWaker struct {
	Log *checkpoint.Log
	// Notify wakes the pipeline when notes were made ready.
	Notify func()
	Every  time.Duration
	Logger *slog.Logger

	mu      sync.Mutex
	last    time.Time
	pending bool // a wake is scheduled for the end of the interval
}

// Applied makes held notes ready now, or at the end of the current
// interval when one ran less than Every ago.
func (w *HeldWaker) Applied() {
	every := w.Every
	if every <= 0 {
		every = 5 * time.Second
	}
	w.mu.Lock()
	if wait := every - time.Since(w.last); wait > 0 {
		if !w.pending {
			w.pending = true
			time.AfterFunc(wait, w.Applied)
		}
		w.mu.Unlock()
		return
	}
	w.last, w.pending = time.Now(), false
	w.mu.Unlock()
	n, err := w.Log.Hasten(func(r *checkpoint.Record) bool {
		return r.Kind == checkpoint.KindNote && connectors.HeldReason(r.Reason)
	})
	if err != nil {
		if w.Logger != nil && !errors.Is(err, checkpoint.ErrClosed) {
			w.Logger.Warn("could not make held notes ready", "err", err)
		}
		return
	}
	if n > 0 && w.Notify != nil {
		w.Notify()
	}
}

package writeback

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/configs"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// NoteInput is what the MDM mapping reads: a note version with what was
// resolved for it, as JSON (resourceType CoordinatorNote) so that the
// mapping reads it with FHIRPath like any FHIR resource. The shipped
// mapping, configs/mappings/writeback/mdm.yaml, documents every field.
type NoteInput struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Version      string `json:"version"`
	Trigger      string `json:"trigger"`
	DocumentID   string `json:"documentId"`
	Replaces     string `json:"replaces,omitempty"`
	ControlID    string `json:"controlId"`
	Modified     string `json:"modified"`
	Subject      string `json:"subject,omitempty"`
	Text         string `json:"text,omitempty"`
	Lines        []Line `json:"lines"`
	Patient      struct {
		Identifier string `json:"identifier"`
		// Authority is the assigning authority as the patient key holds
		// it (its parts joined with "^", each hl7.KeyEscape'd);
		// Namespace, UniversalID and UniversalIDType are its parts as
		// the EHR sent them, for PID-3.4.
		Authority       string `json:"authority,omitempty"`
		Namespace       string `json:"namespace,omitempty"`
		UniversalID     string `json:"universalId,omitempty"`
		UniversalIDType string `json:"universalIdType,omitempty"`
	} `json:"patient"`
	Visit    string  `json:"visit,omitempty"`
	Author   *Author `json:"author,omitempty"`
	Owner    string  `json:"owner,omitempty"`
	Sender   Party   `json:"sender"`
	Receiver Party   `json:"receiver"`
}

// Line is one line of a note's text.
type Line struct {
	Text string `json:"text"`
}

// Author is the note's author in the EHR.
type Author struct {
	ID string `json:"id"`
}

// Party is an HL7 application and facility.
type Party struct {
	Application string `json:"application,omitempty"`
	Facility    string `json:"facility,omitempty"`
}

// MDMBuilder builds the MDM message of a note version through an hl7
// output mapping (see docs/mappings.md), so that a site can change what
// goes where without a new ehrbridge.
type MDMBuilder struct {
	set *mappings.Set
}

// LoadMDM compiles the MDM mapping at path (a file or a directory of hl7
// output mappings); "" is the built-in one. It checks the mapping on a
// sample note: it must keep MSH-10 and TXA-12.1 to their sources.
func LoadMDM(path string, opts mappings.Options) (*MDMBuilder, error) {
	var set *mappings.Set
	if path == "" {
		m, err := mappings.Compile(configs.MDMMappingName, configs.MDMMapping, opts)
		if err != nil {
			return nil, err
		}
		set = &mappings.Set{Mappings: []*mappings.Mapping{m}}
	} else {
		s, err := mappings.Load([]string{path}, opts)
		if err != nil {
			return nil, err
		}
		set = s
	}
	where := path
	if where == "" {
		where = configs.MDMMappingName
	}
	for _, m := range set.Mappings {
		if m.Output() != mappings.OutputHL7 {
			return nil, fmt.Errorf("%s: the MDM mapping must say output: hl7", m.File)
		}
	}
	b := &MDMBuilder{set: set}
	in := sampleNote()
	if !b.accepts(in) {
		return nil, fmt.Errorf("%s: no mapping accepts the note (when: {fhir: CoordinatorNote})", where)
	}
	if _, err := b.Build(in); err != nil {
		return nil, fmt.Errorf("%s: on a sample note: %w", where, err)
	}
	return b, nil
}

func (b *MDMBuilder) accepts(in *NoteInput) bool {
	data, _ := json.Marshal(in)
	for _, m := range b.set.Mappings {
		if m.Accepts(mappings.Input{FHIR: data}) {
			return true
		}
	}
	return false
}

// sampleNote is a made-up note for checking a mapping at load.
func sampleNote() *NoteInput {
	in := &NoteInput{ResourceType: "CoordinatorNote", ID: "00TSAMPLE", Version: "0123456789abcdef", Trigger: "T02",
		DocumentID: "EHRB-00TSAMPLE", ControlID: "EHRB0123456789abcdef", Modified: "20260101120000+0000",
		Subject: "Sample", Text: "line one\nline two", Lines: []Line{{"Sample"}, {"line one"}, {"line two"}},
		Visit: "V1", Author: &Author{ID: "P1"}, Owner: "005SAMPLE"}
	in.Patient.Identifier, in.Patient.Authority, in.Patient.Namespace = "MRN1", "HOSP", "HOSP"
	return in
}

// errMDM marks a mapping that broke ehrbridge's part of the message.
var errMDM = errors.New("the MDM mapping must set MSH-10 from controlId and TXA-12.1 from documentId")

// Build maps the note into an MDM message. The message starts as an MSH
// with the default delimiters, UTF-8, MSH-7 the note's time and MSH-10 its
// control id; each op then writes one segment.
func (b *MDMBuilder) Build(in *NoteInput) (*hl7.Message, error) {
	data, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	res, err := b.set.Map(mappings.Input{FHIR: data})
	if err != nil {
		return nil, err
	}
	m := hl7.NewMessage("MDM", in.Trigger, "MDM_T02", "2.5.1")
	if err := m.Set(hl7.MustPath("MSH-10"), in.ControlID); err != nil {
		return nil, err
	}
	if err := m.Set(hl7.MustPath("MSH-7"), in.Modified); err != nil {
		return nil, err
	}
	if err := applySegments(m, res.Ops); err != nil {
		return nil, err
	}
	if m.Header().ControlID != in.ControlID || m.Get(hl7.MustPath("TXA-12.1")).String() != in.DocumentID {
		return nil, errMDM
	}
	return m, nil
}

// applySegments writes the ops of hl7 output mappings into m: an MSH op
// into its header, every other op as a new segment.
func applySegments(m *hl7.Message, ops []mappings.Op) error {
	header := false
	for _, op := range ops {
		seg := m.Segment("MSH", 1)
		if op.Object == "MSH" {
			if header {
				return fmt.Errorf("mapping %s: a message has one MSH; only one op may write it", op.Mapping)
			}
			header = true
		} else {
			s, err := m.AddSegment(op.Object)
			if err != nil {
				return fmt.Errorf("mapping %s: %w", op.Mapping, err)
			}
			seg = s
		}
		for _, f := range op.Fields {
			p, err := hl7.ParsePath(f.Name)
			if err != nil {
				return fmt.Errorf("mapping %s: %w", op.Mapping, err)
			}
			var text string
			switch f.Value.Kind {
			case mappings.Null:
				if err := seg.SetRaw(p, `""`); err != nil {
					return fmt.Errorf("mapping %s, %s: %w", op.Mapping, f.Name, err)
				}
				continue
			case mappings.Bool:
				text = map[bool]string{true: "Y", false: "N"}[f.Value.Text == "true"]
			case mappings.Ref:
				return fmt.Errorf("mapping %s, %s: a reference cannot be written into an HL7 field", op.Mapping, f.Name)
			default:
				text = f.Value.Text
			}
			if err := seg.Set(p, text); err != nil {
				return fmt.Errorf("mapping %s, %s: %w", op.Mapping, f.Name, err)
			}
		}
	}
	return nil
}

// noteInput assembles the mapping's input for a note version.
func (h *Handler) noteInput(note *connectors.Note, pat patientID, visit, author, docID string) *NoteInput {
	trigger := "T02"
	in := &NoteInput{ResourceType: "CoordinatorNote", ID: note.ID, Version: note.Version, DocumentID: docID,
		ControlID: ControlID(note), Subject: note.Subject, Text: note.Text, Visit: visit, Owner: note.OwnerID,
		Sender:   Party{Application: h.Cfg.SendingApp, Facility: h.Cfg.SendingFacility},
		Receiver: Party{Application: h.Cfg.ReceivingApp, Facility: h.Cfg.ReceivingFacility}}
	if note.Filed != "" {
		trigger, in.Replaces = h.Cfg.ReplaceTrigger, note.Filed
	}
	in.Trigger = trigger
	in.Modified = hl7.FormatTime(time.Now())
	if t, err := parseModified(note.Modstamp); err == nil {
		in.Modified = hl7.FormatTime(t)
	}
	in.Patient.Identifier, in.Patient.Authority = pat.mrn, pat.authority
	in.Patient.Namespace, in.Patient.UniversalID, in.Patient.UniversalIDType = pat.assigner.Namespace, pat.assigner.UniversalID, pat.assigner.UniversalIDType
	if author != "" {
		in.Author = &Author{ID: author}
	}
	if note.Subject != "" {
		in.Lines = append(in.Lines, Line{note.Subject})
	}
	for _, l := range strings.Split(strings.ReplaceAll(note.Text, "\r\n", "\n"), "\n") {
		in.Lines = append(in.Lines, Line{l})
	}
	return in
}

package ehr

import (
	"crypto/sha256"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// RecordKey is the durable identity of an inbound HL7 message: source name,
// sending application, sending facility and control id, joined by "|".
func RecordKey(source string, h hl7.Header) string {
	return source + "|" + h.SendingApp + "|" + h.SendingFacility + "|" + h.ControlID
}

// ContentHash hashes a message as it stands after segment terminators are
// normalised, leaving out the fields in ignore (whole fields; a component
// or repetition in a path widens to its field). It is what tells a
// retransmit from a reused control id.
func ContentHash(m *hl7.Message, ignore []hl7.Path) [32]byte {
	h := sha256.New()
	seen := map[string]int{}
	sep := []byte{m.Delimiters().Field}
	for _, seg := range m.Segments() {
		id := seg.Name()
		seen[id]++
		h.Write([]byte(id))
		for f := 1; f <= seg.NumFields(); f++ {
			h.Write(sep)
			if !ignored(ignore, id, seen[id], f) {
				h.Write([]byte(seg.Field(f)))
			}
		}
		h.Write([]byte{'\r'})
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func ignored(ignore []hl7.Path, id string, occurrence, field int) bool {
	for _, p := range ignore {
		rep := p.SegmentRep
		if rep < 1 {
			rep = 1
		}
		if p.Segment == id && p.Field == field && (p.SegmentRep == 0 || rep == occurrence) {
			return true
		}
	}
	return false
}

// LaneKey is the patient identity that orders a message's processing: the
// first PID-3 repetition's id and assigning authority. Until a mapping
// names another, that is what keeps one patient's events in order. A
// message without PID gets a lane of its own.
func LaneKey(m *hl7.Message) string {
	id := m.Get(hl7.Path{Segment: "PID", Field: 3, Rep: 1, Component: 1}).String()
	if id == "" {
		return ""
	}
	return id + "^" + m.Get(hl7.Path{Segment: "PID", Field: 3, Rep: 1, Component: 4, Subcomponent: 1}).String()
}

package ehr

import (
	"crypto/sha256"
	"strings"
	"sync"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// RecordKey is the durable identity of an inbound HL7 message: source name,
// the whole sending application (MSH-3) and sending facility (MSH-4)
// designators, and the control id (MSH-10), joined by "|". The designators
// are rendered by hl7.HD.Normalized (namespace, universal id and its type,
// trimmed, trailing empty components dropped), so that senders known only
// by an OID stay apart, while a namespace-only sender keeps the key that
// earlier releases gave it. "\", "^" and "|" inside the parts are
// escaped (\E\ \S\ \F\): no crafted value can forge another sender's key.
func RecordKey(source string, h hl7.Header) string {
	key, _ := recordKeys(source, h)
	return key
}

// recordKeys returns RecordKey and, when it differs, LegacyRecordKey
// ("" otherwise), building the legacy key only then: on the path every
// message takes, a namespace-only sender costs one key, as before.
func recordKeys(source string, h hl7.Header) (key, legacy string) {
	app, fac, id := h.SendingApp.Normalized(), h.SendingFacility.Normalized(), hl7.KeyEscape(h.ControlID)
	key = source + "|" + app + "|" + fac + "|" + id
	if app != h.SendingApp.Namespace || fac != h.SendingFacility.Namespace || id != h.ControlID {
		legacy = LegacyRecordKey(source, h)
	}
	return key, legacy
}

// LegacyRecordKey is the key releases before issue 25 gave a message:
// MSH-3.1 and MSH-4.1 only, unescaped. It differs from RecordKey only for
// senders with a universal id, blanks around a namespace, or "\", "^" or
// "|" in a part; the checkpoint consults it so that their retransmits
// across the upgrade still get their original acknowledgment.
func LegacyRecordKey(source string, h hl7.Header) string {
	return source + "|" + h.SendingApp.Namespace + "|" + h.SendingFacility.Namespace + "|" + h.ControlID
}

// ContentHash hashes a message as it stands after segment terminators are
// normalised, leaving out the fields in ignore (whole fields; a component
// or repetition in a path widens to its field). It is what tells a
// retransmit from a reused control id.
func ContentHash(m *hl7.Message, ignore []hl7.Path) [32]byte {
	// One pooled buffer hashed once: sha256 has no WriteString, and
	// streaming fields into it would copy each one (this runs per message,
	// on the path the sender waits on).
	bp := hashBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	sep := m.Delimiters().Field
	var seen []segCount // occurrences matter only for segments in ignore
	for _, seg := range m.Segments() {
		id := seg.Name()
		if id != "MSH" && !names(ignore, id) {
			// Nothing of it is ignored: its encoded form is exactly
			// the id and its fields joined by the separator.
			buf = append(seg.AppendEncoded(buf), '\r')
			continue
		}
		occurrence := 0
		if len(ignore) > 0 {
			seen, occurrence = countSegment(seen, id)
		}
		buf = append(buf, id...)
		for f := 1; f <= seg.NumFields(); f++ {
			buf = append(buf, sep)
			if len(ignore) == 0 || !ignored(ignore, id, occurrence, f) {
				buf = append(buf, seg.Field(f)...)
			}
		}
		buf = append(buf, '\r')
	}
	sum := sha256.Sum256(buf)
	if cap(buf) <= 1<<20 {
		*bp = buf
		hashBufs.Put(bp)
	}
	return sum
}

var hashBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

type segCount struct {
	id string
	n  int
}

func countSegment(seen []segCount, id string) ([]segCount, int) {
	for i := range seen {
		if seen[i].id == id {
			seen[i].n++
			return seen, seen[i].n
		}
	}
	return append(seen, segCount{id, 1}), 1
}

// LaneKey is the patient identity that orders a message's processing: the
// first PID-3 repetition's id and assigning authority. Until a mapping
// names another, that is what keeps one patient's events in order. A
// message without PID, or whose id is blank (spaces or HL7's null ""),
// gets a lane of its own: blank ids are no identity to share.
func LaneKey(m *hl7.Message) string {
	id := m.Get(hl7.Path{Segment: "PID", Field: 3, Rep: 1, Component: 1}).String()
	if t := strings.TrimSpace(id); t == "" || t == `""` {
		return ""
	}
	return id + "^" + m.Get(hl7.Path{Segment: "PID", Field: 3, Rep: 1, Component: 4, Subcomponent: 1}).String()
}

// names reports whether a path in ignore is in segment id.
func names(ignore []hl7.Path, id string) bool {
	for _, p := range ignore {
		if p.Segment == id {
			return true
		}
	}
	return false
}

func ignored(ignore []hl7.Path, id string, occurrence, field int) bool {
	for _, p := range ignore {
		if p.Segment == id && p.Field == field && (p.SegmentRep == 0 || p.SegmentRep == occurrence) {
			return true
		}
	}
	return false
}

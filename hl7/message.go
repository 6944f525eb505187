package hl7

import (
	"fmt"
	"strings"
)

// Message is one parsed HL7 v2 message. The zero value is not usable; create
// one with Parse, ParseHeader, NewMessage or BuildAck.
type Message struct {
	delims   Delimiters
	segments []*Segment
	cs       charset
}

// Segment is one segment. Fields are kept in encoded form.
type Segment struct {
	msg *Message
	// fields[n] is field n (raw, escaped) and fields[0] the segment id. For
	// MSH, fields[1] is the field separator and fields[2] the encoding
	// characters, so that numbering follows the standard.
	fields []string
}

// Delimiters returns the message's delimiters.
func (m *Message) Delimiters() Delimiters { return m.delims }

// Charset names the character set the message's bytes were read in and are
// written back in ("UTF-8", "ISO 8859-1", ...).
func (m *Message) Charset() string { return m.cs.name }

// Segments returns the message's segments in order. The slice is the
// message's own: do not modify it, use AddSegment.
func (m *Message) Segments() []*Segment { return m.segments }

// Segment returns the n-th (1-based) segment with the given id, or nil.
func (m *Message) Segment(id string, n int) *Segment {
	if n < 1 {
		n = 1
	}
	for _, s := range m.segments {
		if s.fields[0] == id {
			n--
			if n == 0 {
				return s
			}
		}
	}
	return nil
}

// Count returns how many segments with the given id the message has.
func (m *Message) Count(id string) int {
	n := 0
	for _, s := range m.segments {
		if s.fields[0] == id {
			n++
		}
	}
	return n
}

// AddSegment appends a new, empty segment with the given id.
func (m *Message) AddSegment(id string) (*Segment, error) {
	if !validSegmentName(id) || id == "MSH" {
		return nil, fmt.Errorf("hl7: cannot add segment %q: not a valid segment id", safeToken(id))
	}
	s := &Segment{msg: m, fields: []string{id}}
	m.segments = append(m.segments, s)
	return s, nil
}

// Get returns the value at path p (see ParsePath). An absent value is the
// zero Value.
func (m *Message) Get(p Path) Value {
	s := m.Segment(p.Segment, p.SegmentRep)
	if s == nil {
		return Value{}
	}
	return s.Get(p)
}

// GetString parses path and returns its value as a string, decoded at a leaf
// (see Value.String).
func (m *Message) GetString(path string) (string, error) {
	p, err := ParsePath(path)
	if err != nil {
		return "", err
	}
	return m.Get(p).String(), nil
}

// Set writes text at path p, escaping it. Segments up to the addressed
// occurrence are appended when missing. MSH-1 and MSH-2 cannot be set.
func (m *Message) Set(p Path, text string) error {
	return m.set(p, Escape(text, m.delims))
}

// SetRaw writes already-encoded text at path p, for values that carry
// structure or formatting escapes. The caller vouches that raw holds no
// field separator or segment terminator.
func (m *Message) SetRaw(p Path, raw string) error {
	if strings.IndexByte(raw, m.delims.Field) >= 0 || strings.ContainsAny(raw, "\r\n") {
		return fmt.Errorf("hl7: raw value for %s contains a field separator or line break", p)
	}
	return m.set(p, raw)
}

func (m *Message) set(p Path, raw string) error {
	if !m.cs.representable(raw) {
		return fmt.Errorf("hl7: value for %s cannot be written in character set %s", p, m.cs.name)
	}
	n := p.SegmentRep
	if n < 1 {
		n = 1
	}
	have := m.Count(p.Segment)
	if p.Segment == "MSH" && n > have {
		return fmt.Errorf("hl7: cannot add another MSH segment")
	}
	for have < n {
		if _, err := m.AddSegment(p.Segment); err != nil {
			return err
		}
		have++
	}
	return m.Segment(p.Segment, n).setRaw(p, raw)
}

// Bytes encodes the message: segments in order, each ended by CR, in the
// message's character set.
func (m *Message) Bytes() []byte {
	n := 0
	for _, s := range m.segments {
		n += s.encodedLen() + 1
	}
	b := make([]byte, 0, n)
	for _, s := range m.segments {
		b = s.appendTo(b)
		b = append(b, '\r')
	}
	if m.cs.enc == nil {
		return b
	}
	// Values set through Set and SetRaw were checked to be representable
	// and parsed text came from this character set; anything else (an
	// acknowledgment's configured application name, say) degrades to '?'
	// rather than failing.
	return m.cs.encodeLossy(string(b))
}

// Format prints a summary (message type and segment count) rather than the
// content, so that %v of a message in a log or error cannot leak data.
func (m *Message) Format(f fmt.State, verb rune) {
	typ := "?"
	if msh := m.Segment("MSH", 1); msh != nil {
		typ = safeToken(msh.Get(Path{Field: 9}).Raw())
	}
	fmt.Fprintf(f, "hl7.Message{%s, %d segments}", typ, len(m.segments))
}

// Name returns the segment id ("PID").
func (s *Segment) Name() string { return s.fields[0] }

// NumFields returns the highest field number present, trailing empty fields
// included.
func (s *Segment) NumFields() int { return len(s.fields) - 1 }

// Field returns field n in its encoded form, or "" if absent.
func (s *Segment) Field(n int) string {
	if n < 1 || n >= len(s.fields) {
		return ""
	}
	return s.fields[n]
}

// Get returns the value at p within this segment; p.Segment and
// p.SegmentRep are ignored.
func (s *Segment) Get(p Path) Value {
	raw := s.Field(p.Field)
	d := &s.msg.delims
	if s.fields[0] == "MSH" && p.Field <= 2 {
		return Value{raw: raw, leaf: true, verbatim: true, msg: s.msg}
	}
	rep := p.Rep
	if rep < 1 {
		rep = 1
	}
	raw = piece(raw, d.Repetition, rep)
	if p.Component > 0 {
		raw = piece(raw, d.Component, p.Component)
		if p.Subcomponent > 0 {
			raw = piece(raw, d.Subcomponent, p.Subcomponent)
		}
	}
	leaf := true
	switch {
	case p.Component == 0:
		leaf = !containsAny2(raw, d.Component, d.Subcomponent)
	case p.Subcomponent == 0:
		leaf = !containsAny2(raw, d.Subcomponent, 0)
	}
	return Value{raw: raw, leaf: leaf, msg: s.msg}
}

// SetField writes text as field n, escaped.
func (s *Segment) SetField(n int, text string) error {
	return s.Set(Path{Field: n}, text)
}

// Set writes text at p within this segment, escaped.
func (s *Segment) Set(p Path, text string) error {
	raw := Escape(text, s.msg.delims)
	if !s.msg.cs.representable(raw) {
		return fmt.Errorf("hl7: value for %s-%d cannot be written in character set %s", s.fields[0], p.Field, s.msg.cs.name)
	}
	return s.setRaw(p, raw)
}

// SetRaw writes already-encoded text at p within this segment (the
// segment part of p is ignored). The caller vouches that raw holds no
// field separator or segment terminator.
func (s *Segment) SetRaw(p Path, raw string) error {
	if strings.IndexByte(raw, s.msg.delims.Field) >= 0 || strings.ContainsAny(raw, "\r\n") {
		return fmt.Errorf("hl7: raw value for %s-%d contains a field separator or line break", s.fields[0], p.Field)
	}
	if !s.msg.cs.representable(raw) {
		return fmt.Errorf("hl7: value for %s-%d cannot be written in character set %s", s.fields[0], p.Field, s.msg.cs.name)
	}
	return s.setRaw(p, raw)
}

// SetFieldRaw writes an already-encoded field (components, repetitions and
// escapes included). The caller vouches that raw holds no field separator
// or segment terminator.
func (s *Segment) SetFieldRaw(n int, raw string) error {
	if strings.IndexByte(raw, s.msg.delims.Field) >= 0 || strings.ContainsAny(raw, "\r\n") {
		return fmt.Errorf("hl7: raw value for %s-%d contains a field separator or line break", s.fields[0], n)
	}
	if !s.msg.cs.representable(raw) {
		return fmt.Errorf("hl7: value for %s-%d cannot be written in character set %s", s.fields[0], n, s.msg.cs.name)
	}
	return s.setRaw(Path{Field: n}, raw)
}

func (s *Segment) setRaw(p Path, raw string) error {
	if p.Field < 1 {
		return fmt.Errorf("hl7: field numbers start at 1")
	}
	if s.fields[0] == "MSH" && p.Field <= 2 {
		return fmt.Errorf("hl7: MSH-1 and MSH-2 hold the delimiters and cannot be set")
	}
	if p.Field >= len(s.fields) {
		// The parser shares one backing array between segments; grow into
		// a fresh one so that neighbours are never overwritten.
		grown := make([]string, p.Field+1)
		copy(grown, s.fields)
		s.fields = grown
	}
	d := &s.msg.delims
	field := s.fields[p.Field]
	if p.Component == 0 && p.Rep <= 1 && !strings.ContainsRune(field, rune(d.Repetition)) {
		s.fields[p.Field] = raw
		return nil
	}
	rep := p.Rep
	if rep < 1 {
		rep = 1
	}
	r := piece(field, d.Repetition, rep)
	if p.Component > 0 {
		c := piece(r, d.Component, p.Component)
		if p.Subcomponent > 0 {
			c = replacePiece(c, d.Subcomponent, p.Subcomponent, raw)
		} else {
			c = raw
		}
		r = replacePiece(r, d.Component, p.Component, c)
	} else {
		r = raw
	}
	s.fields[p.Field] = replacePiece(field, d.Repetition, rep, r)
	return nil
}

// Format prints the segment id and field count, never the content.
func (s *Segment) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "hl7.Segment{%s, %d fields}", s.fields[0], s.NumFields())
}

func (s *Segment) encodedLen() int {
	n := 0
	for i, f := range s.fields {
		if s.fields[0] == "MSH" && i == 1 {
			continue
		}
		n += len(f) + 1
	}
	return n
}

// AppendEncoded appends the segment in its encoded form, without the
// segment terminator, to b.
func (s *Segment) AppendEncoded(b []byte) []byte { return s.appendTo(b) }

func (s *Segment) appendTo(b []byte) []byte {
	fs := s.msg.delims.Field
	b = append(b, s.fields[0]...)
	for i := 1; i < len(s.fields); i++ {
		if i == 1 && s.fields[0] == "MSH" {
			continue // MSH-1 is the separator written before MSH-2
		}
		b = append(b, fs)
		b = append(b, s.fields[i]...)
	}
	return b
}

// piece returns the n-th (1-based) part of s split at sep, without
// allocating. A zero separator means s is never split.
func piece(s string, sep byte, n int) string {
	if sep == 0 {
		if n == 1 {
			return s
		}
		return ""
	}
	for n > 1 {
		i := strings.IndexByte(s, sep)
		if i < 0 {
			return ""
		}
		s = s[i+1:]
		n--
	}
	if i := strings.IndexByte(s, sep); i >= 0 {
		return s[:i]
	}
	return s
}

// replacePiece sets the n-th part of s split at sep to v, adding empty
// parts as needed.
func replacePiece(s string, sep byte, n int, v string) string {
	parts := strings.Split(s, string(sep))
	if s == "" {
		parts = parts[:0]
	}
	for len(parts) < n {
		parts = append(parts, "")
	}
	parts[n-1] = v
	return strings.Join(parts, string(sep))
}

func containsAny2(s string, a, b byte) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] == a && a != 0) || (s[i] == b && b != 0) {
			return true
		}
	}
	return false
}

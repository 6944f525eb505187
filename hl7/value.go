package hl7

import (
	"iter"
	"strings"
)

// Null is the HL7 explicit null: a field holding "" tells the receiver to
// clear the value, unlike an empty field, which leaves it untouched.
const Null = `""`

// Value is what a path addresses: a field repetition, a component or a
// subcomponent. The zero Value is absent.
type Value struct {
	raw      string
	leaf     bool
	verbatim bool // MSH-1 and MSH-2 are never unescaped
	msg      *Message
}

// Raw returns the value in encoded form, as it stands in the message.
func (v Value) Raw() string { return v.raw }

// IsNull reports whether the value is the HL7 explicit null "".
func (v Value) IsNull() bool { return v.raw == Null }

// IsEmpty reports whether the value is absent or empty. An explicit null
// is not empty.
func (v Value) IsEmpty() bool { return v.raw == "" }

// IsLeaf reports whether the value has no components or subcomponents
// below it, so that String decodes it.
func (v Value) IsLeaf() bool { return v.leaf }

// String returns the value with its escape sequences decoded when it is a
// leaf. A value that still has structure below it (a whole field with
// components, say) is returned in encoded form, because decoding it would
// make an escaped "^" indistinguishable from a component separator; address
// its components to read them. Formatting escapes such as \.br\ are kept;
// use Text to render them.
func (v Value) String() string {
	if !v.leaf || v.verbatim || v.msg == nil || v.raw == Null {
		return v.raw
	}
	return unescape(v.raw, &v.msg.delims, v.msg.cs.decodeHexBytes, false)
}

// Text is String with formatting escapes rendered for people: \.br\ and
// \.sp\ become line breaks, highlighting and indentation are dropped. An
// explicit null reads as empty text.
func (v Value) Text() string {
	if v.raw == Null {
		return ""
	}
	if v.msg == nil || v.verbatim || !v.leaf {
		return v.raw
	}
	return unescape(v.raw, &v.msg.delims, v.msg.cs.decodeHexBytes, true)
}

// Component returns component n (1-based) of a field repetition, or the
// zero Value when there is none. Use it on the values Repetitions gives.
func (v Value) Component(n int) Value {
	if v.msg == nil || v.verbatim || n < 1 {
		return Value{}
	}
	d := &v.msg.delims
	raw := piece(v.raw, d.Component, n)
	return Value{raw: raw, leaf: !containsAny2(raw, d.Subcomponent, 0), msg: v.msg}
}

// Subcomponent returns subcomponent n (1-based) of a component.
func (v Value) Subcomponent(n int) Value {
	if v.msg == nil || v.verbatim || n < 1 {
		return Value{}
	}
	raw := piece(v.raw, v.msg.delims.Subcomponent, n)
	return Value{raw: raw, leaf: true, msg: v.msg}
}

// Repetitions yields each repetition of field n of the segment, in order,
// in one pass over the field (reading them one by one with Get is
// quadratic in their number); nothing for an empty field.
func (s *Segment) Repetitions(n int) iter.Seq[Value] {
	return func(yield func(Value) bool) {
		raw := s.Field(n)
		if raw == "" {
			return
		}
		if s.fields[0] == "MSH" && n <= 2 {
			yield(Value{raw: raw, leaf: true, verbatim: true, msg: s.msg})
			return
		}
		d := &s.msg.delims
		for {
			part, rest, more := raw, "", false
			if d.Repetition != 0 {
				if i := strings.IndexByte(raw, d.Repetition); i >= 0 {
					part, rest, more = raw[:i], raw[i+1:], true
				}
			}
			if !yield(Value{raw: part, leaf: !containsAny2(part, d.Component, d.Subcomponent), msg: s.msg}) || !more {
				return
			}
			raw = rest
		}
	}
}

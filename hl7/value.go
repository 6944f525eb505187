package hl7

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

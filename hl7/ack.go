package hl7

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// AckCode is an acknowledgment code (HL7 table 0008).
type AckCode string

// Acknowledgment codes. The A codes answer in original mode or as the
// application acknowledgment of enhanced mode; the C codes are enhanced
// mode's commit acknowledgments.
const (
	AA AckCode = "AA" // application accept
	AE AckCode = "AE" // application error
	AR AckCode = "AR" // application reject
	CA AckCode = "CA" // commit accept
	CE AckCode = "CE" // commit error
	CR AckCode = "CR" // commit reject
)

// IsCommit reports whether c is an enhanced-mode commit acknowledgment.
func (c AckCode) IsCommit() bool { return c == CA || c == CE || c == CR }

// Error codes of HL7 table 0357, as used in ERR segments.
const (
	ErrCodeSegmentSequence    = 100
	ErrCodeRequiredMissing    = 101
	ErrCodeDataType           = 102
	ErrCodeTableValue         = 103
	ErrCodeUnsupportedMessage = 200
	ErrCodeUnsupportedEvent   = 201
	ErrCodeUnsupportedProcID  = 202
	ErrCodeUnsupportedVersion = 203
	ErrCodeUnknownKey         = 204
	ErrCodeDuplicateKey       = 205
	ErrCodeRecordLocked       = 206
	ErrCodeInternal           = 207
)

var errCodeText = map[int]string{
	0:   "Message accepted",
	100: "Segment sequence error",
	101: "Required field missing",
	102: "Data type error",
	103: "Table value not found",
	200: "Unsupported message type",
	201: "Unsupported event code",
	202: "Unsupported processing id",
	203: "Unsupported version id",
	204: "Unknown key identifier",
	205: "Duplicate key identifier",
	206: "Application record locked",
	207: "Application internal error",
}

// ErrDetail is one ERR segment: where the problem is, its HL7 error code
// (table 0357) and a text for the sender's operators. Text must not quote
// patient data: it travels back to the EHR and into its logs.
type ErrDetail struct {
	Segment  string // segment id, e.g. "MSH"
	SegSeq   int    // occurrence of the segment, 1-based (0 = 1)
	Field    int    // field position, 0 if the error concerns the whole segment
	Code     int    // table 0357
	Severity string // "E" (default), "W" or "I"
	Text     string
}

// Header is the part of MSH that routing, keys and acknowledgments need,
// decoded.
type Header struct {
	// MSH-3 to MSH-6, whole: a sender named only by an OID has an empty
	// namespace id (HD.1).
	SendingApp, SendingFacility     HD
	ReceivingApp, ReceivingFacility HD
	Type, Trigger, Structure        string // MSH-9.1, MSH-9.2, MSH-9.3
	ControlID                       string // MSH-10
	ProcessingID                    string // MSH-11.1
	Version                         string // MSH-12.1
	AcceptAckType, AppAckType       string // MSH-15, MSH-16
}

// HD is a hierarchic designator (HL7 data type HD), decoded: namespace id
// (HD.1), universal id (HD.2) and universal id type (HD.3, a code of
// HL7 table 0301 such as ISO, DNS or UUID).
type HD struct {
	Namespace, UniversalID, UniversalIDType string
}

// IsZero reports whether every component is empty (or blank).
func (h HD) IsZero() bool {
	return strings.TrimSpace(h.Namespace) == "" && strings.TrimSpace(h.UniversalID) == "" && strings.TrimSpace(h.UniversalIDType) == ""
}

// Normalized renders the designator as one comparable string: components
// trimmed of surrounding blanks, the universal id type upper-cased (it is
// a code of table 0301, and senders write both "ISO" and "iso"; namespace
// and universal id are identifiers, so their case is kept), trailing empty
// components dropped, joined with "^". A namespace-only HD thus renders
// as its namespace. Within a component, "\", "^" and "|" are written as
// \E\, \S\ and \F\, so that two different designators never share a
// rendering and the rendering never contains a "|".
func (h HD) Normalized() string {
	parts := [3]string{
		KeyEscape(strings.TrimSpace(h.Namespace)),
		KeyEscape(strings.TrimSpace(h.UniversalID)),
		KeyEscape(strings.ToUpper(strings.TrimSpace(h.UniversalIDType))),
	}
	n := 3
	for n > 0 && parts[n-1] == "" {
		n--
	}
	if n <= 1 {
		return parts[0] // the common namespace-only HD: no allocation
	}
	return strings.Join(parts[:n], "^")
}

// KeyEscape writes s so that it holds no "|" or "^" and no "\" other than
// as the start of \E\, \S\ or \F\: a value that can be joined with
// "|" into a key nobody can forge with a crafted component.
func KeyEscape(s string) string {
	if !strings.ContainsAny(s, "\\^|") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			b.WriteString(`\E\`)
		case '^':
			b.WriteString(`\S\`)
		case '|':
			b.WriteString(`\F\`)
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// KeyUnescape reverses KeyEscape: \E\, \S\ and \F\ become "\", "^"
// and "|" again; anything else is kept as it is.
func KeyUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	return keyUnescaper.Replace(s)
}

var keyUnescaper = strings.NewReplacer(`\E\`, `\`, `\S\`, "^", `\F\`, "|")

// Header returns the decoded header fields.
func (m *Message) Header() Header {
	msh := m.Segment("MSH", 1)
	if msh == nil {
		return Header{}
	}
	get := func(f, c int) string { return msh.Get(Path{Field: f, Component: c}).String() }
	hd := func(f int) HD { return HD{get(f, 1), get(f, 2), get(f, 3)} }
	return Header{
		SendingApp: hd(3), SendingFacility: hd(4),
		ReceivingApp: hd(5), ReceivingFacility: hd(6),
		Type: get(9, 1), Trigger: get(9, 2), Structure: get(9, 3),
		ControlID:    msh.Get(Path{Field: 10}).String(),
		ProcessingID: get(11, 1), Version: get(12, 1),
		// Blank is not valued: some senders pad MSH-15 with a space,
		// which must not switch on enhanced mode.
		AcceptAckType: strings.TrimSpace(get(15, 1)), AppAckType: strings.TrimSpace(get(16, 1)),
	}
}

// HeaderError is a problem with MSH that the sender must fix; it converts to
// an ERR segment.
type HeaderError struct {
	Field  int
	Code   int
	Reason string
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("hl7: MSH-%d: %s", e.Field, e.Reason)
}

// Detail returns the error as an ERR segment's content.
func (e *HeaderError) Detail() ErrDetail {
	return ErrDetail{Segment: "MSH", SegSeq: 1, Field: e.Field, Code: e.Code, Text: e.Reason}
}

// CheckHeader verifies the MSH fields a receiver needs to accept a message
// (see Header.Check).
func (m *Message) CheckHeader() []*HeaderError { return m.Header().Check() }

// Check verifies the header fields a receiver needs to accept a message:
// message type (MSH-9.1), control id (MSH-10), processing id (MSH-11) and
// version (MSH-12). It returns every problem found.
func (h Header) Check() []*HeaderError {
	var errs []*HeaderError
	if h.Type == "" {
		errs = append(errs, &HeaderError{Field: 9, Code: ErrCodeRequiredMissing, Reason: "message type is missing"})
	}
	if h.ControlID == "" {
		errs = append(errs, &HeaderError{Field: 10, Code: ErrCodeRequiredMissing, Reason: "message control id is missing"})
	} else if len(h.ControlID) > 199 {
		errs = append(errs, &HeaderError{Field: 10, Code: ErrCodeDataType, Reason: "message control id is longer than 199 characters"})
	}
	switch h.ProcessingID {
	case "":
		errs = append(errs, &HeaderError{Field: 11, Code: ErrCodeRequiredMissing, Reason: "processing id is missing"})
	case "P", "D", "T":
	default:
		errs = append(errs, &HeaderError{Field: 11, Code: ErrCodeUnsupportedProcID, Reason: "processing id must be P, D or T"})
	}
	if !AckCondition(h.AcceptAckType).Valid() {
		errs = append(errs, &HeaderError{Field: 15, Code: ErrCodeTableValue, Reason: "accept acknowledgment type must be AL, NE, ER or SU (table 0155)"})
	}
	if !AckCondition(h.AppAckType).Valid() {
		errs = append(errs, &HeaderError{Field: 16, Code: ErrCodeTableValue, Reason: "application acknowledgment type must be AL, NE, ER or SU (table 0155)"})
	}
	if h.Version == "" {
		errs = append(errs, &HeaderError{Field: 12, Code: ErrCodeRequiredMissing, Reason: "version id is missing"})
	} else if !strings.HasPrefix(h.Version, "2.") {
		errs = append(errs, &HeaderError{Field: 12, Code: ErrCodeUnsupportedVersion, Reason: "version id must be 2.x"})
	}
	return errs
}

// AckCondition is a value of HL7 table 0155, the conditions under which
// MSH-15 (accept acknowledgment type) and MSH-16 (application
// acknowledgment type) ask for an acknowledgment.
type AckCondition string

// Table 0155 values.
const (
	AckAlways    AckCondition = "AL"
	AckNever     AckCondition = "NE"
	AckOnError   AckCondition = "ER" // error/reject conditions only
	AckOnSuccess AckCondition = "SU" // successful completion only
)

// Valid reports whether c is a value of table 0155, or empty (not valued).
func (c AckCondition) Valid() bool {
	switch c {
	case "", AckAlways, AckNever, AckOnError, AckOnSuccess:
		return true
	}
	return false
}

// Wants reports whether an acknowledgment is due under c for an outcome
// that succeeded or not. An empty condition (field not valued) asks for
// none: it only arises in enhanced mode, where the other field is valued.
func (c AckCondition) Wants(success bool) bool {
	switch c {
	case AckAlways:
		return true
	case AckOnError:
		return !success
	case AckOnSuccess:
		return success
	}
	return false
}

// Enhanced reports whether the message asks for enhanced-mode
// acknowledgments: MSH-15 or MSH-16 valued. With both empty the original
// mode applies: one application acknowledgment (AA, AE or AR).
func (h Header) Enhanced() bool { return h.AcceptAckType != "" || h.AppAckType != "" }

// AckOptions tune BuildAck. Zero values are filled in.
type AckOptions struct {
	ControlID string    // MSH-10 of the acknowledgment; default: random
	Time      time.Time // MSH-7; default: now
	// SendingApp and SendingFacility, when set, replace MSH-3 and MSH-4 of
	// the acknowledgment (default: the inbound MSH-5 and MSH-6).
	SendingApp, SendingFacility string
}

// BuildAck builds the acknowledgment of in: MSH with sender and receiver
// swapped (MSH-3/4 from the inbound MSH-5/6 and the reverse), MSH-9
// "ACK^<trigger>^ACK", MSH-11, MSH-12 and MSH-18 echoed, MSA-1 code, MSA-2
// the inbound control id, MSA-3 text when given, and one ERR per detail,
// in the layout of the message's version (ERR-1 before v2.5, ERR-2..4
// from v2.5 on). in may come from ParseHeader.
func BuildAck(in *Message, code AckCode, text string, errs []ErrDetail, opts AckOptions) *Message {
	d := DefaultDelimiters
	var msh *Segment
	if in != nil {
		d = in.delims
		msh = in.Segment("MSH", 1)
	}
	raw := func(f int) string {
		if msh == nil {
			return ""
		}
		return msh.Field(f)
	}
	ack := &Message{delims: d, cs: utf8Charset}
	if in != nil {
		ack.cs = in.cs
	}
	if opts.ControlID == "" {
		opts.ControlID = NewControlID()
	}
	if opts.Time.IsZero() {
		opts.Time = time.Now()
	}
	version := piece(raw(12), d.Component, 1)
	trigger := piece(piece(raw(9), d.Repetition, 1), d.Component, 2)
	msgType := "ACK"
	if trigger != "" {
		msgType = "ACK" + string(d.Component) + trigger + string(d.Component) + "ACK"
	}
	procID := raw(11)
	if procID == "" {
		procID = "P"
	}
	f := make([]string, 19)
	f[0], f[1], f[2] = "MSH", string(d.Field), d.EncodingCharacters()
	f[3], f[4], f[5], f[6] = raw(5), raw(6), raw(3), raw(4)
	if opts.SendingApp != "" {
		f[3] = Escape(opts.SendingApp, d)
	}
	if opts.SendingFacility != "" {
		f[4] = Escape(opts.SendingFacility, d)
	}
	f[7] = ackTime(opts.Time, d)
	f[9] = msgType
	f[10] = Escape(opts.ControlID, d)
	f[11] = procID
	f[12] = raw(12)
	f[18] = raw(18)
	f = trimTrailingEmpty(f, 13)
	ack.segments = append(ack.segments, &Segment{msg: ack, fields: f})

	msa := []string{"MSA", string(code), raw(10)}
	if text != "" {
		msa = append(msa, ackText(text, d))
	}
	ack.segments = append(ack.segments, &Segment{msg: ack, fields: msa})
	for _, e := range errs {
		ack.segments = append(ack.segments, &Segment{msg: ack, fields: errFields(e, d, version)})
	}
	return ack
}

// ackText escapes a human text for MSA-3/ERR and bounds it to 80
// characters, MSA-3's length in most versions.
func ackText(s string, d Delimiters) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return Escape(s, d)
}

func errFields(e ErrDetail, d Delimiters, version string) []string {
	seq := e.SegSeq
	if seq < 1 {
		seq = 1
	}
	sev := e.Severity
	if sev == "" {
		sev = "E"
	}
	codeText := errCodeText[e.Code]
	c, s := string(d.Component), string(d.Subcomponent)
	pos := ""
	if e.Field > 0 {
		pos = strconv.Itoa(e.Field)
	}
	if versionBefore25(version) {
		// ERR-1 (ELD): segment^sequence^field^code&text&table
		eld := e.Segment + c + strconv.Itoa(seq) + c + pos + c +
			strconv.Itoa(e.Code) + s + Escape(codeText, d) + s + "HL70357"
		return []string{"ERR", eld}
	}
	loc := ""
	if e.Segment != "" {
		loc = e.Segment + c + strconv.Itoa(seq) + c + pos
	}
	code := strconv.Itoa(e.Code) + c + Escape(codeText, d) + c + "HL70357"
	f := []string{"ERR", "", loc, code, sev, "", "", "", ""}
	if e.Text != "" {
		f[8] = ackText(e.Text, d) // ERR-8 user message
	}
	return trimTrailingEmpty(f, 5)
}

func versionBefore25(v string) bool {
	switch {
	case v == "":
		return false
	case strings.HasPrefix(v, "2.1"), strings.HasPrefix(v, "2.2"), strings.HasPrefix(v, "2.3"), strings.HasPrefix(v, "2.4"):
		return len(v) == 3 || v[3] == '.'
	}
	return false
}

func trimTrailingEmpty(f []string, min int) []string {
	for len(f) > min && f[len(f)-1] == "" {
		f = f[:len(f)-1]
	}
	return f
}

// FormatTime formats t as an HL7 DTM with milliseconds and UTC offset:
// YYYYMMDDHHMMSS.SSS+ZZZZ.
func FormatTime(t time.Time) string {
	return t.Format("20060102150405.000-0700")
}

// ackTime is FormatTime for an acknowledgment written with delimiters d:
// a DTM's "." (before the fraction) or sign (before the offset) that is
// one of the message's delimiters would split MSH-7, so that part is left
// out (both are optional in a DTM). Digits are never delimiters.
func ackTime(t time.Time, d Delimiters) string {
	isDelim := func(c byte) bool {
		return c == d.Field || c == d.Component || c == d.Repetition || c == d.Escape || c == d.Subcomponent || (d.Truncation != 0 && c == d.Truncation)
	}
	fraction, offset := !isDelim('.'), !isDelim('+') && !isDelim('-')
	switch {
	case fraction && offset:
		return FormatTime(t)
	case offset:
		return t.Format("20060102150405-0700")
	case fraction:
		// Without an offset the time reads as the receiver's local time,
		// which for a sender on the same site is t's own zone.
		return t.Format("20060102150405.000")
	}
	return t.Format("20060102150405")
}

// NewControlID returns a random 20-character message control id.
func NewControlID() string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("hl7: no randomness: " + err.Error())
	}
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// Ack returns the acknowledgment code (MSA-1), the acknowledged control id
// (MSA-2) and text (MSA-3, or ERR-8 / ERR-3.2 when MSA-3 is empty) of an ACK
// message. ok is false when the message has no MSA segment.
func (m *Message) Ack() (code AckCode, controlID, text string, ok bool) {
	msa := m.Segment("MSA", 1)
	if msa == nil {
		return "", "", "", false
	}
	code = AckCode(msa.Get(Path{Field: 1}).String())
	controlID = msa.Get(Path{Field: 2}).String()
	text = msa.Get(Path{Field: 3}).String()
	if text == "" {
		if e := m.Segment("ERR", 1); e != nil {
			text = e.Get(Path{Field: 8}).String()
			if text == "" {
				text = e.Get(Path{Field: 3, Component: 2}).String()
			}
		}
	}
	return code, controlID, text, true
}

// NewMessage starts a message with the default delimiters: MSH with MSH-7
// set to now, MSH-9 "type^trigger^structure", a random MSH-10, MSH-11 "P"
// and MSH-12 version. The rest is filled in with Set and AddSegment. It is
// written in UTF-8 and says so in MSH-18.
func NewMessage(msgType, trigger, structure, version string) *Message {
	d := DefaultDelimiters
	m := &Message{delims: d, cs: utf8Charset}
	typ := Escape(msgType, d)
	if trigger != "" || structure != "" {
		typ += string(d.Component) + Escape(trigger, d)
	}
	if structure != "" {
		typ += string(d.Component) + Escape(structure, d)
	}
	f := make([]string, 19)
	f[0], f[1], f[2] = "MSH", string(d.Field), d.EncodingCharacters()
	f[7] = FormatTime(time.Now())
	f[9] = typ
	f[10] = NewControlID()
	f[11] = "P"
	f[12] = Escape(version, d)
	f[18] = "UNICODE UTF-8"
	m.segments = []*Segment{{msg: m, fields: f}}
	return m
}

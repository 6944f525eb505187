package hl7

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// ParseError reports where a message is malformed. It never quotes message
// content, so it is safe to log.
type ParseError struct {
	Segment int    // 1-based segment number; 0 when the problem precedes any segment
	ID      string // segment id, when it is a valid one
	Field   int    // field number, when the problem is within a field
	Offset  int    // byte offset of the problem from the start of the message
	Reason  string
}

func (e *ParseError) Error() string {
	var b bytes.Buffer
	b.WriteString("hl7: ")
	if e.Segment > 0 {
		fmt.Fprintf(&b, "segment %d", e.Segment)
		if e.ID != "" {
			fmt.Fprintf(&b, " (%s)", e.ID)
		}
		if e.Field > 0 {
			fmt.Fprintf(&b, " field %d", e.Field)
		}
		b.WriteString(", ")
	}
	fmt.Fprintf(&b, "byte %d: %s", e.Offset, e.Reason)
	return b.String()
}

// ErrNotMessage is returned (wrapped in a ParseError) for input that does not
// begin with an MSH segment.
var ErrNotMessage = errors.New("not an HL7 v2 message")

var bom = []byte{0xEF, 0xBB, 0xBF}

// Parse parses one HL7 v2 message. Segments may end in CR, LF or CRLF, mixed;
// blank lines and a leading UTF-8 byte order mark are ignored. Batch files
// (FHS/BHS) and files with several messages go through Split first.
func Parse(data []byte) (*Message, error) {
	m, start, err := parseMSH(data)
	if err != nil {
		return nil, err
	}
	text, err := m.cs.decode(data[start:])
	if err != nil {
		return nil, &ParseError{Segment: 1, ID: "MSH", Field: 18, Reason: err.Error()}
	}
	if err := m.split(text, start); err != nil {
		return nil, err
	}
	return m, nil
}

// ParseHeader parses only the MSH segment. It is how a receiver addresses a
// rejection to the sender of a message that Parse refused.
func ParseHeader(data []byte) (*Message, error) {
	m, start, err := parseMSH(data)
	if err != nil {
		return nil, err
	}
	rest := data[start:]
	if i := bytes.IndexAny(rest, "\r\n"); i >= 0 {
		rest = rest[:i]
	}
	text, err := m.cs.decode(rest)
	if err != nil {
		return nil, &ParseError{Segment: 1, ID: "MSH", Field: 18, Reason: err.Error()}
	}
	if err := m.split(text, start); err != nil {
		return nil, err
	}
	return m, nil
}

// parseMSH reads the delimiters and character set and returns a message
// without segments and the offset at which MSH starts.
func parseMSH(data []byte) (*Message, int, error) {
	start := skipLeading(data)
	data = data[start:]
	if len(data) == 0 {
		return nil, 0, &ParseError{Offset: start, Reason: "empty message"}
	}
	if !bytes.HasPrefix(data, []byte("MSH")) {
		reason := "message does not start with an MSH segment"
		if isBatchHeader(data) {
			reason = "batch file (FHS/BHS): split it into messages first"
		}
		return nil, 0, &ParseError{Offset: start, Reason: reason + ": " + ErrNotMessage.Error()}
	}
	line := data
	if i := bytes.IndexAny(line, "\r\n"); i >= 0 {
		line = line[:i]
	}
	if len(line) < 5 {
		return nil, 0, &ParseError{Segment: 1, ID: "MSH", Field: 2, Offset: start + len(line), Reason: "MSH has no field separator and encoding characters"}
	}
	fs := line[3]
	encEnd := bytes.IndexByte(line[4:], fs)
	if encEnd < 0 {
		encEnd = len(line) - 4
	}
	delims, err := parseDelimiters(fs, string(line[4:4+encEnd]))
	if err != nil {
		return nil, 0, &ParseError{Segment: 1, ID: "MSH", Field: 2, Offset: start + 3, Reason: err.Error()}
	}
	declared := piece(nthField(line, fs, 18), delims.Repetition, 1)
	cs, err := chooseCharset(string(declared), data)
	if err != nil {
		return nil, 0, &ParseError{Segment: 1, ID: "MSH", Field: 18, Offset: start, Reason: err.Error()}
	}
	return &Message{delims: delims, cs: cs}, start, nil
}

// nthField returns MSH-n from the raw MSH line (n >= 2).
func nthField(line []byte, fs byte, n int) string {
	return piece(string(line), fs, n)
}

func skipLeading(data []byte) int {
	i := 0
	if bytes.HasPrefix(data, bom) {
		i = len(bom)
	}
	for i < len(data) && (data[i] == '\r' || data[i] == '\n' || data[i] == ' ' || data[i] == '\t') {
		i++
	}
	return i
}

// split cuts text (starting at byte base of the input) into segments and
// fields. All field strings share one backing array: parsing a message costs
// a handful of allocations whatever its size.
func (m *Message) split(text string, base int) error {
	fs := m.delims.Field
	nseg, nfield := 0, 0
	forEachLine(text, func(line string, _ int) bool {
		nseg++
		nfield += 1 + countByte(line, fs)
		return true
	})
	nfield++ // MSH-1, the separator itself
	segs := make([]Segment, nseg)
	m.segments = make([]*Segment, 0, nseg)
	all := make([]string, 0, nfield)
	var perr *ParseError
	forEachLine(text, func(line string, off int) bool {
		n := len(m.segments) + 1
		id := line
		if i := indexByte(line, fs); i >= 0 {
			id = line[:i]
		}
		if !validSegmentName(id) {
			perr = &ParseError{Segment: n, Offset: base + off, Reason: "segment id must be three characters: an upper-case letter, then upper-case letters or digits"}
			return false
		}
		if n > 1 && id == "MSH" {
			perr = &ParseError{Segment: n, ID: id, Offset: base + off, Reason: "a second MSH segment: the input holds more than one message; split it first"}
			return false
		}
		if n > 1 && isBatchHeader([]byte(line)) {
			perr = &ParseError{Segment: n, ID: id, Offset: base + off, Reason: "batch segment inside a message: split the batch first"}
			return false
		}
		first := len(all)
		all = append(all, id)
		rest := line[len(id):]
		if n == 1 {
			all = append(all, string(fs))
		}
		for len(rest) > 0 {
			rest = rest[1:] // the separator
			i := indexByte(rest, fs)
			if i < 0 {
				all = append(all, rest)
				break
			}
			all = append(all, rest[:i])
			rest = rest[i:]
			if len(rest) == 1 {
				all = append(all, "")
				break
			}
		}
		seg := &segs[n-1]
		seg.msg = m
		// Cap at length so that growing one segment never writes into the
		// next one's fields.
		seg.fields = all[first:len(all):len(all)]
		m.segments = append(m.segments, seg)
		return true
	})
	if perr != nil {
		return perr
	}
	if len(m.segments) == 0 || m.segments[0].fields[0] != "MSH" {
		return &ParseError{Offset: base, Reason: "message does not start with an MSH segment"}
	}
	return nil
}

// forEachLine calls fn for every non-blank line of s; lines end in CR, LF or
// CRLF. off is the line's byte offset in s.
func forEachLine(s string, fn func(line string, off int) bool) {
	// The next CR and LF are found with IndexByte (vectorised); each is
	// searched again only once passed, so input without LF costs one scan.
	nextCR, nextLF := -2, -2
	for off := 0; off < len(s); {
		if nextCR != -1 && nextCR < off {
			if nextCR = strings.IndexByte(s[off:], '\r'); nextCR >= 0 {
				nextCR += off
			}
		}
		if nextLF != -1 && nextLF < off {
			if nextLF = strings.IndexByte(s[off:], '\n'); nextLF >= 0 {
				nextLF += off
			}
		}
		end := len(s)
		if nextCR >= 0 {
			end = nextCR
		}
		if nextLF >= 0 && nextLF < end {
			end = nextLF
		}
		line := s[off:end]
		if !isBlank(line) && !fn(line, off) {
			return
		}
		off = end + 1
	}
}

func isBlank(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' && s[i] != '\t' {
			return false
		}
	}
	return true
}

func countByte(s string, c byte) int {
	return strings.Count(s, string(c))
}

func indexByte(s string, c byte) int {
	return strings.IndexByte(s, c)
}

func isBatchHeader(line []byte) bool {
	if len(line) < 4 || isAlnum(line[3]) {
		return false
	}
	switch string(line[:3]) {
	case "FHS", "BHS", "BTS", "FTS":
		return true
	}
	return false
}

// Split cuts a file or stream that may hold several messages, or an HL7
// batch (FHS/BHS ... BTS/FTS), into one byte slice per message, each with
// CR segment terminators. A leading byte order mark, LF or CRLF line ends and
// blank lines are accepted. Batch header and trailer segments are dropped.
func Split(data []byte) ([][]byte, error) {
	var (
		out  [][]byte
		cur  []byte
		line int
		perr error
	)
	start := skipLeading(data)
	text := data[start:]
	forEachLine(string(text), func(l string, off int) bool {
		line++
		b := []byte(l)
		switch {
		case len(b) > 3 && string(b[:3]) == "MSH" && !isAlnum(b[3]):
			if cur != nil {
				out = append(out, cur)
			}
			cur = append(b, '\r')
		case isBatchHeader(b):
			if cur != nil {
				out = append(out, cur)
				cur = nil
			}
		case cur == nil:
			perr = &ParseError{Offset: start + off, Reason: fmt.Sprintf("line %d: expected an MSH, FHS or BHS segment", line)}
			return false
		default:
			cur = append(cur, b...)
			cur = append(cur, '\r')
		}
		return true
	})
	if perr != nil {
		return nil, perr
	}
	if cur != nil {
		out = append(out, cur)
	}
	if len(out) == 0 {
		return nil, &ParseError{Offset: start, Reason: "no MSH segment found: " + ErrNotMessage.Error()}
	}
	return out, nil
}

// ReadHeader reads the MSH of a message that a receiver must answer, even
// one that ParseHeader refuses. ok is false only when there is nobody to
// answer: the data does not start with "MSH" followed by a usable field
// separator. Otherwise m is a header-only message that Header and BuildAck
// accept, and problems lists what is wrong with MSH-1, MSH-2 or MSH-18
// (none when ParseHeader would succeed). When MSH-2 is unusable, m carries
// DefaultDelimiters (with the message's own field separator where that
// does not clash with them) and its fields are the message's, kept as
// they are where that is well-formed under those delimiters and escaped
// otherwise; when MSH-18 is unusable, the fields are read as UTF-8 (or
// ISO 8859-1 when they are not valid UTF-8) and MSH-18 is left empty, so
// that an acknowledgment built from m does not claim a character set it
// is not written in.
func ReadHeader(data []byte) (m *Message, problems []*HeaderError, ok bool) {
	m, perr := ParseHeader(data)
	if perr == nil {
		return m, nil, true
	}
	start := skipLeading(data)
	line := data[start:]
	if i := bytes.IndexAny(line, "\r\n"); i >= 0 {
		line = line[:i]
	}
	if len(line) < 4 || string(line[:3]) != "MSH" || !isDelimiterChar(line[3]) {
		return nil, nil, false
	}
	fs := line[3]
	rest := line[4:]
	enc := rest
	if i := bytes.IndexByte(rest, fs); i >= 0 {
		enc = rest[:i]
	}
	d, err := parseDelimiters(fs, string(enc))
	ownDelims := err == nil
	if err != nil {
		code := ErrCodeDataType
		if len(enc) == 0 {
			code = ErrCodeRequiredMissing
		}
		problems = append(problems, &HeaderError{Field: 2, Code: code, Reason: err.Error()})
		d = DefaultDelimiters
		if !bytes.ContainsRune([]byte(d.EncodingCharacters()), rune(fs)) {
			d.Field = fs
		}
	}
	// Fields split at the message's own separator: raw[0] is MSH-3.
	raw := strings.Split(string(rest), string(fs))[1:]
	declared := ""
	if len(raw) >= 16 {
		declared = raw[15]
		if ownDelims {
			declared = piece(declared, d.Repetition, 1)
		}
	}
	cs, cerr := chooseCharset(declared, data[start:])
	if cerr != nil {
		problems = append(problems, &HeaderError{Field: 18, Code: ErrCodeTableValue, Reason: cerr.Error()})
		cs = utf8Charset
		if !utf8.Valid(line) {
			cs = charset{name: "ISO-8859-1", enc: charmap.ISO8859_1}
		}
		raw[15] = "" // declared is not empty, so raw[15] exists
	}
	m = &Message{delims: d, cs: cs}
	fields := make([]string, 0, len(raw)+3)
	fields = append(fields, "MSH", string(d.Field), d.EncodingCharacters())
	for _, f := range raw {
		text, err := cs.decode([]byte(f))
		if err != nil {
			text = latin1ToUTF8([]byte(f))
		}
		if !ownDelims && !wellFormed(text, d) {
			text = Escape(text, d)
		}
		fields = append(fields, text)
	}
	m.segments = []*Segment{{msg: m, fields: fields}}
	if len(problems) == 0 {
		// ParseHeader refused the header for a reason not found here;
		// name it rather than answer as if nothing were wrong.
		reason := "MSH could not be read"
		if pe, ok := perr.(*ParseError); ok {
			reason = pe.Reason
		}
		problems = append(problems, &HeaderError{Field: 1, Code: ErrCodeDataType, Reason: reason})
	}
	return m, problems, true
}

// wellFormed reports whether raw can stand as a field under d: it holds no
// field separator and every escape character opens a sequence that ends.
func wellFormed(raw string, d Delimiters) bool {
	if strings.IndexByte(raw, d.Field) >= 0 || strings.ContainsAny(raw, "\r\n") {
		return false
	}
	if d.Truncation != 0 && strings.IndexByte(raw, d.Truncation) >= 0 {
		return false
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != d.Escape {
			continue
		}
		j := strings.IndexByte(raw[i+1:], d.Escape)
		if j <= 0 {
			return false
		}
		i += j + 1
	}
	return true
}

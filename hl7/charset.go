package hl7

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
)

// charset is how a message's bytes map to text.
type charset struct {
	name string            // what we decoded with: "UTF-8", "ISO-8859-1", ...
	enc  encoding.Encoding // nil for UTF-8 (and ASCII, a subset)
}

var utf8Charset = charset{name: "UTF-8"}

// iso8859 maps the MSH-18 names of table 0211 to their encodings.
var iso8859 = map[string]*charmap.Charmap{
	"8859/1":  charmap.ISO8859_1,
	"8859/2":  charmap.ISO8859_2,
	"8859/3":  charmap.ISO8859_3,
	"8859/4":  charmap.ISO8859_4,
	"8859/5":  charmap.ISO8859_5,
	"8859/6":  charmap.ISO8859_6,
	"8859/7":  charmap.ISO8859_7,
	"8859/8":  charmap.ISO8859_8,
	"8859/9":  charmap.ISO8859_9,
	"8859/15": charmap.ISO8859_15,
}

// asciiCompatible lists MSH-18 values of table 0211 whose bytes 0x00-0x7F
// are ASCII (besides ASCII, UTF-8 and the ISO 8859 family, handled on
// their own): a message in one of them that is valid UTF-8 (pure ASCII, as
// nearly every header is) reads the same as UTF-8. Their multi-byte
// encodings are not decoded; such a message is refused with a clear
// reason instead of being misread.
var asciiCompatible = map[string]bool{
	"ISO IR14": true, "ISO IR87": true, "ISO IR159": true, // JIS X 0201 / 0208 / 0212 via ISO 2022
	"GB 18030-2000": true, "KS X 1001": true, "CNS 11643-1992": true, "BIG-5": true,
}

// chooseCharset picks the decoding for a message from its declared MSH-18
// (first repetition) and its bytes. What cannot be UTF-8 is read as ISO
// 8859-1, which maps every byte, so nothing is lost. UNICODE (table 0211:
// ISO/IEC 10646 without an encoding form) is read as UTF-8, the only form
// whose bytes can carry an ASCII MSH; UNICODE UTF-16 and UTF-32 cannot, so
// a message that says so is refused.
func chooseCharset(declared string, data []byte) (charset, error) {
	declared = strings.ToUpper(strings.TrimSpace(declared))
	valid := utf8.Valid(data)
	switch {
	case declared == "" || declared == "ASCII" || declared == "UNICODE" || declared == "UNICODE UTF-8" ||
		declared == "UTF-8" || declared == "UTF8" || declared == "ISO IR6" || declared == "ISO IR192":
		if valid {
			return utf8Charset, nil
		}
		return charset{name: "ISO-8859-1", enc: charmap.ISO8859_1}, nil
	case strings.HasPrefix(declared, "8859/") || declared == "ISO IR100":
		if declared == "ISO IR100" {
			declared = "8859/1"
		}
		cm, ok := iso8859[declared]
		if !ok {
			return charset{}, fmt.Errorf("MSH-18 character set is not supported (supported: ASCII, UNICODE, UNICODE UTF-8, 8859/1 to 8859/9, 8859/15)")
		}
		if valid {
			// Pure ASCII reads the same either way; non-ASCII that is valid
			// UTF-8 is almost certainly a mislabelled UTF-8 feed.
			return utf8Charset, nil
		}
		return charset{name: cm.String(), enc: cm}, nil
	case asciiCompatible[declared]:
		if valid {
			return utf8Charset, nil
		}
		return charset{}, fmt.Errorf("MSH-18 character set is supported only for text that is ASCII or UTF-8 (its multi-byte form is not decoded)")
	case strings.HasPrefix(declared, "UNICODE"):
		return charset{}, fmt.Errorf("MSH-18 character set is not supported: of the Unicode encodings only UTF-8 is")
	default:
		// Unknown labels (vendor-specific) are read like an undeclared set
		// rather than refused: the bytes decide.
		return chooseCharset("", data)
	}
}

func (c charset) decode(data []byte) (string, error) {
	if c.enc == nil {
		return string(data), nil
	}
	out, err := c.enc.NewDecoder().Bytes(data)
	if err != nil {
		return "", fmt.Errorf("decoding %s: %w", c.name, err)
	}
	return string(out), nil
}

// decodeHexBytes turns the bytes of a \Xhh..\ escape into text.
func (c charset) decodeHexBytes(b []byte) string {
	if c.enc == nil {
		if utf8.Valid(b) {
			return string(b)
		}
		return latin1ToUTF8(b)
	}
	out, err := c.enc.NewDecoder().Bytes(b)
	if err != nil {
		return latin1ToUTF8(b)
	}
	return string(out)
}

// encode turns text back into the message's bytes.
func (c charset) encode(s string) ([]byte, error) {
	if c.enc == nil {
		return []byte(s), nil
	}
	out, err := c.enc.NewEncoder().Bytes([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("text cannot be written in %s", c.name)
	}
	return out, nil
}

// encodeLossy is encode with unrepresentable characters written as '?'.
func (c charset) encodeLossy(s string) []byte {
	if out, err := c.encode(s); err == nil {
		return out
	}
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf || c.representable(string(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
	}
	out, err := c.encode(b.String())
	if err != nil {
		return []byte(b.String())
	}
	return out
}

// representable reports whether s can be written in this character set.
func (c charset) representable(s string) bool {
	if c.enc == nil {
		return true
	}
	_, err := c.enc.NewEncoder().String(s)
	return err == nil
}

// safeToken shortens a header token for an error message; MSH-18 holds a
// code, but a broken MSH could put anything there.
func safeToken(s string) string {
	if len(s) > 20 {
		s = s[:20] + "..."
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return "(unprintable)"
		}
	}
	return s
}

package hl7

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// unescape decodes the escape sequences of one leaf value. Formatting
// escapes (\.br\, \H\, ...) are kept as they are, with the message's escape
// character, so that text consumers can render them (see Value.Text).
// hexDecode turns the bytes of a \Xhh..\ sequence into text in the message's
// character set. A sequence without its closing escape character is kept
// literally: senders do put lone backslashes in free text.
func unescape(s string, d *Delimiters, hexDecode func([]byte) string, render bool) string {
	esc := d.Escape
	if esc == 0 || strings.IndexByte(s, esc) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != esc {
			b.WriteByte(c)
			i++
			continue
		}
		end := strings.IndexByte(s[i+1:], esc)
		if end < 0 {
			b.WriteString(s[i:])
			break
		}
		seq := s[i+1 : i+1+end]
		whole := s[i : i+end+2]
		i += end + 2
		switch {
		case seq == "F":
			b.WriteByte(d.Field)
		case seq == "S":
			b.WriteByte(d.Component)
		case seq == "T":
			b.WriteByte(d.Subcomponent)
		case seq == "R":
			b.WriteByte(d.Repetition)
		case seq == "E":
			b.WriteByte(d.Escape)
		case seq == "P" && d.Truncation != 0:
			b.WriteByte(d.Truncation)
		case len(seq) > 1 && seq[0] == 'X':
			if raw, ok := decodeHex(seq[1:]); ok {
				b.WriteString(hexDecode(raw))
			} else {
				b.WriteString(whole)
			}
		case render:
			renderFormatting(&b, seq, whole)
		default:
			// Formatting (\.br\, \H\, \N\, \Cxxyy\, \Mxxyyzz\, \Zxx\) and
			// unknown sequences stay intact for text consumers.
			b.WriteString(whole)
		}
	}
	return b.String()
}

func decodeHex(h string) ([]byte, bool) {
	if len(h) == 0 || len(h)%2 != 0 {
		return nil, false
	}
	out := make([]byte, len(h)/2)
	for i := range out {
		v, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		if err != nil {
			return nil, false
		}
		out[i] = byte(v)
	}
	return out, true
}

// Escape encodes text for use as a leaf value under delimiters d: delimiter
// characters become \F\ \S\ \T\ \R\ \E\ (\P\ for the truncation character)
// and CR and LF become \X0D\ and \X0A\ so that they cannot end a segment.
func Escape(s string, d Delimiters) string {
	if !needsEscape(s, &d) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if seq := escapeSeq(c, &d); seq != "" {
			b.WriteByte(d.Escape)
			b.WriteString(seq)
			b.WriteByte(d.Escape)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// EscapeText is Escape for free text (HL7 FT and TX data): line breaks become
// the formatting escape \.br\, which receiving systems display as new lines.
// A CRLF pair counts as one break.
func EscapeText(s string, d Delimiters) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	if !strings.Contains(s, "\n") {
		return Escape(s, d)
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = Escape(l, d)
	}
	return strings.Join(lines, string(d.Escape)+".br"+string(d.Escape))
}

func needsEscape(s string, d *Delimiters) bool {
	for i := 0; i < len(s); i++ {
		if escapeSeq(s[i], d) != "" {
			return true
		}
	}
	return false
}

func escapeSeq(c byte, d *Delimiters) string {
	switch c {
	case 0:
		return ""
	case d.Escape:
		return "E"
	case d.Field:
		return "F"
	case d.Component:
		return "S"
	case d.Subcomponent:
		return "T"
	case d.Repetition:
		return "R"
	case d.Truncation:
		return "P"
	case '\r':
		return "X0D"
	case '\n':
		return "X0A"
	}
	return ""
}

// renderFormatting writes a formatting escape as plain text: \.br\ and
// \.ce\ become a line break, \.sp n\ n of them; highlighting (\H\ \N\),
// indentation, skip and fill commands are dropped; anything else (\Cxxyy\
// character-set switches, \Zxx\ locals) is kept as written.
func renderFormatting(b *strings.Builder, seq, whole string) {
	switch {
	case seq == ".br" || seq == ".ce":
		b.WriteByte('\n')
	case strings.HasPrefix(seq, ".sp"):
		n := 1
		if v, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(seq[3:], "+"))); err == nil && v > 0 && v < 100 {
			n = v
		}
		b.WriteString(strings.Repeat("\n", n))
	case seq == "H" || seq == "N" || seq == ".fi" || seq == ".nf" || strings.HasPrefix(seq, ".in") ||
		strings.HasPrefix(seq, ".ti") || strings.HasPrefix(seq, ".sk"):
	default:
		b.WriteString(whole)
	}
}

// latin1ToUTF8 maps ISO 8859-1 bytes to text (each byte is its code point).
func latin1ToUTF8(b []byte) string {
	n := 0
	for _, c := range b {
		if c < utf8.RuneSelf {
			n++
		} else {
			n += 2
		}
	}
	out := make([]byte, 0, n)
	for _, c := range b {
		out = utf8.AppendRune(out, rune(c))
	}
	return string(out)
}

package hl7

import "fmt"

// Delimiters are the separator and escape characters a message declares in
// MSH-1 and MSH-2. A zero byte means the message does not use that character
// (the truncation character exists from HL7 v2.7 on).
type Delimiters struct {
	Field        byte
	Component    byte
	Repetition   byte
	Escape       byte
	Subcomponent byte
	Truncation   byte
}

// DefaultDelimiters are the delimiters nearly every sender uses: |^~\&.
var DefaultDelimiters = Delimiters{Field: '|', Component: '^', Repetition: '~', Escape: '\\', Subcomponent: '&'}

// EncodingCharacters returns MSH-2 for these delimiters.
func (d Delimiters) EncodingCharacters() string {
	b := make([]byte, 0, 5)
	for _, c := range []byte{d.Component, d.Repetition, d.Escape, d.Subcomponent, d.Truncation} {
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

// parseDelimiters reads the field separator and MSH-2.
func parseDelimiters(field byte, enc string) (Delimiters, error) {
	d := Delimiters{Field: field}
	if len(enc) == 0 {
		return d, fmt.Errorf("MSH-2 (encoding characters) is empty")
	}
	if len(enc) > 5 {
		return d, fmt.Errorf("MSH-2 (encoding characters) has %d characters, at most 5 are allowed", len(enc))
	}
	dst := []*byte{&d.Component, &d.Repetition, &d.Escape, &d.Subcomponent, &d.Truncation}
	for i := 0; i < len(enc); i++ {
		if !isDelimiterChar(enc[i]) {
			// A zero byte would otherwise pass as "character not used".
			return d, fmt.Errorf("delimiter %d (0x%02X) must be a printable, non-alphanumeric ASCII character", i+2, enc[i])
		}
		*dst[i] = enc[i]
	}
	if err := d.validate(); err != nil {
		return d, err
	}
	return d, nil
}

func (d Delimiters) validate() error {
	seen := map[byte]bool{}
	for i, c := range []byte{d.Field, d.Component, d.Repetition, d.Escape, d.Subcomponent, d.Truncation} {
		if c == 0 {
			if i == 0 {
				return fmt.Errorf("field separator is missing")
			}
			continue
		}
		if !isDelimiterChar(c) {
			return fmt.Errorf("delimiter %d (0x%02X) must be a printable, non-alphanumeric ASCII character", i+1, c)
		}
		if seen[c] {
			return fmt.Errorf("delimiter 0x%02X is used twice in MSH-1/MSH-2", c)
		}
		seen[c] = true
	}
	return nil
}

func isDelimiterChar(c byte) bool {
	return c > ' ' && c < 0x7f && !isAlnum(c)
}

func isAlnum(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

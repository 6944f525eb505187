package hl7

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// TestWild runs the parser over the corpus of strangers' messages in
// testdata/wild (see its README.md): every file goes through Split and
// Parse as in TestCorpus, and every message a file-drop sender would cut
// from it (shared.SplitMessages) through Parse and ParseHeader. Nothing
// panics; a failure is a *ParseError whose text quotes no field of the
// input; what parses re-encodes byte for byte and re-parses to the same
// values.
func TestWild(t *testing.T) {
	files := shared.WildFiles(t)
	names := shared.WildNames(files)
	var messages, parsed, refused int
	for _, name := range names {
		data := files[name]
		t.Run(name, func(t *testing.T) {
			// The whole file, the way TestCorpus reads the shared corpus.
			err := noPanic(func() error {
				msgs, parts, err := parseFile(data)
				if err != nil {
					return err
				}
				for i, m := range msgs {
					if err := roundTrip(m, parts[i]); err != nil {
						return fmt.Errorf("message %d: %w", i+1, err)
					}
				}
				return nil
			})
			checkCleanError(t, "file", err, data)
			// Each message alone, as an MLLP frame would carry it.
			for i, raw := range shared.SplitMessages(data) {
				messages++
				err := noPanic(func() error {
					_, err := ParseHeader(raw)
					return err
				})
				checkCleanError(t, fmt.Sprintf("message %d header", i+1), err, raw)
				err = noPanic(func() error {
					m, err := Parse(raw)
					if err != nil {
						refused++
						return err
					}
					parsed++
					return roundTrip(m, raw)
				})
				checkCleanError(t, fmt.Sprintf("message %d", i+1), err, raw)
			}
		})
	}
	t.Logf("wild corpus: %d files, %d messages, %d parsed, %d refused with a ParseError", len(files), messages, parsed, refused)
	// Measured when the corpus was added: 455 messages, 407 parsed. The
	// floor keeps a parser change from quietly refusing real messages.
	if messages < 450 || parsed < 400 {
		t.Errorf("only %d of %d wild messages parsed", parsed, messages)
	}
}

// errPanic marks a panic turned into an error by noPanic.
var errPanic = errors.New("panic")

func noPanic(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errPanic, r)
		}
	}()
	return f()
}

// roundTrip checks that m re-encodes to raw (CR terminated, as Split and
// SplitMessages give it) and re-parses to the same values.
func roundTrip(m *Message, raw []byte) error {
	out := m.Bytes()
	if !bytes.Equal(out, raw) {
		return errors.New("does not re-encode byte for byte")
	}
	again, err := Parse(out)
	if err != nil {
		return fmt.Errorf("re-parse: %w", err)
	}
	var a, b []string
	m.Walk(func(p string, v Value) bool { a = append(a, p+"="+v.String()); return true })
	again.Walk(func(p string, v Value) bool { b = append(b, p+"="+v.String()); return true })
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		return errors.New("values differ after a round trip")
	}
	if len(a) == 0 {
		return errors.New("no values")
	}
	return nil
}

// checkCleanError fails the test for a panic, a round-trip failure, or a
// parse failure that is not a *ParseError or that quotes the input.
func checkCleanError(t *testing.T, what string, err error, input []byte) {
	t.Helper()
	if err == nil {
		return
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Errorf("%s: %v", what, err) // a panic, or a message that parsed but did not round-trip
		return
	}
	if v := quotedValue(err.Error(), input); v != "" {
		t.Errorf("%s: the parse error quotes a %d-byte value of the input", what, len(v))
	}
}

// quotedValue returns a value of input (split at every delimiter an HL7
// message could use) of 6 or more bytes that text contains, or "".
func quotedValue(text string, input []byte) string {
	fields := strings.FieldsFunc(string(input), func(r rune) bool {
		return r == '\r' || r == '\n' || r < 0x80 && !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == ' ' || r == '.' || r == '-')
	})
	for _, f := range fields {
		f = strings.TrimSpace(f)
		if len(f) >= 6 && strings.Contains(text, f) {
			return f
		}
	}
	return ""
}

// Values read from the wild corpus, checked by hand against the files:
// other delimiters than |^~\&, escapes, an OID-only HD.
func TestWildValues(t *testing.T) {
	files := shared.WildFiles(t)
	tests := []struct {
		file       string
		msg        int
		path, want string
	}{
		// MSH#!@%*: '#' separates fields, '!' components.
		{"rethinkhealth-hl7v2/fixtures/edge-custom-delimiters.hl7", 1, "MSH-9.2", "A01"},
		{"rethinkhealth-hl7v2/fixtures/edge-custom-delimiters.hl7", 1, "PID-3.1", "12345"},
		{"rethinkhealth-hl7v2/fixtures/edge-custom-delimiters.hl7", 1, "PID-3.4", "MRN"},
		// MSH^~|\&: '^' separates fields, '~' components, '|' repetitions.
		{"hapi-hl7v2/util/segmentfinder_a24.hl7", 1, "MSH-9.2", "A24"},
		{"hapi-hl7v2/util/segmentfinder_a24.hl7", 1, "MSH-10", "2003582144"},
		// \T\ is '&', \S\ is '^'.
		{"rethinkhealth-hl7v2/fixtures/edge-escaped-delimiters.hl7", 1, "PID-5.1", "DOE&SMITH"},
		{"rethinkhealth-hl7v2/fixtures/edge-escaped-delimiters.hl7", 1, "PID-5.2", "JOHN^JANE"},
		{"hamaluik-hl7-parser/sample_adt_a01_encoded.hl7", 1, "MSH-5", "Isaac^2"},
		// OLIS: MSH-3 and MSH-5 are HDs without namespace (HD.1 empty).
		{"hapi-hl7v2/parser/cv.04_001_chem.hl7", 1, "MSH-3.1", ""},
		{"hapi-hl7v2/parser/cv.04_001_chem.hl7", 1, "MSH-3.2", "OLIS"},
		{"hapi-hl7v2/parser/cv.04_001_chem.hl7", 1, "MSH-5.2", "2.16.840.1.113883.3.59.3:0947"},
		{"hapi-hl7v2/parser/cv.04_001_chem.hl7", 1, "MSH-5.3", "ISO"},
		// A Mirth ADT feed: the 4th message of the file, CR ended, blank lines between.
		{"nextgen-connect/simplesender/samples/TestADT.txt", 4, "MSH-9", "ADT^A04"},
		{"nextgen-connect/simplesender/samples/TestADT.txt", 4, "MSH-10", "603266"},
		{"nextgen-connect/simplesender/samples/TestADT.txt", 2, "PV1-19.1", "6635094"},
		{"nextgen-connect/simplesender/samples/TestADT.txt", 2, "PV1-19.4", "AccMgr"},
		// Enhanced acknowledgment mode requested by an immunization sender.
		{"cdc-iis-open-tools/Adult z22 New Covid vaccine.hl7", 1, "MSH-15", "ER"},
		{"cdc-iis-open-tools/Adult z22 New Covid vaccine.hl7", 1, "MSH-16", "AL"},
		// A year-only birth date (HL7 DTM allows YYYY).
		{"cdc-data-exchange-hl7/fn-structure-validator/src/test/resources/covid-moved/COVIDELR_v251_HL7_good.txt", 1, "PID-7", "1991"},
	}
	for _, tt := range tests {
		msgs := shared.SplitMessages(files[tt.file])
		if len(msgs) < tt.msg {
			t.Errorf("%s: %d messages, want at least %d", tt.file, len(msgs), tt.msg)
			continue
		}
		m, err := Parse(msgs[tt.msg-1])
		if err != nil {
			t.Errorf("%s message %d: %v", tt.file, tt.msg, err)
			continue
		}
		got, err := m.GetString(tt.path)
		if err != nil || got != tt.want {
			t.Errorf("%s message %d %s = %q, %v; want %q", tt.file, tt.msg, tt.path, got, err, tt.want)
		}
	}
}

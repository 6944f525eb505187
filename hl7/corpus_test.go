package hl7

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// corpusFailures are the corpus files that are malformed on purpose (or by
// accident upstream), with the error each must give.
var corpusFailures = map[string]string{
	"CDCgov-trusted-intermediary/Test/Message/empty.hl7":                              "no MSH segment found",
	"CDCgov-trusted-intermediary/Test/Message/msh_present_but_missing_all_fields.hl7": "segment 1 (MSH) field 2",
	"CDCgov-trusted-intermediary/Test/Message/msh_present_but_missing_msh-2.hl7":      "MSH-2 (encoding characters) is empty",
	// Annotated sample: free-text notes between the segments.
	"CDCgov-trusted-intermediary/TN/001_TN_ORU_R01_LRI_annotated_for_transformation.hl7": "segment 6, byte 1679: segment id must be",
	// OBR-4 broken across two lines.
	"CDCgov-trusted-intermediary/TX/001_TX_OML_O21.hl7": "segment 6, byte 1203: segment id must be",
}

func corpusFiles(t testing.TB) map[string][]byte {
	t.Helper()
	root := shared.Path(t, "corpus", "hl7v2")
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".hl7") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 271 {
		t.Fatalf("corpus has %d files, want 271", len(files))
	}
	return files
}

func parseFile(data []byte) ([]*Message, [][]byte, error) {
	parts, err := Split(data)
	if err != nil {
		return nil, nil, err
	}
	var msgs []*Message
	for _, p := range parts {
		m, err := Parse(p)
		if err != nil {
			return nil, nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, parts, nil
}

// Every corpus message parses, re-encodes byte for byte (after terminator
// normalisation) and re-parses to the same values.
func TestCorpus(t *testing.T) {
	var messages int
	for name, data := range corpusFiles(t) {
		t.Run(name, func(t *testing.T) {
			msgs, parts, err := parseFile(data)
			if want, bad := corpusFailures[name]; bad {
				var pe *ParseError
				if !errors.As(err, &pe) || !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %v, want a ParseError containing %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			for i, m := range msgs {
				messages++
				out := m.Bytes()
				if !bytes.Equal(out, parts[i]) {
					t.Fatalf("message %d does not re-encode byte for byte", i+1)
				}
				again, err := Parse(out)
				if err != nil {
					t.Fatalf("re-parse: %v", err)
				}
				var a, b []string
				m.Walk(func(p string, v Value) bool { a = append(a, p+"="+v.String()); return true })
				again.Walk(func(p string, v Value) bool { b = append(b, p+"="+v.String()); return true })
				if strings.Join(a, "\n") != strings.Join(b, "\n") {
					t.Fatalf("message %d: values differ after a round trip", i+1)
				}
				if len(a) == 0 {
					t.Fatalf("message %d: no values", i+1)
				}
			}
		})
	}
	if messages < 260 {
		t.Errorf("only %d corpus messages parsed", messages)
	}
}

// Values read from real messages, checked by hand against the files.
func TestCorpusValues(t *testing.T) {
	files := corpusFiles(t)
	tests := []struct {
		file, path, want string
	}{
		{"microsoft-FHIR-Converter/ADT-A01-01.hl7", "MSH-9.2", "A01"},
		{"microsoft-FHIR-Converter/ADT-A01-01.hl7", "MSH-12", "2.8"},
		{"microsoft-FHIR-Converter/ADT-A01-01.hl7", "MSH-4.2", "2.16.840.1.122848.1.30"},
		{"microsoft-FHIR-Converter/ADT-A01-01.hl7", "PID-3.1", "PATID1234"},
		{"microsoft-FHIR-Converter/ADT-A01-01.hl7", "PID-3.4.2", "2.16.1"},
		{"microsoft-FHIR-Converter/ADT-A01-01.hl7", "PID-3[2].1", "123456789"},
		{"microsoft-FHIR-Converter/ADT-A01-01.hl7", "PID-3[2].5", "SS"},
		{"microsoft-FHIR-Converter/ADT-A01-01.hl7", "PID-5.1.5", "Aniston"},
		{"microsoft-FHIR-Converter/ADT-A01-01.hl7", "PID-5.2", "ADAM"},
		{"microsoft-FHIR-Converter/RDE-O25-01.hl7", "PV1-14", "NHS Provider-General (inc.A&E-this Hosp)"},
		{"CDCgov-trusted-intermediary/Natus/005_Natus_ORU_R01_NBS.hl7", "OBX[3]-2", "FT"},
	}
	for _, tt := range tests {
		msgs, _, err := parseFile(files[tt.file])
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		got, err := msgs[0].GetString(tt.path)
		if err != nil || got != tt.want {
			t.Errorf("%s %s = %q, %v; want %q", tt.file, tt.path, got, err, tt.want)
		}
	}
	// Formatting escapes in a Natus FT result: kept by String, rendered by Text.
	msgs, _, _ := parseFile(files["CDCgov-trusted-intermediary/Natus/005_Natus_ORU_R01_NBS.hl7"])
	v := msgs[0].Get(MustPath("OBX[3]-5"))
	if !strings.HasSuffix(v.String(), `MN 55905\.br\`) || !strings.HasSuffix(v.Text(), "MN 55905\n") {
		t.Errorf("OBX[3]-5 formatting escapes: String ends %q, Text ends %q", tail(v.String()), tail(v.Text()))
	}
}

func tail(s string) string { return s[max(0, len(s)-20):] }

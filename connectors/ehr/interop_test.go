package ehr

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/interop"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// corpusSample returns well-formed corpus files of several types and
// vendors, each with its own control id (the FHIR-Converter ADT samples
// share MSG00001, which the log rightly treats as one key): a byte order
// mark, a 77 KB result, Epic and Oracle results, an MDM document.
func corpusSample(t *testing.T) []string {
	var files []string
	for _, rel := range []string{
		"microsoft-FHIR-Converter/ADT-A01-01.hl7",
		"microsoft-FHIR-Converter/ADT01-23.hl7",
		"microsoft-FHIR-Converter/ORU-R01-01.hl7",
		"microsoft-FHIR-Converter/MDM-T02-03.hl7",
		"microsoft-FHIR-Converter/VXU.hl7",
		"CDCgov-trusted-intermediary/Epic/002_Epic_ORU_R01.hl7",
		"CDCgov-trusted-intermediary/Oracle/004_Oracle_ORU_R01.hl7",
		"CDCgov-trusted-intermediary/MN/005_MN_ADT_A01.hl7",
		"CDCgov-trusted-intermediary/Natus/008_Natus_ORU_R01_NBS.hl7",
	} {
		files = append(files, shared.Path(t, append([]string{"corpus", "hl7v2"}, strings.Split(rel, "/")...)...))
	}
	return files
}

// wantAcks are the acknowledgments each corpus sample asks for: AA in
// original mode (MSH-15/16 empty); in enhanced mode CA when MSH-15 is AL,
// then AA when MSH-16 is AL (HL7 table 0155).
var wantAcks = map[string]string{
	"ADT-A01-01.hl7":            "AA",
	"ADT01-23.hl7":              "AA",
	"ORU-R01-01.hl7":            "CA", // MSH-15 AL, MSH-16 NE
	"MDM-T02-03.hl7":            "CA", // MSH-15 AL, MSH-16 empty
	"VXU.hl7":                   "AA", // MSH-15 ER, MSH-16 AL
	"002_Epic_ORU_R01.hl7":      "AA",
	"004_Oracle_ORU_R01.hl7":    "AA",
	"005_MN_ADT_A01.hl7":        "AA",
	"008_Natus_ORU_R01_NBS.hl7": "CA,AA", // MSH-15 AL, MSH-16 AL
}

// @medplum/hl7's client sends corpus messages (one of them 77 KB, one with
// a byte order mark) to our MLLP source over one connection.
func TestInteropMedplumClientToSource(t *testing.T) {
	dir := interop.NodeDir(t)
	src := &MLLPSource{Name: "medplum", Log: openLog(t)}
	addr := startSource(t, src, 0, nil)
	host, port, _ := strings.Cut(addr, ":")
	files := corpusSample(t)
	out, errOut, code := interop.Run(t, dir, 60*time.Second, "node", append([]string{"medplum_send.mjs", host, port}, files...)...)
	if code != 0 {
		t.Fatalf("medplum_send exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(files) {
		t.Fatalf("medplum_send printed %d lines for %d messages:\n%s", len(lines), len(files), out)
	}
	for i, l := range lines {
		want := controlID(t, files[i]) + " " + wantAcks[filepath.Base(files[i])]
		if l != want {
			t.Errorf("line %d = %q, want %q", i, l, want)
		}
	}
	if n := src.Accepted.Load(); n != int64(len(files)) {
		t.Errorf("source accepted %d, want %d", n, len(files))
	}
}

// Debian's python3-hl7 mllp_send, in --loose mode (LF files), sends to our
// MLLP source.
func TestInteropPythonMLLPSendToSource(t *testing.T) {
	py := interop.PythonHL7(t)
	src := &MLLPSource{Name: "pyhl7", Log: openLog(t)}
	addr := startSource(t, src, 0, nil)
	_, port, _ := strings.Cut(addr, ":")
	files := corpusSample(t)[:5]
	for _, f := range files {
		out, errOut, code := interop.Run(t, "", 30*time.Second, py, "/usr/bin/mllp_send", "--loose", "--port", port, "--file", f, "127.0.0.1")
		if code != 0 {
			t.Fatalf("mllp_send %s: exit %d\n%s\n%s", filepath.Base(f), code, out, errOut)
		}
		first, _, _ := strings.Cut(wantAcks[filepath.Base(f)], ",")
		if !strings.Contains(out, "MSA|"+first+"|"+controlID(t, f)) {
			t.Errorf("mllp_send %s printed %q, want %s for its control id", filepath.Base(f), out, first)
		}
	}
	if n := src.Accepted.Load(); n != int64(len(files)) {
		t.Errorf("source accepted %d, want %d", n, len(files))
	}
	// A retransmit from the same peer gets the byte-identical original ACK.
	again := func() string {
		out, errOut, code := interop.Run(t, "", 30*time.Second, py, "/usr/bin/mllp_send", "--loose", "--port", port, "--file", files[0], "127.0.0.1")
		if code != 0 {
			t.Fatalf("mllp_send: exit %d\n%s", code, errOut)
		}
		return out
	}
	if a, b := again(), again(); a != b || !strings.Contains(a, "MSA|AA|") { // files[0] is in original mode
		t.Errorf("retransmits got different ACKs:\n%q\n%q", a, b)
	}
	if src.Duplicates.Load() != 2 {
		t.Errorf("duplicates = %d, want 2", src.Duplicates.Load())
	}
}

func controlID(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := hl7.Split(data)
	if err != nil {
		t.Fatal(err)
	}
	m, err := hl7.ParseHeader(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	return m.Header().ControlID
}

// Issue 25.6: @medplum/hl7's Hl7Client as an enhanced-mode sender. With
// MSH-15 AL and MSH-16 AL it sees our CA, then resolves on our AA; with
// MSH-16 NE it gets the CA alone; a retransmit gets both answers back
// byte for byte.
func TestInteropMedplumEnhancedMode(t *testing.T) {
	dir := interop.NodeDir(t)
	src := &MLLPSource{Name: "medplum", Log: openLog(t)}
	addr := startSource(t, src, 0, nil)
	host, port, _ := strings.Cut(addr, ":")
	out, errOut, code := interop.Run(t, dir, 60*time.Second, "node", "medplum_enhanced.mjs", host, port)
	if code != 0 {
		t.Fatalf("medplum_enhanced exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	want := "AL/AL AA CA,AA\nAL/NE CA CA\nNE/AL AA AA\nSU/SU AA CA,AA\nRETRANSMIT same"
	if got := strings.TrimSpace(out); got != want {
		t.Errorf("medplum_enhanced printed\n%s\nwant\n%s", got, want)
	}
	if src.Accepted.Load() != 4 || src.Duplicates.Load() != 1 {
		t.Errorf("accepted=%d duplicates=%d, want 4 and 1", src.Accepted.Load(), src.Duplicates.Load())
	}
}

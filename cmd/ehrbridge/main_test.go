package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return out.String(), errb.String(), code
}

func corpus(t *testing.T, elem ...string) string {
	return shared.Path(t, append([]string{"corpus", "hl7v2"}, elem...)...)
}

// hl7 get returns the decoded value of each path form on corpus messages,
// an empty line for an absent value.
func TestHL7Get(t *testing.T) {
	adt := corpus(t, "microsoft-FHIR-Converter", "ADT-A01-01.hl7")
	out, errOut, code := runCLI(t, "hl7", "get", adt,
		"MSH-9.2", "PID-5.1", "PID-3[2].1", "PID-3.4.2", "PID-5.1.5", "MSH-1", "MSH-2", "ZZZ-1", "PID-3[9].1", "MSH-12")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "A01\nEVERYMAN&&&&Aniston\n123456789\n2.16.1\nAniston\n|\n^~\\&\n\n\n2.8\n"
	if out != want {
		t.Errorf("got\n%q\nwant\n%q", out, want)
	}

	// OBX[n]-5 on an ORU with several OBX; \T\ decoded in RDE PV1-14.
	oru := corpus(t, "CDCgov-trusted-intermediary", "Natus", "005_Natus_ORU_R01_NBS.hl7")
	out, _, code = runCLI(t, "hl7", "get", oru, "OBX[3]-2", "OBX[3]-3.1", "MSH-12")
	if code != 0 || out != "FT\n69969-4\n2.5.1\n" {
		t.Errorf("ORU: exit %d, got %q", code, out)
	}
	rde := corpus(t, "microsoft-FHIR-Converter", "RDE-O25-01.hl7")
	out, _, _ = runCLI(t, "hl7", "get", rde, "PV1-14")
	if out != "NHS Provider-General (inc.A&E-this Hosp)\n" {
		t.Errorf("RDE PV1-14 = %q", out)
	}

	// Errors: a bad path is a usage error, a missing file a failure.
	if _, e, code := runCLI(t, "hl7", "get", adt, "PID5"); code != exitUsage || !strings.Contains(e, "PID5") {
		t.Errorf("bad path: exit %d, %q", code, e)
	}
	if _, _, code := runCLI(t, "hl7", "get", "/nonexistent.hl7", "PID-5"); code != exitFailure {
		t.Errorf("missing file: exit %d", code)
	}
	bad := corpus(t, "CDCgov-trusted-intermediary", "Test", "Message", "msh_present_but_missing_msh-2.hl7")
	if _, e, code := runCLI(t, "hl7", "get", bad, "MSH-3"); code != exitFailure || !strings.Contains(e, "MSH-2") {
		t.Errorf("malformed file: exit %d, %q", code, e)
	}
}

// Every line of hl7 show names a path that hl7 get resolves to the value
// shown.
func TestHL7Show(t *testing.T) {
	file := corpus(t, "microsoft-FHIR-Converter", "ADT-A01-01.hl7")
	out, errOut, code := runCLI(t, "hl7", "show", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 50 {
		t.Fatalf("only %d lines", len(lines))
	}
	// The message is 2.8: its names come from the nearest definitions.
	if lines[0] != `# names from HL7 2.7.1 definitions (MSH-12 is "2.8")` {
		t.Errorf("first line %q", lines[0])
	}
	var paths, values []string
	for _, l := range lines[1:] {
		path, rest, ok := strings.Cut(l, " ")
		if !ok {
			t.Fatalf("line without value: %q", l)
		}
		// Each line is path, name, value; the name is the definition's.
		name := "-"
		if n := hl7.PathName("2.8", hl7.MustPath(path)); n != "" {
			name = shorten(n, maxNameWidth)
		}
		rest = strings.TrimLeft(rest, " ")
		if !strings.HasPrefix(rest, name+"  ") {
			t.Fatalf("%s: line %q does not name it %q", path, l, name)
		}
		paths = append(paths, path)
		values = append(values, strings.TrimLeft(rest[len(name):], " "))
	}
	for _, want := range []string{
		"PID-5[1].1.1  Patient Name / Family Name / Surname  ",
		"MSH-9.2  Message Type / Trigger Event  A01",
		"PID-7  Date/Time of Birth  ",
	} {
		if !strings.Contains(squeeze(out), want) {
			t.Errorf("show lacks %q", want)
		}
	}
	for _, want := range []string{"PID-3[2].1", "PID-5[1].1.1", "PID-5[1].1.5", "MSH-9.2", "MSH-4.2"} {
		if !contains(paths, want) {
			t.Errorf("show lacks path %s", want)
		}
	}
	got, _, _ := runCLI(t, append([]string{"hl7", "get", file}, paths...)...)
	gotLines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	for i := range paths {
		// show aligns its columns, so leading blanks of a value are lost.
		g, v := strings.TrimSpace(gotLines[i]), strings.TrimSpace(values[i])
		if g != v && !(v == `"" (explicit null)` && g == `""`) {
			t.Errorf("%s: show %q, get %q", paths[i], values[i], gotLines[i])
		}
	}
}

// squeeze turns runs of two or more spaces into two, undoing alignment.
func squeeze(s string) string {
	for strings.Contains(s, "   ") {
		s = strings.ReplaceAll(s, "   ", "  ")
	}
	return s
}

func TestHL7ShowBatchAndText(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "two.hl7")
	data := "MSH|^~\\&|A|B|C|D|2024||ORU^R01|M1|P|2.5\nOBX|1|FT|||line1\\.br\\line2\nMSH|^~\\&|A|B|C|D|2024||ORU^R01|M2|P|2.5\n"
	if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, code := runCLI(t, "hl7", "show", "--text", f)
	if code != 0 || !strings.Contains(out, "# message 2 of 2") || !strings.Contains(out, `line1\nline2`) {
		t.Errorf("exit %d:\n%s", code, out)
	}
	out, _, _ = runCLI(t, "hl7", "get", "--message", "2", f, "MSH-10")
	if out != "M2\n" {
		t.Errorf("--message 2: %q", out)
	}
}

func TestUsage(t *testing.T) {
	if _, _, code := runCLI(t); code != exitUsage {
		t.Errorf("no args: exit %d", code)
	}
	if _, e, code := runCLI(t, "frobnicate"); code != exitUsage || !strings.Contains(e, "unknown command") {
		t.Errorf("unknown command: exit %d %q", code, e)
	}
	if out, _, code := runCLI(t, "version"); code != 0 || !strings.HasPrefix(out, "ehrbridge ") {
		t.Errorf("version: %d %q", code, out)
	}
	if _, _, code := runCLI(t, "send", "--to", "nocolon", "x.hl7"); code != exitUsage {
		t.Errorf("send bad address: exit %d", code)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// lint passes the shipped config and reports every problem of a bad one
// as file:line:col, exiting 1.
func TestLint(t *testing.T) {
	shipped := filepath.Join(shared.ModuleRoot(t), "configs", "ehrbridge.yaml")
	if out, errOut, code := runCLI(t, "lint", "--config", shipped); code != 0 || !strings.Contains(out, ": ok (") {
		t.Errorf("shipped config: exit %d\n%s%s", code, out, errOut)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	data := "data_dir: ./d\nlog:\n  format: xml\nsources:\n  mllp:\n    - name: Bad Name\n      listen: nowhere\n      max_connections: many\n      password: hunter2\n"
	if err := os.WriteFile(bad, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, code := runCLI(t, "lint", "--config", bad)
	if code != exitFailure {
		t.Errorf("bad config: exit %d", code)
	}
	for _, want := range []string{bad + ":3:11: ", bad + ":6:13: ", bad + ":7:15: ", bad + ":8:24: ", bad + ":9:7: "} {
		if !strings.Contains(out, want) {
			t.Errorf("lint output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("lint output prints an inline secret:\n%s", out)
	}
	if _, _, code := runCLI(t, "lint"); code != exitUsage {
		t.Errorf("lint without --config: exit %d", code)
	}
}

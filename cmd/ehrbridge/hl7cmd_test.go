package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// hl7 show names each value as the message's version defines it; a Z
// segment has no name ("-"); a version the definitions hold needs no note.
func TestHL7ShowNames(t *testing.T) {
	f := filepath.Join(t.TempDir(), "m.hl7")
	msg := "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|M1|P|2.5.1\rPID|1||123^^^H^MR||DOE^JOHN||19800101|M\rZPD|1|VIP\r"
	if err := os.WriteFile(f, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "hl7", "show", f)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := squeeze(out)
	for _, want := range []string{
		"\nPID-5.1  Patient Name / Family Name  DOE\n",
		"\nPID-3.4  Patient Identifier List / Assigning Authority  H\n",
		"\nPID-8  Administrative Sex  M\n",
		"\nZPD-2  -  VIP\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "# names from") {
		t.Errorf("a 2.5.1 message is named by its own version:\n%s", out)
	}
}

// The hl7 verbs print a message's values on stdout alone: whatever goes
// wrong with a file, stderr names the file, message, segment and offset,
// never a value. Checked on every corpus file, malformed ones included.
func TestHL7NoValuesOnStderr(t *testing.T) {
	root := shared.Path(t, "corpus", "hl7v2")
	var files []string
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && !strings.HasSuffix(p, ".md") && !strings.HasSuffix(p, ".txt") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) < 100 {
		t.Fatalf("only %d corpus files", len(files))
	}
	// Values worth hiding: the names, ids and birth dates in PID.
	pid := regexp.MustCompile(`(?m)^PID\|.*$`)
	sep := regexp.MustCompile(`[|^~&]`)
	failures := 0
	for _, f := range files {
		data, _ := os.ReadFile(f)
		var secrets []string
		for _, line := range pid.FindAllString(strings.ReplaceAll(string(data), "\r", "\n"), -1) {
			for _, tok := range sep.Split(line, -1) {
				if len(tok) >= 5 && !strings.Contains(f, tok) {
					secrets = append(secrets, tok)
				}
			}
		}
		_, e1, c1 := runCLI(t, "hl7", "show", f)
		_, e2, _ := runCLI(t, "hl7", "get", f, "PID-5.1", "PID-3[2].1")
		if c1 != 0 {
			failures++
		}
		for _, s := range secrets {
			if strings.Contains(e1, s) || strings.Contains(e2, s) {
				t.Errorf("%s: stderr shows a PID value %q:\n%s%s", f, s, e1, e2)
				break
			}
		}
	}
	if failures == 0 {
		t.Error("no corpus file failed to read: the check covered the success path only")
	}
}

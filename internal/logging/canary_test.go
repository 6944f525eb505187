package logging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

var canaries = []string{"ZZCANARYNAME", "MRN99887766", "1961-07-04", "555-0100", "123 Elm St"}

type canaryRecord struct {
	Name, MRN, DOB, Phone, Street string
}

type canaryStringer struct{ canaryRecord }

func (c canaryStringer) String() string { return fmt.Sprint(c.canaryRecord) }

// TestPHICanary logs known patient-like strings through every API shape a
// caller might use and fails if any reach the output, while checking that
// the parts meant to survive (hashes, Safe text, safe keys, numbers) do.
func TestPHICanary(t *testing.T) {
	rec := canaryRecord{"ZZCANARYNAME", "MRN99887766", "1961-07-04", "555-0100", "123 Elm St"}
	segment := "PID|1||MRN99887766^^^HOSP^MR||ZZCANARYNAME^JOHN||1961-07-04|M|||123 Elm St^^TOWN||555-0100"
	joined := strings.Join(canaries, " ")
	ctx := context.Background()

	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := New(&buf, Options{Format: format, HashKey: testHashKey})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range canaries {
				l.Info("args", "name", c, "patient", c, "value", c)
				l.Info("bad key", []any{c}...) // spread so vet accepts the deliberate missing key
				l.LogAttrs(ctx, slog.LevelError, "attrs", slog.String("name", c), slog.Any("x", c))
				l.With("name", c).Info("with")
				l.With(slog.Group("g", "name", c)).Info("with group")
				l.WithGroup("patient").Info("group", "name", c)
				l.WithGroup("a").WithGroup("b").With("name", c).Info("nested", slog.Group("c", "d", c))
				l.Info("phi", "name", PHI(c))
				l.Info("valuer", "v", valuer{slog.StringValue(c)})
				l.Info("valuer group", "v", valuer{slog.GroupValue(slog.String("name", c))})
				l.Info("error string", "err", errors.New(c).Error())
			}
			l.Info("struct", "p", rec, "pp", &rec)
			l.Info("map", "m", map[string]string{"name": rec.Name, "mrn": rec.MRN})
			l.Info("slice", "s", canaries)
			l.Info("bytes", "b", []byte(joined))
			l.Info("stringer", "s", canaryStringer{rec})
			l.Info("error segment", "err", errors.New("parse: "+segment))
			l.Info("error wrapped", "err", fmt.Errorf("map: %w", errors.New(segment)))
			l.Info("error quoted", "err", fmt.Errorf("bad message %q", "MSH|^~\\&|X\r"+segment))
			l.Info("error long", "err", errors.New(strings.Repeat("-", 600)+joined))
			l.Info("safe key data", "source", segment, "state", Safe(segment))

			// The survivors.
			l.Info("keep", "lane", Key(rec.MRN), "mapping", Safe("adt-default"),
				"source", "lab-a", "count", 42, "err", errors.New("dial tcp: refused"))

			out := buf.String()
			for _, c := range canaries {
				if strings.Contains(out, c) {
					t.Errorf("canary %q leaked:\n%s", c, linesWith(out, c))
				}
			}
			for _, want := range []string{Hash(testHashKey, rec.MRN), "adt-default", "lab-a", "42", "dial tcp: refused"} {
				if !strings.Contains(out, want) {
					t.Errorf("expected %q in output:\n%s", want, out)
				}
			}
		})
	}
}

func linesWith(out, s string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, s) {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

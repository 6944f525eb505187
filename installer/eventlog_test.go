package installer

import (
	"fmt"
	"strings"
	"testing"
)

type fakeEventLog struct{ got []string }

func (f *fakeEventLog) Error(v ...any) error {
	f.got = append(f.got, "E "+fmt.Sprint(v...))
	return nil
}
func (f *fakeEventLog) Warning(v ...any) error {
	f.got = append(f.got, "W "+fmt.Sprint(v...))
	return nil
}
func (f *fakeEventLog) Info(v ...any) error { f.got = append(f.got, "I "+fmt.Sprint(v...)); return nil }
func (f *fakeEventLog) Errorf(format string, a ...any) error {
	return f.Error(fmt.Sprintf(format, a...))
}
func (f *fakeEventLog) Warningf(format string, a ...any) error {
	return f.Warning(fmt.Sprintf(format, a...))
}
func (f *fakeEventLog) Infof(format string, a ...any) error { return f.Info(fmt.Sprintf(format, a...)) }

// As a Windows service, each log line goes to the Event Log at its level
// (text and JSON formats alike).
func TestEventLogWriter(t *testing.T) {
	f := &fakeEventLog{}
	w := EventLogWriter(f)
	for _, line := range []string{"time=x level=ERROR msg=a\n", "time=x level=WARN msg=b\n", "time=x level=INFO msg=c\n",
		`{"level":"ERROR","msg":"d"}` + "\n", `{"level":"WARN","msg":"e"}` + "\n"} {
		if n, err := w.Write([]byte(line)); err != nil || n != len(line) {
			t.Fatalf("write %q: %d %v", line, n, err)
		}
	}
	want := []string{"E time=x level=ERROR msg=a", "W time=x level=WARN msg=b", "I time=x level=INFO msg=c", `E {"level":"ERROR","msg":"d"}`, `W {"level":"WARN","msg":"e"}`}
	if strings.Join(f.got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q", f.got)
	}
}

package installer

import (
	"io"
	"strings"

	ks "github.com/kardianos/service"
)

// EventLogWriter writes each log line (text or JSON format) to l, the
// Windows Event Log of a service, at the line's level: ERROR as an error,
// WARN as a warning, anything else as information.
func EventLogWriter(l ks.Logger) io.Writer { return eventLogWriter{l} }

type eventLogWriter struct{ l ks.Logger }

func (w eventLogWriter) Write(b []byte) (int, error) {
	line := strings.TrimRight(string(b), "\n")
	var err error
	switch {
	case strings.Contains(line, "level=ERROR"), strings.Contains(line, `"level":"ERROR"`):
		err = w.l.Error(line)
	case strings.Contains(line, "level=WARN"), strings.Contains(line, `"level":"WARN"`):
		err = w.l.Warning(line)
	default:
		err = w.l.Info(line)
	}
	return len(b), err
}

// auditSource is the Windows Event Log source of audit lines
// (logadmin.EventLogSource; TestAuditSourceName keeps them one), which
// install registers and the MSI creates.
const auditSource = "ehrbridge-audit"

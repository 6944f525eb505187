package logadmin

import (
	"bytes"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// JournalSocket is where systemd-journald takes native-protocol datagrams.
const JournalSocket = "/run/systemd/journal/socket"

// Journal sends audit lines to the systemd journal over its native
// protocol (one datagram of KEY=value lines), so that they carry fields a
// SIEM forwarder can select on (SYSLOG_IDENTIFIER=ehrbridge-audit,
// EHRBRIDGE_AUDIT_ACTION, ...) whatever the daemon's own log output is.
type Journal struct {
	Path string // JournalSocket unless a test says otherwise

	mu   sync.Mutex
	conn *net.UnixConn
}

// Send implements SystemLog.
func (j *Journal) Send(ev Event, line []byte) error {
	var b bytes.Buffer
	field := func(k, v string) {
		if v == "" {
			return
		}
		// Values here hold no newline (JSON, names, ids); drop any so the
		// simple KEY=value form stays valid.
		b.WriteString(k + "=" + strings.NewReplacer("\n", " ", "\r", " ").Replace(v) + "\n")
	}
	field("MESSAGE", "ehrbridge audit: "+string(line))
	field("PRIORITY", "5") // notice
	field("SYSLOG_IDENTIFIER", "ehrbridge-audit")
	field("SYSLOG_FACILITY", "10") // authpriv: security and authorization messages
	field("EHRBRIDGE_AUDIT_ACTION", ev.Action)
	field("EHRBRIDGE_AUDIT_OBJECT", ev.Object)
	field("EHRBRIDGE_AUDIT_OUTCOME", ev.Outcome)
	field("EHRBRIDGE_AUDIT_USER", ev.User)
	field("EHRBRIDGE_AUDIT_UID", ev.UID)
	field("EHRBRIDGE_AUDIT_VIA", ev.Via)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.conn == nil {
		c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: j.Path, Net: "unixgram"})
		if err != nil {
			return err
		}
		j.conn = c
	}
	_ = j.conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := j.conn.Write(b.Bytes()); err != nil {
		j.conn.Close()
		j.conn = nil
		return err
	}
	return nil
}

// journalIfPresent is the journal when this host runs journald.
func journalIfPresent() SystemLog {
	if fi, err := os.Stat(JournalSocket); err == nil && fi.Mode()&os.ModeSocket != 0 {
		return &Journal{Path: JournalSocket}
	}
	return nil
}

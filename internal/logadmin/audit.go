package logadmin

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// EventLogSource is the Windows Event Log source audit lines are written
// under (the service installer and the MSI register it).
const EventLogSource = "ehrbridge-audit"

// Event is one audit line: who, what, which record, when, and whether it
// was allowed. It holds names an admin or the OS chose and record ids,
// never a value from a message.
type Event struct {
	Time    string `json:"time"`
	Action  string `json:"action"`
	Object  string `json:"object,omitempty"`
	Outcome string `json:"outcome"` // allowed, refused
	User    string `json:"user"`
	// OSUser repeats User for a local caller (kept for readers of the
	// lines written before issue 28, which had only os_user).
	OSUser string `json:"os_user,omitempty"`
	UID    string `json:"uid,omitempty"`
	Via    string `json:"via"`
	Remote string `json:"remote,omitempty"`
	Roles  string `json:"roles,omitempty"`
}

// SystemLog is the platform's log for audit lines: the systemd journal on
// Linux, the Windows Event Log on Windows.
type SystemLog interface {
	Send(ev Event, line []byte) error
}

// Call writes an audit line for an API call by c.
func (a *Audit) Call(c Caller, action, object, outcome string) error {
	if a == nil {
		return errors.New("logadmin: no audit log: refusing")
	}
	ev := Event{Time: time.Now().UTC().Format(time.RFC3339Nano), Action: action, Object: object, Outcome: outcome,
		User: c.Name, UID: c.UID, Via: c.Via, Remote: c.Remote}
	if c.UID != "" {
		ev.OSUser = c.Name
	}
	if c.Via != "cli" {
		ev.Roles = c.Perm.String()
	}
	line, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.append(line); err != nil {
		return err
	}
	if a.System != nil {
		if err := a.System.Send(ev, line); err != nil {
			a.SystemFailures++
		}
	}
	return nil
}

// append writes one line to the file and syncs it. The file is opened
// append-only for writing; on Linux a site can make it append-only for
// the service too (chattr +a), which this open respects.
func (a *Audit) append(line []byte) error {
	f, err := os.OpenFile(a.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		// An older or hand-made file readable by others: tighten it
		// (refused on a chattr +a file; then the site chose its mode).
		_ = f.Chmod(0o600)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

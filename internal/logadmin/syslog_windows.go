//go:build windows

package logadmin

import (
	"sync"

	"golang.org/x/sys/windows/svc/eventlog"
)

// EventLog writes audit lines to the Windows Event Log (Application),
// event id 28: 1 for allowed calls (information), 2 for refusals
// (warning).
type EventLog struct {
	once sync.Once
	l    *eventlog.Log
	err  error
}

// Send implements SystemLog.
func (e *EventLog) Send(ev Event, line []byte) error {
	e.once.Do(func() { e.l, e.err = eventlog.Open(EventLogSource) })
	if e.err != nil {
		return e.err
	}
	if ev.Outcome == "refused" {
		return e.l.Warning(2, "ehrbridge audit: "+string(line))
	}
	return e.l.Info(1, "ehrbridge audit: "+string(line))
}

func defaultSystemLog() SystemLog { return &EventLog{} }

package logadmin

import (
	"errors"
	"fmt"
	"os/user"
	"path/filepath"
	"sync"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
)

// Service is what the admin tools do with a log, whether it is opened
// directly (Local) or through a running daemon (Client).
type Service interface {
	Stats() (StatsView, error)
	// List returns records in a state ("received", ..., "dead",
	// "skipped"), done records with warnings for "warned", held notes for
	// "held", every record for "all", or conflicts for "conflict", after
	// an id, at most limit.
	List(state string, after uint64, limit int) ([]RecordView, []ConflictView, error)
	Show(id uint64, reveal bool) (RecordView, error)
	ShowConflict(id uint64, reveal bool) (ConflictView, error)
	// Retry puts a dead or skipped record back in its lane.
	Retry(id uint64) error
	RetryAllDead() (int, error)
	// RetrySkipped puts the skipped records of a message type (all when
	// typ is empty) back in their lanes, after a mapping for them was
	// added. gone counts those retention left without a payload.
	RetrySkipped(typ string) (requeued, gone int, err error)

	// The message browser's calls (browse.go), made for caller c: a
	// Client's daemon knows its caller itself and ignores c.
	Find(c Caller, q FindRequest) (FindView, error)
	Trace(c Caller, id uint64) (TraceView, error)
	RetryIDs(c Caller, ids []uint64) (RetryView, error)
	CloseRecord(c Caller, id uint64, reason string) error
	ResolveConflict(c Caller, id uint64, accept bool) (ConflictView, error)
	Release(c Caller, id uint64) error
}

// Local serves the admin operations from an open log, auditing reveals.
type Local struct {
	Log *checkpoint.Log
	// Audit receives one line per revealed payload.
	Audit *Audit
	// Via names the channel in audit lines: "cli" or "api".
	Via string
	// Remote is the client address for audit lines of API calls.
	Remote string
	// Audited says the caller already wrote this call's audit line,
	// naming who made it (the API's guard does, before the call).
	Audited bool
	// Caller is who the calls that take no Caller (Retry, RetryAllDead)
	// are made for, named in the records' history; zero: the OS user for
	// Via "cli".
	Caller Caller
	// LaneKeys, when set, gives the lane keys the running mapping set
	// makes of a patient's identifier (mappings.Set.PatientLaneKeys): a
	// patient search tries them before PatientLaneKeys' fixed forms, so
	// that an identifier is normalised as the messages' own were.
	LaneKeys func(authority, mrn string) []string
}

// patientKeys are the lane keys a patient search looks up.
func (s *Local) patientKeys(authority, mrn string) []string {
	keys := PatientLaneKeys(authority, mrn)
	if s.LaneKeys != nil && len(keys) > 0 {
		keys = append(s.LaneKeys(authority, mrn), keys...)
	}
	return keys
}

// auditReveal writes a reveal's audit line unless the API wrote it.
func (s *Local) auditReveal(object string) error {
	if s.Audited {
		return nil
	}
	return s.Audit.Record("reveal", object, s.Via, s.Remote)
}

var _ Service = (*Local)(nil)

// Stats implements Service.
func (s *Local) Stats() (StatsView, error) {
	st, err := s.Log.Stats()
	return StatsViewOf(st, time.Now()), err
}

// List implements Service.
func (s *Local) List(state string, after uint64, limit int) ([]RecordView, []ConflictView, error) {
	if state == "conflict" {
		cs, err := s.Log.Conflicts(after, limit)
		out := make([]ConflictView, len(cs))
		for i, c := range cs {
			out[i] = ConflictViewOf(c)
		}
		return nil, out, err
	}
	if state == "all" {
		var out []RecordView
		err := s.Log.AllAfter(after, func(r *checkpoint.Record) bool {
			out = append(out, ViewOf(r))
			return len(out) < limit
		})
		return out, nil, err
	}
	if state == "warned" {
		// Done records with warnings, in id order (the done index is in
		// the order they were done, which "after" cannot page through).
		var out []RecordView
		err := s.Log.AllAfter(after, func(r *checkpoint.Record) bool {
			if r.Warned() {
				out = append(out, ViewOf(r))
			}
			return len(out) < limit
		})
		return out, nil, err
	}
	if state == "held" {
		// Held notes wait, retrying, for data that resolves them (a
		// patient's EHR identifier, say); their reason says "held: ...".
		var out []RecordView
		for after := after; len(out) < limit; {
			rs, err := s.Log.List(checkpoint.Retrying, after, 500)
			if err != nil || len(rs) == 0 {
				return out, nil, err
			}
			for _, r := range rs {
				if connectors.HeldReason(r.Reason) && len(out) < limit {
					out = append(out, ViewOf(r))
				}
				after = r.ID
			}
		}
		return out, nil, nil
	}
	st, err := checkpoint.ParseState(state)
	if err != nil {
		return nil, nil, err
	}
	rs, err := s.Log.List(st, after, limit)
	out := make([]RecordView, len(rs))
	for i, r := range rs {
		out[i] = ViewOf(r)
	}
	return out, nil, err
}

// Show implements Service.
func (s *Local) Show(id uint64, reveal bool) (RecordView, error) {
	if !reveal {
		r, err := s.Log.Get(id)
		if err != nil {
			return RecordView{}, err
		}
		return ViewOf(r), nil
	}
	if err := s.auditReveal(fmt.Sprintf("record %d", id)); err != nil {
		return RecordView{}, err
	}
	r, err := s.Log.Reveal(id)
	if err != nil {
		return RecordView{}, err
	}
	return ViewOf(r), nil
}

// ShowConflict implements Service.
func (s *Local) ShowConflict(id uint64, reveal bool) (ConflictView, error) {
	if reveal {
		if err := s.auditReveal(fmt.Sprintf("conflict %d", id)); err != nil {
			return ConflictView{}, err
		}
	}
	c, payload, err := s.Log.RevealConflict(id)
	if err != nil {
		return ConflictView{}, err
	}
	v := ConflictViewOf(c)
	if reveal {
		v.Payload = string(payload)
	}
	return v, nil
}

// Retry implements Service.
func (s *Local) Retry(id uint64) error { return s.RetryBy(s.who(), id) }

// RetryAllDead implements Service.
func (s *Local) RetryAllDead() (int, error) { return s.RetryAllDeadBy(s.who()) }

// RetrySkipped implements Service.
func (s *Local) RetrySkipped(typ string) (int, int, error) {
	var match func(*checkpoint.Record) bool
	if typ != "" {
		match = func(r *checkpoint.Record) bool { return r.Type == typ }
	}
	return s.Log.RequeueSkippedBy(match, actor(s.who()))
}

// AuditFileName is the audit trail inside the data directory.
const AuditFileName = "audit.log"

// Audit appends one JSON line per admin call to a file (opened
// O_APPEND|O_WRONLY, mode 0600) and syncs it before the call proceeds: no
// reveal without its trace. Each line also goes to the system log
// (the systemd journal, the Windows Event Log) for the SIEM.
type Audit struct {
	mu   sync.Mutex
	path string
	// System receives a copy of each line; nil: none. A failure there is
	// counted, not fatal: the file is the record.
	System SystemLog
	// SystemFailures counts lines the system log did not take.
	SystemFailures int64
}

// NewAudit writes to the audit log of a data directory, and to the
// platform's system log when there is one.
func NewAudit(dataDir string) *Audit {
	return &Audit{path: filepath.Join(dataDir, AuditFileName), System: defaultSystemLog()}
}

// Record writes an audit line for a call made by this process's OS user
// (the CLI on a stopped daemon's log): what, through which channel.
func (a *Audit) Record(action, object, via, remote string) error {
	if a == nil {
		return errors.New("logadmin: no audit log: refusing to reveal")
	}
	c := Caller{Name: "unknown", Via: via, Remote: remote}
	if u, err := user.Current(); err == nil {
		c.Name, c.UID = u.Username, u.Uid
	}
	return a.Call(c, action, object, "allowed")
}

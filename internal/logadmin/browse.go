package logadmin

import (
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// The message browser's calls (issue 30): Find, Trace and the admin
// actions. Each takes the Caller it is made for: the API passes the one
// its guard identified, the console its signed-in user, the CLI on a
// stopped daemon's log the OS user (LocalCaller). Local writes the
// call's audit line naming that caller (unless the API's guard already
// did) and refuses a caller without the call's permission, except the
// CLI (Via "cli"), for which access to the log file is the permission.
// The caller's name is the actor an action's history records.

// FindRequest is a message browser query. Zero fields do not filter.
type FindRequest struct {
	// Authority and MRN name a patient as the user typed them (the
	// assigning authority, PID-3.4, and the identifier, PID-3.1): matched
	// through the log's keyed lane hashes (PatientLaneKeys), never stored.
	// Either one blank finds nothing.
	Authority string `json:"authority,omitempty"`
	MRN       string `json:"mrn,omitempty"`
	// States are state names ("dead", "retrying", ...): any of them.
	States []string `json:"states,omitempty"`
	// Type is "ADT^A01" (exact) or "ADT" (every ADT event).
	Type   string `json:"type,omitempty"`
	Source string `json:"source,omitempty"`
	// ControlID is an HL7 MSH-10 as sent ("MSG00001"), or with its sender
	// as the record key names it ("EPIC|HOSP|MSG00001").
	ControlID string `json:"control_id,omitempty"`
	// From and To bound the arrival time: From ≤ received < To.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// Before is FindView.Next of the previous page; 0 for the newest.
	Before uint64 `json:"before,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// patient says whether the request names a patient.
func (q FindRequest) patient() bool { return q.Authority != "" || q.MRN != "" }

// object names a find in audit lines: its filters, never the patient.
func (q FindRequest) object() string {
	parts := []string{"records"}
	if q.patient() {
		parts = append(parts, "of a patient")
	}
	for _, f := range []struct{ k, v string }{{"state", strings.Join(q.States, ",")}, {"type", q.Type}, {"source", q.Source},
		{"control_id", q.ControlID}} {
		if f.v != "" {
			parts = append(parts, f.k+"="+f.v)
		}
	}
	return strings.Join(parts, " ")
}

// FindView is a page of the message browser: records newest first, the
// cursor of the next page (0: none), and whether the page stopped at the
// bound on records read before it was full (the next page goes on).
type FindView struct {
	Records  []RecordView `json:"records"`
	Next     uint64       `json:"next,omitempty"`
	Partial  bool         `json:"partial,omitempty"`
	Examined int          `json:"examined"`
}

// EventView is one entry of a record's history.
type EventView struct {
	At       time.Time  `json:"at"`
	Kind     string     `json:"kind"`
	State    string     `json:"state,omitempty"`
	Reason   string     `json:"reason,omitempty"`
	Code     string     `json:"code,omitempty"`
	Op       int        `json:"op,omitempty"`
	Object   string     `json:"object,omitempty"`
	Action   string     `json:"action,omitempty"`
	Mapping  string     `json:"mapping,omitempty"`
	Targets  []string   `json:"targets,omitempty"`
	RetryAt  *time.Time `json:"retry_at,omitempty"`
	Actor    string     `json:"actor,omitempty"`
	Conflict uint64     `json:"conflict,omitempty"`
}

// EventViewOf converts a history event.
func EventViewOf(e checkpoint.Event) EventView {
	v := EventView{At: e.At.UTC(), Kind: string(e.Kind), Reason: e.Reason, Code: e.Code, Op: e.Op, Object: e.Object,
		Action: e.Action, Mapping: e.Mapping, Targets: e.Targets, Actor: e.Actor, Conflict: e.Conflict}
	if e.State != 0 {
		v.State = e.State.String()
	}
	if !e.RetryAt.IsZero() {
		t := e.RetryAt.UTC()
		v.RetryAt = &t
	}
	return v
}

// LaneRecordView is one record of a patient's timeline.
type LaneRecordView struct {
	ID       uint64    `json:"id"`
	Type     string    `json:"type,omitempty"`
	Source   string    `json:"source"`
	Received time.Time `json:"received"`
	State    string    `json:"state"`
	Reason   string    `json:"reason,omitempty"`
	Targets  []string  `json:"targets,omitempty"`
	// Holds: this record holds the lane (the patient's later records
	// wait for it).
	Holds bool `json:"holds,omitempty"`
}

// LaneView is a patient's timeline: their records in lane (arrival)
// order, the newest MaxLaneRecords of them, and the record that holds the
// lane (0: none, the lane is idle).
type LaneView struct {
	Records   []LaneRecordView `json:"records"`
	Holder    uint64           `json:"holder,omitempty"`
	Truncated bool             `json:"truncated,omitempty"`
}

// MaxLaneRecords bounds a timeline.
const MaxLaneRecords = 200

// TraceView is one record as the record view and `ehrbridge log trace`
// show it: its metadata and the ACK sent (Record), the next retry, every
// attempt and admin action (History), and the patient's timeline (Lane).
type TraceView struct {
	Record    RecordView  `json:"record"`
	NextRetry *time.Time  `json:"next_retry,omitempty"`
	History   []EventView `json:"history"`
	Lane      LaneView    `json:"lane"`
}

// RetryView answers a retry of a selection: the ids requeued; the others
// were not dead or skipped (or their payloads are gone).
type RetryView struct {
	Requeued []uint64 `json:"requeued"`
}

// PatientLaneKeys returns every form the lane key of the patient with
// this assigning authority and MRN may take: the shipped mapping sets'
// "AUTHORITY|MRN" (as typed, and with keysafe's escapes) and, for
// sources without a mapping lane, connectors/ehr.LaneKey's "MRN^AUTHORITY".
// Blank parts give none: an empty MRN or authority matches nothing.
func PatientLaneKeys(authority, mrn string) []string {
	authority, mrn = strings.TrimSpace(authority), strings.TrimSpace(mrn)
	if authority == "" || mrn == "" {
		return nil
	}
	keys := []string{authority + "|" + mrn, mrn + "^" + authority}
	if safe := mappings.KeySafe(authority) + "|" + mappings.KeySafe(mrn); safe != keys[0] {
		keys = append(keys, safe)
	}
	return keys
}

// ParsePatient splits "AUTHORITY|MRN" as `log find --mrn` takes it.
func ParsePatient(s string) (authority, mrn string, err error) {
	a, m, ok := strings.Cut(s, "|")
	if !ok || strings.TrimSpace(a) == "" || strings.TrimSpace(m) == "" {
		return "", "", errors.New(`give the patient as AUTHORITY|MRN (the assigning authority, PID-3.4, then the MRN, PID-3.1), both not blank`)
	}
	return a, m, nil
}

// controlIDSuffix is the end of a record key a typed control id matches:
// its last part escaped as connectors/ehr.RecordKey escapes MSH-10.
func controlIDSuffix(s string) string {
	if i := strings.LastIndexByte(s, '|'); i >= 0 {
		return s[:i+1] + hl7.KeyEscape(s[i+1:])
	}
	return hl7.KeyEscape(s)
}

// LocalCaller is the caller for the CLI on a stopped daemon's log: this
// process's OS user, via "cli".
func LocalCaller() Caller {
	c := Caller{Name: "unknown", Via: "cli"}
	if u, err := user.Current(); err == nil {
		c.Name, c.UID = u.Username, u.Uid
	}
	return c
}

// admit audits a call made for c, after checking its permission (see the
// lead); a call refused or not audited does not run.
func (s *Local) admit(c Caller, action, object string, need Perm) error {
	if s.Audited {
		return nil
	}
	if c.Via != "cli" && c.Perm&need != need {
		if s.Audit != nil {
			_ = s.Audit.Call(c, action, object, "refused")
		}
		return fmt.Errorf("%w: %s has no role for %s (needs %s)", ErrForbidden, actor(c), action, need)
	}
	if s.Audit == nil {
		return errors.New("logadmin: no audit log: refusing")
	}
	return s.Audit.Call(c, action, object, "allowed")
}

// who is the caller of the calls that take none: Local.Caller, or for
// the CLI the OS user.
func (s *Local) who() Caller {
	if s.Caller.Name != "" {
		return s.Caller
	}
	if s.Via == "cli" {
		return LocalCaller()
	}
	return Caller{Name: "unknown", Via: s.Via, Remote: s.Remote}
}

// actor is the name an action's history records for c.
func actor(c Caller) string {
	if c.Name == "" {
		return "unknown"
	}
	return c.Name
}

// Find returns a page of the message browser (PermView).
func (s *Local) Find(c Caller, q FindRequest) (FindView, error) {
	if err := s.admit(c, "find", q.object(), PermView); err != nil {
		return FindView{}, err
	}
	cq := checkpoint.Query{Type: q.Type, Source: q.Source, From: q.From, To: q.To, Before: q.Before, Limit: q.Limit}
	if q.ControlID != "" {
		cq.ControlID = controlIDSuffix(q.ControlID)
	}
	for _, name := range q.States {
		st, err := checkpoint.ParseState(name)
		if err != nil {
			return FindView{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		cq.States = append(cq.States, st)
	}
	if q.patient() {
		lanes, err := s.Log.PatientLanes(s.patientKeys(q.Authority, q.MRN)...)
		if err != nil {
			return FindView{}, err
		}
		cq.Lanes = lanes
	}
	p, err := s.Log.Find(cq)
	if err != nil {
		return FindView{}, err
	}
	v := FindView{Records: make([]RecordView, len(p.Records)), Next: p.Next, Partial: p.Partial, Examined: p.Examined}
	for i, r := range p.Records {
		v.Records[i] = ViewOf(r)
	}
	return v, nil
}

// Trace returns a record with its history and its patient's timeline
// (PermView).
func (s *Local) Trace(c Caller, id uint64) (TraceView, error) {
	if err := s.admit(c, "trace", "record "+strconv.FormatUint(id, 10), PermView); err != nil {
		return TraceView{}, err
	}
	r, err := s.Log.Get(id)
	if err != nil {
		return TraceView{}, err
	}
	h, err := s.Log.History(id)
	if err != nil {
		return TraceView{}, err
	}
	v := TraceView{Record: ViewOf(r), History: make([]EventView, len(h))}
	for i, e := range h {
		v.History[i] = EventViewOf(e)
	}
	if r.State == checkpoint.Retrying || r.State == checkpoint.Received {
		t := r.ReadyAt.UTC()
		v.NextRetry = &t
	}
	p, err := s.Log.Find(checkpoint.Query{Lanes: [][16]byte{r.Lane}, Limit: MaxLaneRecords, MaxExamined: MaxLaneRecords})
	if err != nil {
		return TraceView{}, err
	}
	if v.Lane.Holder, err = s.Log.LaneHolder(r.Lane); err != nil {
		return TraceView{}, err
	}
	v.Lane.Truncated = p.Next != 0
	slices.Reverse(p.Records)
	v.Lane.Records = make([]LaneRecordView, len(p.Records))
	for i, lr := range p.Records {
		v.Lane.Records[i] = LaneRecordView{ID: lr.ID, Type: lr.Type, Source: lr.Source, Received: lr.Received.UTC(),
			State: lr.State.String(), Reason: lr.Reason, Targets: lr.Targets, Holds: lr.ID == v.Lane.Holder}
	}
	return v, nil
}

// RetryIDs puts the dead and skipped records among ids back in their
// lanes (PermOperate): retry one, or a selection.
func (s *Local) RetryIDs(c Caller, ids []uint64) (RetryView, error) {
	if len(ids) == 0 {
		return RetryView{Requeued: []uint64{}}, fmt.Errorf("%w: no record ids to retry", ErrBadRequest)
	}
	if err := s.admit(c, "retry", idsObject(ids), PermOperate); err != nil {
		return RetryView{}, err
	}
	got, err := s.Log.RequeueSelection(actor(c), ids)
	if got == nil {
		got = []uint64{}
	}
	return RetryView{Requeued: got}, err
}

// RetryBy puts one dead or skipped record back in its lane (PermOperate);
// another state is an ErrTransition.
func (s *Local) RetryBy(c Caller, id uint64) error {
	if err := s.admit(c, "retry", "record "+strconv.FormatUint(id, 10), PermOperate); err != nil {
		return err
	}
	return s.Log.RequeueBy(id, actor(c))
}

// RetryAllDeadBy requeues every dead record (PermOperate).
func (s *Local) RetryAllDeadBy(c Caller) (int, error) {
	if err := s.admit(c, "retry-dead", "dead records", PermOperate); err != nil {
		return 0, err
	}
	return s.Log.RequeueAllDeadBy(actor(c))
}

// CloseRecord closes a dead record (PermOperate): it becomes skipped,
// "closed by" the caller, the reason kept sealed as its detail.
func (s *Local) CloseRecord(c Caller, id uint64, reason string) error {
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("%w: give the reason the record is closed", ErrBadRequest)
	}
	if err := s.admit(c, "close", "record "+strconv.FormatUint(id, 10), PermOperate); err != nil {
		return err
	}
	return s.Log.CloseRecord(id, actor(c), reason)
}

// ResolveConflict keeps the stored message of a conflict or accepts the
// new one (PermOperate), and returns the entry as it was.
func (s *Local) ResolveConflict(c Caller, id uint64, accept bool) (ConflictView, error) {
	how := "keep"
	if accept {
		how = "accept"
	}
	if err := s.admit(c, "resolve-"+how, "conflict "+strconv.FormatUint(id, 10), PermOperate); err != nil {
		return ConflictView{}, err
	}
	es, err := s.Log.Conflicts(id-1, 1)
	if err != nil {
		return ConflictView{}, err
	}
	if len(es) == 0 || es[0].ID != id {
		return ConflictView{}, fmt.Errorf("%w: conflict %d", checkpoint.ErrNotFound, id)
	}
	if err := s.Log.ResolveConflict(id, actor(c), accept); err != nil {
		return ConflictView{}, err
	}
	v := ConflictViewOf(es[0])
	v.Resolution = how
	return v, nil
}

// Release makes a held note (or any retrying record) ready now
// (PermOperate).
func (s *Local) Release(c Caller, id uint64) error {
	if err := s.admit(c, "release", "record "+strconv.FormatUint(id, 10), PermOperate); err != nil {
		return err
	}
	return s.Log.Release(id, actor(c))
}

// idsObject names a selection in audit lines.
func idsObject(ids []uint64) string {
	var b strings.Builder
	b.WriteString("records ")
	for i, id := range ids {
		if i == 20 {
			fmt.Fprintf(&b, " and %d more", len(ids)-20)
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(id, 10))
	}
	return b.String()
}

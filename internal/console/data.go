package console

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// The console reads and acts through logadmin.Local, the calls behind the
// log API and the `log` commands, so that the browser and the command line
// give the same answers. The console writes its own audit lines (page and
// act, before each call), so Local does not write them again.

// local is the log as logadmin serves it, for a signed-in user.
func (c *Console) local(s *session) *logadmin.Local {
	l := &logadmin.Local{Log: c.opts.Log, Audit: c.opts.Access.Audit, Via: "console", Audited: true, LaneKeys: c.setLaneKeys}
	if s != nil {
		l.Caller, l.Remote = s.caller, s.caller.Remote
	}
	return l
}

// setLaneKeys are the running set's lane keys of an identifier.
func (c *Console) setLaneKeys(authority, mrn string) []string {
	if set := c.set(); set != nil {
		return set.PatientLaneKeys(authority, mrn)
	}
	return nil
}

// consoleQuery is a browser filter as a logadmin FindRequest, with the
// console's own states: held (retrying notes waiting for CRM data) and
// warned (done with warnings).
type consoleQuery struct {
	q       logadmin.FindRequest
	held    bool
	warned  bool
	patient bool
	laneRef string // the patient's lane hash prefix, for the audit line
}

func (c *Console) findQuery(f filterForm) (consoleQuery, error) {
	cq := consoleQuery{q: logadmin.FindRequest{Type: f.Type, Source: f.Source, ControlID: f.ControlID, Before: f.Before, Limit: f.Limit}}
	switch f.State {
	case "":
	case "held":
		cq.q.States, cq.held = []string{checkpoint.Retrying.String()}, true
	case "warned":
		cq.q.States, cq.warned = []string{checkpoint.Done.String()}, true
	default:
		if _, err := checkpoint.ParseState(f.State); err != nil {
			return cq, fmt.Errorf("no state %q", f.State)
		}
		cq.q.States = []string{f.State}
	}
	var err error
	if cq.q.From, err = parseLocal(f.From); err != nil {
		return cq, err
	}
	if cq.q.To, err = parseLocal(f.To); err != nil {
		return cq, err
	}
	if f.MRN != "" || f.Authority != "" {
		if f.MRN == "" || f.Authority == "" {
			return cq, errors.New("a patient is searched by assigning authority and MRN together: an MRN alone can name two patients")
		}
		cq.q.Authority, cq.q.MRN, cq.patient = f.Authority, f.MRN, true
		cq.laneRef = c.laneRef(f.Authority, f.MRN)
	}
	return cq, nil
}

// laneRef names a patient in audit lines: the hash prefix of the first
// lane its identifier gives, never the MRN.
func (c *Console) laneRef(authority, mrn string) string {
	lanes, err := c.opts.Log.PatientLanes(append(c.setLaneKeys(authority, mrn), logadmin.PatientLaneKeys(authority, mrn)...)...)
	if err != nil || len(lanes) == 0 {
		return "(none)"
	}
	return hex.EncodeToString(lanes[0][:6])
}

type findResult struct {
	Rows     []logadmin.RecordView
	Next     uint64
	Partial  bool
	Examined int
}

func (c *Console) find(s *session, cq consoleQuery) (findResult, error) {
	v, err := c.local(s).Find(s.caller, cq.q)
	if err != nil {
		return findResult{}, err
	}
	res := findResult{Next: v.Next, Partial: v.Partial, Examined: v.Examined}
	for _, r := range v.Records {
		if cq.held && !connectors.HeldReason(r.Reason) || cq.warned && !r.Warned {
			continue
		}
		res.Rows = append(res.Rows, r)
	}
	return res, nil
}

// laneRow is one record of a patient's lane.
type laneRow struct {
	logadmin.LaneRecordView
	// Waiting: an unfinished record behind the one that holds the lane;
	// Current: the record the page is about.
	Waiting, Current bool
}

// traceData is the record view's: the record, its history, its lane.
type traceData struct {
	Record    logadmin.RecordView
	History   []logadmin.EventView
	NextRetry *time.Time
	Lane      []laneRow
	LaneMore  bool // the lane has more records than shown
	Holder    uint64
	Held      bool // a held note
}

func (c *Console) trace(s *session, id uint64) (traceData, error) {
	v, err := c.local(s).Trace(s.caller, id)
	if err != nil {
		return traceData{}, err
	}
	t := traceData{Record: v.Record, History: v.History, NextRetry: v.NextRetry, LaneMore: v.Lane.Truncated, Holder: v.Lane.Holder,
		Held: v.Record.State == checkpoint.Retrying.String() && connectors.HeldReason(v.Record.Reason)}
	t.Lane = laneRows(v.Lane.Records, v.Lane.Holder)
	for i := range t.Lane {
		t.Lane[i].Current = t.Lane[i].ID == id
	}
	return t, nil
}

// laneRows marks the records waiting behind the holder.
func laneRows(recs []logadmin.LaneRecordView, holder uint64) []laneRow {
	rows := make([]laneRow, len(recs))
	behind := false
	for i, r := range recs {
		rows[i] = laneRow{LaneRecordView: r}
		switch {
		case r.ID == holder:
			behind = true
		case behind && (r.State == "received" || r.State == "retrying" || r.State == "in_progress"):
			rows[i].Waiting = true
		}
	}
	return rows
}

// timelineData is a patient's timeline.
type timelineData struct {
	LaneRef string
	Rows    []laneRow
	More    bool
	Holder  *laneRow
	Targets []string // the CRM ids its records created or updated
	Counts  map[string]int
}

// timeline is every record of a patient, oldest first: the message
// browser's patient search (the newest logadmin.MaxLaneRecords), in lane
// order, with the record that holds each of the patient's lanes.
func (c *Console) timeline(s *session, authority, mrn string) (*timelineData, error) {
	v, err := c.local(s).Find(s.caller, logadmin.FindRequest{Authority: authority, MRN: mrn, Limit: logadmin.MaxLaneRecords})
	if err != nil {
		return nil, err
	}
	tl := &timelineData{Counts: map[string]int{}, More: v.Next != 0, LaneRef: c.laneRef(authority, mrn)}
	recs := make([]logadmin.LaneRecordView, 0, len(v.Records))
	var holder uint64
	for _, r := range slices.Backward(v.Records) {
		recs = append(recs, logadmin.LaneRecordView{ID: r.ID, Type: r.Type, Source: r.Source, Received: r.Received, State: r.State,
			Reason: r.Reason, Targets: r.Targets})
	}
	// The oldest unfinished record holds the lane (a patient's records
	// share one lane unless their sources key them differently).
	for i := range recs {
		if st := recs[i].State; holder == 0 && (st == "received" || st == "retrying" || st == "in_progress") {
			holder = recs[i].ID
			recs[i].Holds = true
		}
	}
	tl.Rows = laneRows(recs, holder)
	seen := map[string]bool{}
	for i := range tl.Rows {
		tl.Counts[tl.Rows[i].State]++
		if tl.Rows[i].Holds {
			tl.Holder = &tl.Rows[i]
		}
		for _, id := range tl.Rows[i].Targets {
			if !seen[id] {
				seen[id] = true
				tl.Targets = append(tl.Targets, id)
			}
		}
	}
	return tl, nil
}

func (c *Console) doRetry(s *session, id uint64) error { return c.local(s).RetryBy(s.caller, id) }

func (c *Console) doRetrySelection(s *session, ids []uint64) (int, error) {
	v, err := c.local(s).RetryIDs(s.caller, ids)
	return len(v.Requeued), err
}

func (c *Console) doRetryDead(s *session) (int, error) { return c.local(s).RetryAllDeadBy(s.caller) }

func (c *Console) doClose(s *session, id uint64, reason string) error {
	return c.local(s).CloseRecord(s.caller, id, reason)
}

func (c *Console) doRelease(s *session, id uint64) error { return c.local(s).Release(s.caller, id) }

func (c *Console) doResolve(s *session, id uint64, accept bool) error {
	_, err := c.local(s).ResolveConflict(s.caller, id, accept)
	return err
}

// statusOf is the HTTP status of a log error.
func statusOf(err error) int {
	switch {
	case errors.Is(err, checkpoint.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, checkpoint.ErrTransition), errors.Is(err, checkpoint.ErrPayloadGone):
		return http.StatusConflict
	case errors.Is(err, logadmin.ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, logadmin.ErrForbidden):
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

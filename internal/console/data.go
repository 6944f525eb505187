package console

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// consoleQuery is a browser filter ready for checkpoint.Find, with the
// console's own states: held (retrying notes waiting for CRM data) and
// warned (done with warnings).
type consoleQuery struct {
	q       checkpoint.Query
	held    bool
	warned  bool
	patient bool
	laneRef string // the patient's lane hash prefix, for the audit line
}

func (c *Console) findQuery(f filterForm) (consoleQuery, error) {
	cq := consoleQuery{q: checkpoint.Query{Type: f.Type, Source: f.Source, ControlID: f.ControlID, Before: f.Before, Limit: f.Limit}}
	switch f.State {
	case "":
	case "held":
		cq.q.States, cq.held = []checkpoint.State{checkpoint.Retrying}, true
	case "warned":
		cq.q.States, cq.warned = []checkpoint.State{checkpoint.Done}, true
	default:
		st, err := checkpoint.ParseState(f.State)
		if err != nil {
			return cq, fmt.Errorf("no state %q", f.State)
		}
		cq.q.States = []checkpoint.State{st}
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
		lanes, err := c.opts.Log.PatientLanes(c.patientLaneKeys(f.Authority, f.MRN)...)
		if err != nil {
			return cq, err
		}
		cq.q.Lanes, cq.patient = lanes, true
		if len(lanes) > 0 {
			cq.laneRef = hex.EncodeToString(lanes[0][:6])
		}
	}
	return cq, nil
}

type findResult struct {
	Rows     []logadmin.RecordView
	Next     uint64
	Partial  bool
	Examined int
}

func (c *Console) find(cq consoleQuery) (findResult, error) {
	page, err := c.opts.Log.Find(cq.q)
	if err != nil {
		return findResult{}, err
	}
	res := findResult{Next: page.Next, Partial: page.Partial, Examined: page.Examined}
	for _, r := range page.Records {
		if cq.held && !strings.HasPrefix(r.Reason, connectors.HeldPrefix) || cq.warned && !r.Warned() {
			continue
		}
		res.Rows = append(res.Rows, logadmin.ViewOf(r))
	}
	return res, nil
}

// laneRow is one record of a patient's lane.
type laneRow struct {
	logadmin.RecordView
	// Holder: the record the lane waits on (the oldest unfinished one);
	// Waiting: an unfinished record behind it.
	Holder, Waiting, Current bool
}

// traceData is the record view's: the record, its history, its lane.
type traceData struct {
	Record    logadmin.RecordView
	History   []checkpoint.Event
	NextRetry time.Time
	Lane      []laneRow
	LaneMore  bool // the lane has more records than shown
	Holder    uint64
	Held      bool // a held note
}

// maxLaneRows bounds the records a lane shows (the newest).
const maxLaneRows = 200

func (c *Console) trace(id uint64) (traceData, error) {
	r, err := c.opts.Log.Get(id)
	if err != nil {
		return traceData{}, err
	}
	t := traceData{Record: logadmin.ViewOf(r), Held: r.State == checkpoint.Retrying && strings.HasPrefix(r.Reason, connectors.HeldPrefix)}
	if r.State == checkpoint.Retrying || r.State == checkpoint.Received {
		t.NextRetry = r.ReadyAt
	}
	if t.History, err = c.opts.Log.History(id); err != nil {
		return t, err
	}
	rows, more, holder, err := c.lane([][16]byte{r.Lane})
	if err != nil {
		return t, err
	}
	for i := range rows {
		rows[i].Current = rows[i].ID == id
	}
	t.Lane, t.LaneMore, t.Holder = rows, more, holder
	return t, nil
}

// lane returns the records of lanes in lane order (oldest first, the
// newest maxLaneRows), and the record that holds the lane.
func (c *Console) lane(lanes [][16]byte) ([]laneRow, bool, uint64, error) {
	page, err := c.opts.Log.Find(checkpoint.Query{Lanes: lanes, Limit: maxLaneRows, MaxExamined: 10 * maxLaneRows})
	if err != nil {
		return nil, false, 0, err
	}
	rows := make([]laneRow, len(page.Records))
	for i, r := range page.Records {
		rows[len(rows)-1-i] = laneRow{RecordView: logadmin.ViewOf(r)}
	}
	var holder uint64
	for i := range rows {
		switch rows[i].State {
		case "received", "in_progress", "retrying":
			if holder == 0 {
				holder, rows[i].Holder = rows[i].ID, true
			} else {
				rows[i].Waiting = true
			}
		}
	}
	return rows, page.Next != 0, holder, nil
}

// timelineData is a patient's timeline.
type timelineData struct {
	LaneRef  string
	Rows     []laneRow
	More     bool
	Holder   *laneRow
	Targets  []string // the CRM ids its records created or updated
	Counts   map[string]int
	Patients int // lane keys that matched (forms of the identifier)
}

func (c *Console) timeline(authority, mrn string) (*timelineData, error) {
	lanes, err := c.opts.Log.PatientLanes(c.patientLaneKeys(authority, mrn)...)
	if err != nil {
		return nil, err
	}
	tl := &timelineData{Counts: map[string]int{}}
	if len(lanes) > 0 {
		tl.LaneRef = hex.EncodeToString(lanes[0][:6])
	}
	rows, more, _, err := c.lane(lanes)
	if err != nil {
		return nil, err
	}
	tl.Rows, tl.More = rows, more
	seen := map[string]bool{}
	for i := range rows {
		tl.Counts[rows[i].State]++
		if rows[i].Holder {
			tl.Holder = &rows[i]
		}
		for _, id := range rows[i].Targets {
			if !seen[id] {
				seen[id] = true
				tl.Targets = append(tl.Targets, id)
			}
		}
	}
	return tl, nil
}

// actor names the signed-in user in the log's history of a record.
func actor(s *session) string { return s.caller.Name + " (console)" }

func (c *Console) doRetry(s *session, ids []uint64) error {
	if len(ids) != 1 {
		_, err := c.opts.Log.RequeueSelection(actor(s), ids)
		return err
	}
	return c.opts.Log.RequeueBy(ids[0], actor(s))
}

func (c *Console) doRetrySelection(s *session, ids []uint64) (int, error) {
	got, err := c.opts.Log.RequeueSelection(actor(s), ids)
	return len(got), err
}

func (c *Console) doRetryDead(s *session) (int, error) { return c.opts.Log.RequeueAllDeadBy(actor(s)) }

func (c *Console) doClose(s *session, id uint64, reason string) error {
	return c.opts.Log.CloseRecord(id, actor(s), reason)
}

func (c *Console) doRelease(s *session, id uint64) error { return c.opts.Log.Release(id, actor(s)) }

func (c *Console) doResolve(s *session, id uint64, accept bool) error {
	return c.opts.Log.ResolveConflict(id, actor(s), accept)
}

// statusOf is the HTTP status of a log error.
func statusOf(err error) int {
	switch {
	case errors.Is(err, checkpoint.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, checkpoint.ErrTransition), errors.Is(err, checkpoint.ErrPayloadGone):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// patientLaneKeys are the lane keys a patient's records may carry: those
// the running set's lane: gives the identifier, and the default lane key
// of a set without one.
func (c *Console) patientLaneKeys(authority, mrn string) []string {
	keys := defaultLaneKeys(authority, mrn)
	if c.opts.Mappings != nil {
		keys = append(c.opts.Mappings().PatientLaneKeys(authority, mrn), keys...)
	}
	return keys
}

// defaultLaneKeys: TEMPORARY until logadmin's lands.
func defaultLaneKeys(authority, mrn string) []string {
	if authority == "" || mrn == "" {
		return nil
	}
	return []string{authority + "|" + mrn, mrn + "^" + authority}
}

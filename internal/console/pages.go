package console

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// extraRoutes registers the console's pages beyond the dashboard.
func (c *Console) extraRoutes() {
	v, op, rv := logadmin.PermView, logadmin.PermOperate, logadmin.PermReveal
	c.mux.HandleFunc("GET "+Prefix+"messages", c.page(v, "", c.messages))
	c.mux.HandleFunc("GET "+Prefix+"records/{id}", c.page(v, "", c.record))
	c.mux.HandleFunc("POST "+Prefix+"records/{id}/reveal", c.act(rv, "reveal", recordObject, c.reveal))
	c.mux.HandleFunc("GET "+Prefix+"patients", c.page(v, "", c.patient))
	c.mux.HandleFunc("GET "+Prefix+"conflicts", c.page(v, "", c.conflicts))
	c.mux.HandleFunc("POST "+Prefix+"conflicts/{id}/reveal", c.act(rv, "reveal", conflictObject, c.revealConflict))
	// Actions: a GET shows what will be done and asks to confirm; the
	// confirming POST does it (audited with the signed-in user).
	c.mux.HandleFunc("GET "+Prefix+"confirm", c.page(op, "", c.confirm))
	c.mux.HandleFunc("POST "+Prefix+"confirm", c.act(op, "confirm", nil, c.confirmSelection))
	c.mux.HandleFunc("POST "+Prefix+"records/{id}/retry", c.act(op, "retry", recordObject, c.retry))
	c.mux.HandleFunc("POST "+Prefix+"records/{id}/close", c.act(op, "close", recordObject, c.close))
	c.mux.HandleFunc("POST "+Prefix+"records/{id}/release", c.act(op, "release", recordObject, c.release))
	c.mux.HandleFunc("POST "+Prefix+"retry-selected", c.act(op, "retry-selected", selectionObject, c.retrySelected))
	c.mux.HandleFunc("POST "+Prefix+"retry-dead", c.act(op, "retry-dead", func(*http.Request) string { return "dead records" }, c.retryDead))
	c.mux.HandleFunc("POST "+Prefix+"conflicts/{id}/resolve", c.act(op, "resolve", conflictObject, c.resolve))
	c.workbenchRoutes()
}

func recordObject(r *http.Request) string   { return "record " + r.PathValue("id") }
func conflictObject(r *http.Request) string { return "conflict " + r.PathValue("id") }

func selectionObject(r *http.Request) string {
	ids := r.PostForm["id"]
	if len(ids) > 20 {
		return fmt.Sprintf("records %s … (%d)", strings.Join(ids[:20], " "), len(ids))
	}
	return "records " + strings.Join(ids, " ")
}

func pathID(r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}

// done sends the browser back to a page with a message (POST, redirect,
// GET: a reload does not repeat the action).
func done(w http.ResponseWriter, r *http.Request, to, msg string) {
	sep := "?"
	if strings.Contains(to, "?") {
		sep = "&"
	}
	http.Redirect(w, r, to+sep+"done="+url.QueryEscape(msg), http.StatusSeeOther)
}

// filterForm is the message browser's filter, as the form gives it.
type filterForm struct {
	State, Type, Source, ControlID string
	Authority, MRN                 string
	From, To                       string // datetime-local, UTC
	Before                         uint64
	Limit                          int
}

func filterOf(q url.Values) filterForm {
	f := filterForm{State: q.Get("state"), Type: strings.TrimSpace(q.Get("type")), Source: strings.TrimSpace(q.Get("source")),
		ControlID: strings.TrimSpace(q.Get("control_id")), Authority: strings.TrimSpace(q.Get("authority")),
		MRN: strings.TrimSpace(q.Get("mrn")), From: q.Get("from"), To: q.Get("to")}
	f.Before, _ = strconv.ParseUint(q.Get("before"), 10, 64)
	f.Limit, _ = strconv.Atoi(q.Get("limit"))
	if f.Limit <= 0 || f.Limit > 500 {
		f.Limit = 50
	}
	return f
}

// query is the filter as a query string, with before set to the cursor.
func (f filterForm) query(before uint64) string {
	q := url.Values{}
	for k, v := range map[string]string{"state": f.State, "type": f.Type, "source": f.Source, "control_id": f.ControlID,
		"authority": f.Authority, "mrn": f.MRN, "from": f.From, "to": f.To} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit != 50 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if before != 0 {
		q.Set("before", strconv.FormatUint(before, 10))
	}
	return q.Encode()
}

// parseLocal reads a datetime-local value as UTC.
func parseLocal(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date and time (YYYY-MM-DDTHH:MM, UTC)", s)
}

var stateChoices = []string{"received", "in_progress", "retrying", "held", "dead", "done", "warned", "skipped"}

type messagesData struct {
	Filter   filterForm
	States   []string
	Sources  []string
	Rows     []logadmin.RecordView
	Next     string // query of the next (older) page; "" at the end
	First    string // query of the first page, when not on it
	Partial  bool
	Examined int
	Problem  string
	Patient  bool // the search names a patient
	// PatientLink is the query of the patient's timeline.
	PatientLink template.URL
	Elapsed     string
}

func (c *Console) sourceNames() []string {
	var out []string
	o := c.overview()
	for _, e := range o.Sources {
		if e.LogSource != "" {
			out = append(out, e.LogSource)
		}
	}
	return out
}

// messages is the message browser.
func (c *Console) messages(w http.ResponseWriter, r *http.Request, s *session) {
	f := filterOf(r.URL.Query())
	d := messagesData{Filter: f, States: stateChoices, Sources: c.sourceNames()}
	started := time.Now()
	q, err := c.findQuery(f)
	if err == nil && q.patient {
		d.Patient = true
		d.PatientLink = template.URL(url.Values{"authority": {f.Authority}, "mrn": {f.MRN}}.Encode())
		// Who looked for which patient is audited, by the lane's hash
		// prefix: the audit log holds no MRN.
		if aerr := c.opts.Access.Audit.Call(s.caller, "find patient", "patient "+q.laneRef, "allowed"); aerr != nil {
			err = fmt.Errorf("the audit log cannot be written, so the search was not run")
		}
	}
	if err == nil {
		var res findResult
		res, err = c.find(s, q)
		d.Rows, d.Partial, d.Examined = res.Rows, res.Partial, res.Examined
		if res.Next != 0 {
			d.Next = f.query(res.Next)
		}
	}
	if err != nil {
		d.Problem = err.Error()
	}
	if f.Before != 0 {
		d.First = f.query(0)
	}
	d.Elapsed = time.Since(started).Round(time.Microsecond).String()
	c.render(w, r, s, "messages", "Messages", "messages", d)
}

// recordData is the record view's.
type recordData struct {
	Trace    traceData
	Revealed bool
	Payload  string
	Detail   string
	Tree     any // *workbench.Tree of a revealed HL7 message
	Explain  any // *workbench.Explanation of a revealed message
	Problem  string
	// Closed: an operator closed the record; Detail is their reason.
	Closed bool
}

// traced is the record a record page is about, or false after answering
// the problem.
func (c *Console) traced(w http.ResponseWriter, r *http.Request, s *session) (uint64, traceData, bool) {
	id, ok := pathID(r)
	if !ok {
		c.fail(w, r, s, http.StatusBadRequest, "A record id is a positive number.")
		return 0, traceData{}, false
	}
	// Opening a record is audited as the log API's trace is (the page
	// shows metadata, no message content).
	if err := c.opts.Access.Audit.Call(s.caller, "trace", fmt.Sprintf("record %d", id), "allowed"); err != nil {
		c.fail(w, r, s, http.StatusInternalServerError, "The audit log cannot be written, so the record is not shown.")
		return 0, traceData{}, false
	}
	tr, err := c.trace(s, id)
	if err != nil {
		c.fail(w, r, s, statusOf(err), err.Error())
		return 0, traceData{}, false
	}
	return id, tr, true
}

func (c *Console) record(w http.ResponseWriter, r *http.Request, s *session) {
	if id, tr, ok := c.traced(w, r, s); ok {
		c.render(w, r, s, "record", fmt.Sprintf("Record %d", id), "messages", recordData{Trace: tr})
	}
}

// reveal shows a record with its payload: a POST (audited before it is
// read), answered with the page itself, so that the message never sits in
// a URL, the browser's history or a cache.
func (c *Console) reveal(w http.ResponseWriter, r *http.Request, s *session) {
	id, tr, ok := c.traced(w, r, s)
	if !ok {
		return
	}
	d := recordData{Trace: tr, Revealed: true, Closed: strings.HasPrefix(tr.Record.Reason, checkpoint.ClosedPrefix)}
	rec, err := c.opts.Log.Reveal(id)
	switch {
	case err != nil:
		d.Problem = "The payload cannot be read: " + err.Error()
	case rec.PayloadDropped || len(rec.Payload) == 0:
		d.Problem = "Retention dropped this record's payload: its metadata and history are all that is left."
		d.Detail = rec.Detail
	default:
		d.Payload, d.Detail = string(rec.Payload), rec.Detail
		d.Tree, d.Explain = c.analyse(rec.Payload)
	}
	c.render(w, r, s, "record", fmt.Sprintf("Record %d (revealed)", id), "messages", d)
}

type patientData struct {
	Authority, MRN string
	Timeline       *timelineData
	Problem        string
}

// patient is the patient timeline: every record of one patient in lane
// order.
func (c *Console) patient(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := patientData{Authority: strings.TrimSpace(q.Get("authority")), MRN: strings.TrimSpace(q.Get("mrn"))}
	if d.MRN != "" || d.Authority != "" {
		if d.MRN == "" || d.Authority == "" {
			d.Problem = "Give both the assigning authority and the MRN: an MRN alone can name two patients."
		} else {
			tl, err := c.timeline(s, d.Authority, d.MRN)
			if err == nil {
				err = c.opts.Access.Audit.Call(s.caller, "patient timeline", "patient "+tl.LaneRef, "allowed")
			}
			if err != nil {
				d.Problem = err.Error()
			} else {
				d.Timeline = tl
			}
		}
	}
	c.render(w, r, s, "patient", "Patient timeline", "patients", d)
}

type conflictsData struct {
	Rows     []logadmin.ConflictView
	Revealed *logadmin.ConflictView
	Stored   string // the stored record's payload, beside a revealed conflict
	Problem  string
	After    uint64
	Next     uint64
}

func (c *Console) conflicts(w http.ResponseWriter, r *http.Request, s *session) {
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	d := conflictsData{After: after}
	local := &logadmin.Local{Log: c.opts.Log}
	_, rows, err := local.List("conflict", after, 100)
	if err != nil {
		d.Problem = err.Error()
	}
	d.Rows = rows
	if len(rows) == 100 {
		d.Next = rows[len(rows)-1].ID
	}
	c.render(w, r, s, "conflicts", "Conflicts", "conflicts", d)
}

func (c *Console) revealConflict(w http.ResponseWriter, r *http.Request, s *session) {
	id, ok := pathID(r)
	if !ok {
		c.fail(w, r, s, http.StatusBadRequest, "A conflict id is a positive number.")
		return
	}
	local := &logadmin.Local{Log: c.opts.Log}
	cv, err := local.ShowConflict(id, false)
	if err != nil {
		c.fail(w, r, s, statusOf(err), err.Error())
		return
	}
	ce, payload, err := c.opts.Log.RevealConflict(id)
	if err != nil {
		c.fail(w, r, s, statusOf(err), err.Error())
		return
	}
	cv.Payload = string(payload)
	d := conflictsData{Revealed: &cv}
	if rec, err := c.opts.Log.Reveal(ce.RecordID); err == nil {
		d.Stored = string(rec.Payload)
	}
	c.render(w, r, s, "conflicts", fmt.Sprintf("Conflict %d (revealed)", id), "conflicts", d)
}

// confirmData is the confirmation page of an action.
type confirmData struct {
	Action, Title, Explain, Target string
	Back                           string // where Cancel goes
	ID                             uint64
	IDs                            []string
	NeedsReason                    bool
	Record                         *logadmin.RecordView
	Conflict                       *logadmin.ConflictView
}

// actions are what the confirm page can ask about, with the POST target
// and the words it shows.
var actions = map[string]struct{ title, explain string }{
	"retry":   {"Retry this record", "It goes back into its patient's lane as received, its attempts reset, and is sent again as soon as the lane is free."},
	"close":   {"Close this dead record", "It ends as skipped, closed by you with the reason you give (kept encrypted with the record, shown only on reveal). It can be retried later."},
	"release": {"Release this held note", "It is tried again now instead of at its next scheduled retry (a note is held while the CRM lacks what filing it needs)."},
	"keep":    {"Keep the stored message", "The conflicting message is dismissed; the record stays as it is."},
	"accept":  {"Accept the new message", "The conflicting message replaces the stored one and the record is sent again, in its patient's lane."},
	"dead":    {"Retry every dead record", "Every dead record goes back into its lane as received."},
}

func (c *Console) confirm(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	do := q.Get("do")
	a, ok := actions[do]
	if !ok {
		c.fail(w, r, s, http.StatusBadRequest, "No such action.")
		return
	}
	d := confirmData{Action: do, Title: a.title, Explain: a.explain, NeedsReason: do == "close", Back: Prefix + "messages"}
	id, _ := strconv.ParseUint(q.Get("id"), 10, 64)
	d.ID = id
	switch do {
	case "retry", "close", "release":
		d.Back = fmt.Sprintf("%srecords/%d", Prefix, id)
	case "keep", "accept":
		d.Back = Prefix + "conflicts"
	}
	local := &logadmin.Local{Log: c.opts.Log}
	switch do {
	case "retry", "close", "release":
		v, err := local.Show(id, false)
		if err != nil {
			c.fail(w, r, s, statusOf(err), err.Error())
			return
		}
		d.Record, d.Target = &v, fmt.Sprintf("%srecords/%d/%s", Prefix, id, do)
	case "keep", "accept":
		v, err := local.ShowConflict(id, false)
		if err != nil {
			c.fail(w, r, s, statusOf(err), err.Error())
			return
		}
		d.Conflict, d.Target = &v, fmt.Sprintf("%sconflicts/%d/resolve", Prefix, id)
	case "dead":
		d.Target = Prefix + "retry-dead"
	}
	c.render(w, r, s, "confirm", a.title, "", d)
}

// confirmSelection is the message browser's "retry selected": it shows
// the selection to confirm.
func (c *Console) confirmSelection(w http.ResponseWriter, r *http.Request, s *session) {
	ids := r.PostForm["id"]
	if len(ids) == 0 {
		done(w, r, Prefix+"messages", "No record was selected.")
		return
	}
	for _, id := range ids {
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			c.fail(w, r, s, http.StatusBadRequest, "A record id is a positive number.")
			return
		}
	}
	c.render(w, r, s, "confirm", "Retry the selected records", "", confirmData{Action: "retry-selected", Title: "Retry the selected records",
		Explain: "Each dead or skipped record goes back into its lane as received; records in other states are left as they are.",
		IDs:     ids, Target: Prefix + "retry-selected", Back: Prefix + "messages"})
}

func (c *Console) retry(w http.ResponseWriter, r *http.Request, s *session) {
	id, _ := pathID(r)
	if err := c.doRetry(s, id); err != nil {
		c.fail(w, r, s, statusOf(err), "Not retried: "+err.Error())
		return
	}
	done(w, r, fmt.Sprintf("%srecords/%d", Prefix, id), fmt.Sprintf("Record %d is queued again.", id))
}

func (c *Console) close(w http.ResponseWriter, r *http.Request, s *session) {
	id, _ := pathID(r)
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		c.fail(w, r, s, http.StatusBadRequest, "Closing a dead record needs a reason.")
		return
	}
	if err := c.doClose(s, id, reason); err != nil {
		c.fail(w, r, s, statusOf(err), "Not closed: "+err.Error())
		return
	}
	done(w, r, fmt.Sprintf("%srecords/%d", Prefix, id), fmt.Sprintf("Record %d is closed.", id))
}

func (c *Console) release(w http.ResponseWriter, r *http.Request, s *session) {
	id, _ := pathID(r)
	if err := c.doRelease(s, id); err != nil {
		c.fail(w, r, s, statusOf(err), "Not released: "+err.Error())
		return
	}
	done(w, r, fmt.Sprintf("%srecords/%d", Prefix, id), fmt.Sprintf("Record %d is tried again now.", id))
}

func (c *Console) retrySelected(w http.ResponseWriter, r *http.Request, s *session) {
	var ids []uint64
	for _, v := range r.PostForm["id"] {
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			c.fail(w, r, s, http.StatusBadRequest, "A record id is a positive number.")
			return
		}
		ids = append(ids, id)
	}
	n, err := c.doRetrySelection(s, ids)
	if err != nil {
		c.fail(w, r, s, statusOf(err), "Not retried: "+err.Error())
		return
	}
	done(w, r, Prefix+"messages", fmt.Sprintf("%d of %d selected records are queued again.", n, len(ids)))
}

func (c *Console) retryDead(w http.ResponseWriter, r *http.Request, s *session) {
	n, err := c.doRetryDead(s)
	if err != nil {
		c.fail(w, r, s, statusOf(err), "Not retried: "+err.Error())
		return
	}
	done(w, r, Prefix+"messages?state=dead", fmt.Sprintf("%d dead records are queued again.", n))
}

func (c *Console) resolve(w http.ResponseWriter, r *http.Request, s *session) {
	id, _ := pathID(r)
	accept := r.PostFormValue("do") == "accept"
	if !accept && r.PostFormValue("do") != "keep" {
		c.fail(w, r, s, http.StatusBadRequest, "Resolve a conflict by keeping the stored message or accepting the new one.")
		return
	}
	if err := c.doResolve(s, id, accept); err != nil {
		c.fail(w, r, s, statusOf(err), "Not resolved: "+err.Error())
		return
	}
	msg := fmt.Sprintf("Conflict %d dismissed: the stored message stays.", id)
	if accept {
		msg = fmt.Sprintf("Conflict %d accepted: the new message replaces the stored one and is sent again.", id)
	}
	done(w, r, Prefix+"conflicts", msg)
}

package admin

import (
	"html/template"
	"net/http"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// pageTmpl is the admin's plain status page: counts and the newest
// records' state. It shows no message content and no record keys (they
// hold control ids); `ehrbridge log show` gives details.
var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>ehrbridge</title>
<meta http-equiv="refresh" content="5">
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}
.dead{color:#b00}.retrying{color:#a60}.done{color:#070}.skipped{color:#666}.warned{color:#870}</style></head><body>
<h1>ehrbridge {{.Version}}</h1>
<p><a href="/ui/">Open the admin console</a>: dashboard, message browser, patient timeline, actions, mapping workbench.</p>
<p>CRM: {{.Forwarding}}</p>
<p>Records: {{range .States}}{{.Name}} {{.Count}} · {{end}}conflicts {{.Conflicts}}</p>
<p>Done with warnings (applied, fields left out): {{.DoneWithWarnings}} since the start (<code>ehrbridge log list --state warned</code>). Skipped: stored and acknowledged, no mapping accepts them (<code>ehrbridge log list --state skipped</code>).</p>
{{if not .CountsOnly}}{{if .FHIR}}<h2>FHIR sources</h2>
<table><tr><th>source</th><th>last good poll</th><th>last error</th><th>stored</th><th>repeats</th><th>notifications</th><th>refused</th></tr>
{{range .FHIR}}<tr><td>{{.Name}}</td><td>{{with .LastPollOK}}{{.UTC.Format "2006-01-02 15:04:05Z"}}{{else}}never{{end}}</td><td class="dead">{{.LastError}}</td><td>{{.Stored}}</td><td>{{.Repeats}}</td><td>{{.Notifications}}</td><td>{{.NotificationsRefused}}</td></tr>
{{end}}</table>{{end}}
<h2>Newest records</h2>
<table><tr><th>id</th><th>state</th><th>type</th><th>received</th><th>attempts</th><th>reason</th></tr>
{{range .Records}}<tr><td>{{.ID}}</td>{{if .Warned}}<td class="warned">done, with warnings</td>{{else}}<td class="{{.State}}">{{.State}}</td>{{end}}<td>{{.Type}}</td><td>{{.Received.UTC.Format "2006-01-02 15:04:05Z"}}</td><td>{{.Attempts}}</td><td>{{.Reason}}</td></tr>
{{end}}</table>{{end}}
<p>Details: <code>ehrbridge log list --state dead</code>, <code>ehrbridge log show ID</code>. Refreshes every 5 s.</p>
</body></html>`))

type stateCount struct {
	Name  string
	Count int64
}

// pageData is what the page shows.
type pageData struct {
	Version, Forwarding string
	States              []stateCount
	Conflicts           int64
	DoneWithWarnings    int64 // since the start (the pipeline's count)
	Records             []*checkpoint.Record
	FHIR                []FHIRSource
	CountsOnly          bool // public_counts, for a caller without a role
}

// pageDataOf fills the page's counts from the log's stats and the
// pipeline's count of records done with warnings.
func pageDataOf(st checkpoint.Stats, warned int64) pageData {
	var d pageData
	for _, s := range checkpoint.States {
		d.States = append(d.States, stateCount{s.String(), st.States[s]})
	}
	d.Conflicts, d.DoneWithWarnings = st.Conflicts, warned
	return d
}

// page serves GET / on the admin address.
func (a *Server) page(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	var data pageData
	var warned int64
	if c := a.st.CRM(); c != nil {
		warned = c.Warned
	}
	if st, err := a.cp.Stats(); err == nil {
		data = pageDataOf(st, warned)
	}
	data.Version, data.Forwarding, data.FHIR = a.version, a.forwarding(), a.fhirStatus()
	data.Records, _ = a.cp.Recent(50)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = pageTmpl.Execute(w, data)
}

// forwarding describes where records go.
func (a *Server) forwarding() string {
	c := a.st.CRM()
	if c == nil {
		return "no CRM configured: messages are stored and acknowledged, not sent on"
	}
	out := c.Kind
	if c.SandboxAddr != "" {
		out = "embedded CRM sandbox (" + c.Kind + " side) at " + c.SandboxAddr
	}
	if until := c.PausedUntil; !until.IsZero() {
		out += "; paused until " + until.UTC().Format(time.RFC3339) + " (CRM API allocation)"
	}
	return out
}

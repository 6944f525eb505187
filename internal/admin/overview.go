package admin

import (
	"fmt"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/console"
)

// overview is the console dashboard's view of the daemon's parts, read
// from the same status /status reads: counts, states, names and
// addresses (URL credentials redacted), never message data.
func (a *Server) overview() console.Overview {
	o := console.Overview{Ready: a.st.Ready(), StorageProblem: a.st.StorageProblem()}
	crm := a.st.CRM()
	// settled adds what the pipeline settled of a source's records since
	// start to its counters.
	settled := func(e *console.Endpoint) {
		if crm == nil {
			return
		}
		s := crm.BySource[e.LogSource]
		e.Counters = append(e.Counters, console.Counter{Name: "done", Value: s.Done, Rate: true},
			console.Counter{Name: "skipped (no mapping)", Value: s.Skipped, Rate: true},
			console.Counter{Name: "retries", Value: s.Retried, Rate: true},
			console.Counter{Name: "dead", Value: s.Dead, Rate: true})
	}
	for _, s := range a.st.Insecure() {
		o.Insecure = append(o.Insecure, s.Key)
	}
	ms := a.st.Mappings()
	o.Mappings = console.MappingsInfo{Names: ms.Names, LastOK: ms.LastOK, LastProblem: ms.LastProblem}
	for _, s := range a.st.MLLPSources() {
		e := console.Endpoint{ID: "mllp/" + s.Name, Name: s.Name, Kind: "MLLP listener", Address: s.Listen, LogSource: s.Name,
			State: "listening", Counters: []console.Counter{
				{Name: "frames received", Value: s.Frames, Rate: true},
				{Name: "stored (AA)", Value: s.Accepted, Rate: true},
				{Name: "retransmits (AA again)", Value: s.Duplicates, Rate: true},
				{Name: "conflicts (control id reused)", Value: s.Conflicts, Rate: true},
				{Name: "rejected (AR)", Value: s.Rejected, Rate: true},
				{Name: "errors (AE)", Value: s.Errored, Rate: true},
				{Name: "frames too large", Value: s.FramesTooLarge},
				{Name: "connections open", Value: s.ConnectionsOpen},
				{Name: "connections", Value: s.ConnectionsTotal}}}
		settled(&e)
		if s.Errored > 0 || s.Rejected > 0 {
			e.Notes = append(e.Notes, "Messages were answered AE or AR since the start: their senders have them; see the daemon's log for why.")
		}
		o.Sources = append(o.Sources, e)
	}
	for _, s := range a.fhirStatus() {
		e := console.Endpoint{ID: "fhir/" + s.Name, Name: s.Name, Kind: "FHIR source", Address: s.BaseURL, LogSource: s.Name,
			State: "polling " + s.Schedule, LastError: s.LastError, Counters: []console.Counter{
				{Name: "polls", Value: s.Polls, Rate: true},
				{Name: "polls failed", Value: s.PollsFailed, Rate: true},
				{Name: "resources stored", Value: s.Stored, Rate: true},
				{Name: "repeats", Value: s.Repeats, Rate: true},
				{Name: "deletes stored", Value: s.DeletesStored, Rate: true},
				{Name: "notifications", Value: s.Notifications, Rate: true},
				{Name: "notifications refused", Value: s.NotificationsRefused, Rate: true}}}
		settled(&e)
		if s.LastPollOK != nil {
			e.Notes = append(e.Notes, "Last good poll "+s.LastPollOK.UTC().Format(time.RFC3339)+".")
		}
		if s.LastError != "" && (s.LastPollOK == nil || (s.LastPoll != nil && s.LastPoll.After(*s.LastPollOK))) {
			e.State, e.Problem = "failing", true
		}
		if s.BulkExportPending {
			e.Notes = append(e.Notes, "A bulk export is pending.")
		}
		o.Sources = append(o.Sources, e)
	}
	wb := a.st.Writeback()
	if wb != nil {
		e := console.Endpoint{ID: "writeback", Name: "CRM notes", Kind: "write-back poller", LogSource: "crm",
			State: "polling " + wb.Schedule, LastError: redactURLs(wb.LastError), Counters: []console.Counter{
				{Name: "polls", Value: wb.Polls, Rate: true},
				{Name: "polls failed", Value: wb.PollsFailed, Rate: true},
				{Name: "note versions found", Value: wb.Found, Rate: true}}}
		settled(&e)
		if !wb.LastPollOK.IsZero() {
			e.Notes = append(e.Notes, "Last good poll "+wb.LastPollOK.UTC().Format(time.RFC3339)+".")
		}
		if wb.LastError != "" && wb.LastPoll.After(wb.LastPollOK) {
			e.State, e.Problem = "failing", true
		}
		o.Sources = append(o.Sources, e)
	}
	if c := crm; c != nil {
		e := console.Endpoint{ID: "crm", Name: c.Kind, Kind: "CRM", Address: c.SandboxAddr, Counters: []console.Counter{
			{Name: "API requests", Value: c.Requests, Rate: true},
			{Name: "records done", Value: c.Done, Rate: true},
			{Name: "done with warnings", Value: c.Warned, Rate: true},
			{Name: "retries", Value: c.Retried, Rate: true},
			{Name: "dead", Value: c.Dead, Rate: true},
			{Name: "skipped (no mapping)", Value: c.Skipped, Rate: true},
			{Name: "echoes of our own notes", Value: c.Echoes}}}
		if c.SandboxAddr != "" {
			e.Name = c.Kind + " (embedded sandbox)"
		}
		b := breakerStatusOf(c.Breaker)
		e.State = "breaker " + b.State
		if b.State != "closed" && b.State != "disabled" {
			e.Problem = true
			e.LastError = b.Reason
			if b.NextProbe != nil {
				e.Notes = append(e.Notes, "Next probe "+b.NextProbe.Format(time.RFC3339)+"; no batch is sent until a probe is answered.")
			}
		}
		if c.APILimit > 0 {
			e.Notes = append(e.Notes, fmt.Sprintf("API allocation: %d of %d used today (%.0f%%).", c.APIUsed, c.APILimit, 100*float64(c.APIUsed)/float64(c.APILimit)))
		}
		if !c.PausedUntil.IsZero() {
			e.State, e.Problem = "paused", true
			e.Notes = append(e.Notes, "Paused until "+c.PausedUntil.UTC().Format(time.RFC3339)+": the API allocation is nearly spent.")
		}
		o.Destinations = append(o.Destinations, e)
	}
	if wb != nil {
		o.Destinations = append(o.Destinations, console.Endpoint{ID: "ehr", Name: "EHR", Kind: "write-back target", Address: redactURLs(wb.Target),
			LogSource: "crm", State: "ready", Notes: []string{"Notes to file are the write-back poller's records: held, retrying and dead notes show there."}})
	}
	return o
}

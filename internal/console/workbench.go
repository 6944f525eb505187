package console

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/ehrbridge/ehrbridge/internal/logadmin"
	"github.com/ehrbridge/ehrbridge/internal/workbench"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// The mapping workbench maps a message with the running set, runs the
// set's tests and lints its files. It never writes to the CRM: it calls
// the mapping engine only, and the checkpoint log only to read a stored
// message an auditor picks.
func (c *Console) workbenchRoutes() {
	c.mux.HandleFunc("GET "+Prefix+"workbench", c.page(logadmin.PermView, "", c.workbench))
	// Mapping a pasted message is a POST (the message is not put in a
	// URL); it changes nothing, so a viewer may. Picking a stored message
	// reveals it: an auditor's, audited as a reveal.
	c.mux.HandleFunc("POST "+Prefix+"workbench", c.act(logadmin.PermView, "workbench map", nil, c.workbenchMap))
	c.mux.HandleFunc("POST "+Prefix+"workbench/tests", c.act(logadmin.PermView, "workbench tests", nil, c.workbenchTests))
}

type workbenchData struct {
	Message  string
	RecordID string
	Explain  *workbench.Explanation
	Tree     []*workbench.MessageTree
	Tests    []workbench.TestCaseResult
	Passed   int
	TestsRun bool
	TestProb string
	Lint     []workbench.LintProblem
	Problem  string
	Mappings []string
}

func (c *Console) set() *mappings.Set {
	if c.opts.Mappings == nil {
		return nil
	}
	return c.opts.Mappings()
}

func (c *Console) workbenchBase() workbenchData {
	d := workbenchData{}
	if s := c.set(); s != nil {
		for _, m := range s.Mappings {
			d.Mappings = append(d.Mappings, m.Name)
		}
	}
	if len(c.opts.MappingPaths) > 0 {
		d.Lint = workbench.LintFiles(c.opts.MappingPaths, c.opts.MappingOptions)
	}
	return d
}

func (c *Console) workbench(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, s, "workbench", "Mapping workbench", "workbench", c.workbenchBase())
}

func (c *Console) workbenchMap(w http.ResponseWriter, r *http.Request, s *session) {
	d := c.workbenchBase()
	raw := r.PostFormValue("message")
	if idText := strings.TrimSpace(r.PostFormValue("record")); idText != "" {
		// A stored message: revealing it is an auditor's, and audited.
		id, err := strconv.ParseUint(idText, 10, 64)
		if err != nil {
			c.fail(w, r, s, http.StatusBadRequest, "A record id is a positive number.")
			return
		}
		if s.caller.Perm&logadmin.PermReveal == 0 {
			c.refuse(w, r, s, "reveal", logadmin.PermReveal)
			return
		}
		if err := c.opts.Access.Audit.Call(s.caller, "reveal", fmt.Sprintf("record %d", id), "allowed"); err != nil {
			c.fail(w, r, s, http.StatusInternalServerError, "The audit log cannot be written, so the message was not revealed.")
			return
		}
		rec, err := c.opts.Log.Reveal(id)
		if err != nil {
			c.fail(w, r, s, statusOf(err), err.Error())
			return
		}
		if rec.PayloadDropped || len(rec.Payload) == 0 {
			d.Problem = "Retention dropped this record's payload."
		}
		raw, d.RecordID = string(rec.Payload), idText
	}
	d.Message = raw
	if strings.TrimSpace(raw) != "" && d.Problem == "" {
		set := c.set()
		if set == nil {
			d.Problem = "No mapping set is running."
		} else if x, err := workbench.Explain(set, normalizeNewlines(raw)); err != nil {
			d.Problem = "The message cannot be read: " + err.Error()
		} else {
			d.Explain = x
			d.Tree, _ = workbench.Trees(normalizeNewlines(raw))
		}
	}
	c.render(w, r, s, "workbench", "Mapping workbench", "workbench", d)
}

// normalizeNewlines turns the line breaks a browser's textarea sends
// (CRLF) into HL7's segment terminator; JSON does not mind.
func normalizeNewlines(s string) []byte {
	s = strings.ReplaceAll(s, "\r\n", "\r")
	return []byte(strings.ReplaceAll(s, "\n", "\r"))
}

func (c *Console) workbenchTests(w http.ResponseWriter, r *http.Request, s *session) {
	d := c.workbenchBase()
	d.TestsRun = true
	set := c.set()
	if set == nil || len(c.opts.MappingPaths) == 0 {
		d.TestProb = "No mapping set is running."
	} else {
		res, err := workbench.RunTests(set, c.opts.MappingPaths)
		var ps mappings.Problems
		if err != nil && !errors.As(err, &ps) {
			d.TestProb = err.Error()
		} else if err != nil {
			d.TestProb = "Some test files cannot be read:\n" + err.Error()
		}
		d.Tests = res
		for _, t := range res {
			if t.Passed {
				d.Passed++
			}
		}
	}
	c.render(w, r, s, "workbench", "Mapping workbench", "workbench", d)
}

// analyse gives a revealed payload's tree and its ops under the running
// set, for the record view.
func (c *Console) analyse(payload []byte) (any, any) {
	trees, _ := workbench.Trees(payload)
	var x *workbench.Explanation
	if set := c.set(); set != nil {
		x, _ = workbench.Explain(set, payload)
	}
	return trees, x
}

package crmcheck

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Check kinds of crm check's own (the mappings package adds its own,
// mappings.Check*).
const (
	CheckLogin      = "login"
	CheckObject     = "object present"
	CheckWBField    = "write-back field present"
	CheckWBWritable = "write-back field writable"
	CheckKeysCopied = "keys copied"
	CheckAllocation = "API allocation"
	CheckRateLimit  = "service protection"
)

// Groups for checks that are not about one object.
const (
	GroupConnection = "(connection)"
	GroupLimits     = "(limits)"
)

// Item is one line of the checklist.
type Item struct {
	Object string `json:"object"`
	Field  string `json:"field,omitempty"`
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	// Blocker fails the check (exit 1); a failed item that is not a
	// blocker is a warning.
	Blocker bool   `json:"blocker"`
	Message string `json:"message,omitempty"`
	// Pos is file:line:col of the mapping line checked.
	Pos     string `json:"pos,omitempty"`
	Mapping string `json:"mapping,omitempty"`
	Op      string `json:"op,omitempty"`
}

// Report is what crm check found.
type Report struct {
	CRM      string `json:"crm"`      // "salesforce" or "dataverse"
	Endpoint string `json:"endpoint"` // the org's or environment's URL
	OK       bool   `json:"ok"`       // no blocker
	Blockers int    `json:"blockers"`
	Warnings int    `json:"warnings"`
	Checks   []Item `json:"checks"`
}

func (r *Report) add(it Item) {
	r.Checks = append(r.Checks, it)
}

// finish counts blockers and warnings.
func (r *Report) finish() {
	r.Blockers, r.Warnings = 0, 0
	for _, it := range r.Checks {
		switch {
		case it.OK:
		case it.Blocker:
			r.Blockers++
		default:
			r.Warnings++
		}
	}
	r.OK = r.Blockers == 0
}

// Status is how an item's line starts: ok, BLOCKER or warning.
func (it Item) Status() string {
	switch {
	case it.OK:
		return "ok"
	case it.Blocker:
		return "BLOCKER"
	}
	return "warning"
}

// Line is the item as the text checklist prints it (without the leading
// indentation): status, Object.Field, the check, what is wrong, where.
func (it Item) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s ", it.Status())
	what := it.Object
	if strings.HasPrefix(what, "(") {
		what = ""
	}
	if it.Field != "" {
		if what != "" {
			what += "."
		}
		what += it.Field
	}
	if what != "" {
		b.WriteString(what + ": ")
	}
	b.WriteString(it.Check)
	if it.Message != "" {
		b.WriteString(": " + it.Message)
	}
	if it.Pos != "" {
		b.WriteString("  (" + it.Pos + ")")
	}
	return b.String()
}

// WriteText prints the checklist grouped by object, in the order objects
// were first checked, and a closing line. The same check of the same field
// made for several mapping lines (Account.LastName is written by six
// mappings) is one line naming its first position and how many more; the
// JSON report keeps every one.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "ehrbridge crm check: %s %s\n", r.CRM, r.Endpoint)
	var order []string
	groups := map[string][]Item{}
	for _, it := range r.Checks {
		if _, seen := groups[it.Object]; !seen {
			order = append(order, it.Object)
		}
		groups[it.Object] = append(groups[it.Object], it)
	}
	for _, g := range order {
		fmt.Fprintf(w, "\n%s\n", g)
		for _, m := range mergeItems(groups[g]) {
			line := m.Item
			line.Pos = ""
			text := line.Line()
			switch {
			case m.Item.Pos != "" && m.more > 0:
				text += fmt.Sprintf("  (%s and %d more)", m.Item.Pos, m.more)
			case m.Item.Pos != "":
				text += "  (" + m.Item.Pos + ")"
			}
			fmt.Fprintf(w, "  %s\n", text)
		}
	}
	fmt.Fprintln(w)
	if r.OK {
		fmt.Fprintf(w, "all green: %d checks, %d warnings\n", len(r.Checks), r.Warnings)
		return
	}
	fmt.Fprintf(w, "NOT READY: %d blockers, %d warnings, %d checks\n", r.Blockers, r.Warnings, len(r.Checks))
}

// merged is an item standing for more identical ones at other positions.
type merged struct {
	Item
	more int
}

// mergeItems folds items that differ only in their position (and the
// mapping and op they were made for) into their first.
func mergeItems(items []Item) []merged {
	var out []merged
	at := map[string]int{}
	for _, it := range items {
		k := it.Status() + "\x00" + it.Field + "\x00" + it.Check + "\x00" + it.Message
		if i, ok := at[k]; ok {
			out[i].more++
			continue
		}
		at[k] = len(out)
		out = append(out, merged{Item: it})
	}
	return out
}

// WriteJSON prints the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(r)
}

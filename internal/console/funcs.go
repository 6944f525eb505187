package console

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"
)

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"time":     formatTime,
	"duration": shortDuration,
	"join":     strings.Join,
	"add":      func(a, b int) int { return a + b },
	"class":    stateClass,
	// segments shows an HL7 message's segments one per line (they end in
	// CR, which a browser does not break on).
	"segments": func(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n") },
	// dict passes a page's data and one item of it to a sub-template.
	"dict": func(dash, item any) map[string]any { return map[string]any{"Dash": dash, "Item": item} },
}

// formatTime is a time (or a *time.Time) in UTC to the second, as the CLI
// prints it; "" for the zero time or nil.
func formatTime(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x != nil {
			t = *x
		}
	}
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// shortDuration is a duration a person reads at a glance: "42s", "3m",
// "5h 10m", "2d 4h".
func shortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

func formatRate(r float64) string {
	if r >= 100 {
		return strconv.Itoa(int(r+0.5)) + "/min"
	}
	return strconv.FormatFloat(r, 'f', 1, 64) + "/min"
}

// stateClass is the CSS class of a record state's label.
func stateClass(state string) string {
	switch state {
	case "done":
		return "ok"
	case "dead":
		return "bad"
	case "retrying", "held", "in_progress", "received":
		return "warn"
	}
	return "muted"
}

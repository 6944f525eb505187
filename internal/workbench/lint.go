package workbench

import (
	"errors"
	"strings"

	"github.com/ehrbridge/ehrbridge/mappings"
)

// Severities of a LintProblem.
const (
	SeverityError   = "error"   // the set does not load: run refuses it
	SeverityWarning = "warning" // the set loads and runs, but see the message
)

// warningPrefix starts the message of a mappings lint warning.
const warningPrefix = "warning: "

// LintProblem is one finding of lint, positioned in its file. Line and
// Col are 1-based; 0 when it concerns the whole file (or line).
type LintProblem struct {
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Col      int    `json:"col,omitempty"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// String formats the problem as `ehrbridge lint` prints it:
// "file:line:col: message", a warning's message starting "warning: ".
func (p LintProblem) String() string {
	msg := p.Message
	if p.Severity == SeverityWarning {
		msg = warningPrefix + msg
	}
	if p.File == "" && p.Line <= 0 {
		return msg
	}
	return mappings.Problem{File: p.File, Line: p.Line, Col: p.Col, Msg: msg}.String()
}

// Lint lists what `ehrbridge lint` reports for a mapping set: the
// problems of loadErr (the error mappings.Load or daemon.LoadMappings
// returned; nil when the set loaded) as errors, then the warnings of set
// (nil when it did not load), in file order.
func Lint(set *mappings.Set, loadErr error) []LintProblem {
	var out []LintProblem
	if loadErr != nil {
		var ps mappings.Problems
		if errors.As(loadErr, &ps) {
			for _, p := range ps {
				out = append(out, fromProblem(p))
			}
		} else {
			out = append(out, LintProblem{Severity: SeverityError, Message: loadErr.Error()})
		}
	}
	if set != nil {
		for _, p := range set.Lint() {
			out = append(out, fromProblem(p))
		}
	}
	return out
}

// LintFiles loads the mapping files and directories in paths with opts
// and lints them: Lint of what mappings.Load returns.
func LintFiles(paths []string, opts mappings.Options) []LintProblem {
	set, err := mappings.Load(paths, opts)
	if err != nil {
		return Lint(nil, err)
	}
	return Lint(set, nil)
}

func fromProblem(p mappings.Problem) LintProblem {
	lp := LintProblem{File: p.File, Line: p.Line, Col: p.Col, Severity: SeverityError, Message: p.Msg}
	if rest, ok := strings.CutPrefix(p.Msg, warningPrefix); ok {
		lp.Severity, lp.Message = SeverityWarning, rest
	}
	return lp
}

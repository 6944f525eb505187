package workbench

import (
	"errors"
	"fmt"
	"io"

	"github.com/ehrbridge/ehrbridge/mappings"
)

// TestCaseResult is the outcome of one case of a mapping test file.
type TestCaseResult struct {
	File string `json:"file"` // the test file
	Line int    `json:"line"` // the case's line in it
	Name string `json:"name"`
	// Mapping is the mapping the file tests (x for x_test.yaml).
	Mapping string `json:"mapping"`
	Passed  bool   `json:"passed"`
	// Diff explains, line by line, what differed; empty when Passed.
	Diff []string `json:"diff,omitempty"`
}

// RunTests runs the mapping test files in paths (files, or directories
// whose *_test.yaml it runs) against set, as `ehrbridge test` does, and
// returns one result per case. Test files that cannot be read or parsed
// are reported in the error (a mappings.Problems, file:line:col) while
// the cases of the others still run and are returned.
func RunTests(set *mappings.Set, paths []string) ([]TestCaseResult, error) {
	if set == nil {
		return nil, errors.New("no mapping set")
	}
	files, err := mappings.FindTests(paths)
	if err != nil {
		return nil, err
	}
	var tfs []*mappings.TestFile
	var probs mappings.Problems
	for _, f := range files {
		tf, err := mappings.ParseTestFile(f)
		if err != nil {
			var ps mappings.Problems
			if !errors.As(err, &ps) {
				return nil, err
			}
			probs = append(probs, ps...)
			continue
		}
		tfs = append(tfs, tf)
	}
	out := TestResults(mappings.RunTests(set, tfs))
	if len(probs) > 0 {
		return out, probs
	}
	return out, nil
}

// TestResults converts mappings.RunTests's results.
func TestResults(rs []mappings.TestResult) []TestCaseResult {
	out := make([]TestCaseResult, 0, len(rs))
	for _, r := range rs {
		out = append(out, TestCaseResult{
			File: r.File.Path, Line: r.Case.Line, Name: r.Case.Name, Mapping: r.File.Mapping,
			Passed: r.Passed(), Diff: r.Diff,
		})
	}
	return out
}

// WriteTestReport prints results as `ehrbridge test` does: each failing
// case (each passing one too when verbose) as "FAIL file:line: name" with
// its diff indented, then the counts. It returns the number of failures.
func WriteTestReport(w io.Writer, results []TestCaseResult, verbose bool) int {
	failed := 0
	for _, r := range results {
		where := fmt.Sprintf("%s:%d", r.File, r.Line)
		if r.Passed {
			if verbose {
				fmt.Fprintf(w, "ok   %s: %s\n", where, r.Name)
			}
			continue
		}
		failed++
		fmt.Fprintf(w, "FAIL %s: %s\n", where, r.Name)
		for _, line := range r.Diff {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", len(results)-failed, failed)
	return failed
}

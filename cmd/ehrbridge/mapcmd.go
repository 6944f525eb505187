package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/daemon"
	"github.com/ehrbridge/ehrbridge/internal/workbench"
	"github.com/ehrbridge/ehrbridge/internal/writeback"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// mappingFlags are the flags lint, map and test share.
type mappingFlags struct {
	config   string
	schemas  multiFlag
	timezone string
}

func (f *mappingFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "config file; its mappings section names the mapping set")
	fs.Var(&f.schemas, "schema", "CRM schema file (Salesforce describe or Dataverse metadata JSON) to check targets against; repeatable")
	fs.StringVar(&f.timezone, "timezone", "", "IANA zone for HL7 times without an offset (overrides the config)")
}

// load builds the config (or an empty one) and the mapping set from it
// and extra paths, printing problems to out.
func (f *mappingFlags) load(extra []string, out io.Writer) (*config.Config, *mappings.Set, bool) {
	cfg := config.Default()
	cfg.Mappings.Paths = nil
	if f.config != "" {
		c, ok := loadConfig(f.config, out)
		if !ok {
			return nil, nil, false
		}
		cfg = c
	}
	cfg.Mappings.Schemas = append(cfg.Mappings.Schemas, f.schemas...)
	if f.timezone != "" {
		cfg.Mappings.Timezone = f.timezone
	}
	set, err := daemon.LoadMappings(cfg, extra...)
	if err != nil {
		printProblems(out, err)
		return nil, nil, false
	}
	return cfg, set, true
}

func printProblems(w io.Writer, err error) {
	var ps mappings.Problems
	if errors.As(err, &ps) {
		for _, p := range ps {
			fmt.Fprintln(w, p.String())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func cmdLint(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f mappingFlags
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ehrbridge lint [--config FILE] [--schema FILE]... [MAPPING_FILE_OR_DIR...]")
		fmt.Fprintln(stderr, "Checks the config and the mappings it names (and any given), printing every problem as")
		fmt.Fprintln(stderr, "file:line:col: message; exits 1 if there is any.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if f.config == "" && fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	cfg, set, ok := f.load(fs.Args(), stdout)
	if !ok {
		return exitFailure
	}
	if f.config != "" {
		if _, err := daemon.LoadInbound(cfg); err != nil {
			printProblems(stdout, err)
			return exitFailure
		}
	}
	if wb := cfg.Writeback; wb != nil && f.config != "" {
		if _, err := writeback.LoadMDM(wb.MDMMapping, mappings.Options{Zone: time.UTC}); err != nil {
			printProblems(stdout, err)
			return exitFailure
		}
	}
	what := f.config
	if what == "" {
		what = strings.Join(fs.Args(), " ")
	}
	// Warnings do not fail lint: the mappings load and run, but a key
	// can collide or run its parts together (see docs/mappings.md).
	warns := workbench.Lint(set, nil)
	for _, p := range warns {
		fmt.Fprintln(stdout, p.String())
	}
	if len(warns) > 0 {
		fmt.Fprintf(stdout, "%s: ok (%d mappings, %d warnings)\n", what, len(set.Mappings), len(warns))
		return exitOK
	}
	fmt.Fprintf(stdout, "%s: ok (%d mappings)\n", what, len(set.Mappings))
	return exitOK
}

func cmdMap(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("map", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f mappingFlags
	f.register(fs)
	var extra multiFlag
	fs.Var(&extra, "mappings", "mapping file or directory, in addition to the config's; repeatable")
	explain := fs.Bool("explain", false, "print, instead of JSON, each op with the expression behind every field and its value, fields left out and skipped ops included")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ehrbridge map [--config FILE] [--mappings PATH]... MESSAGE_FILE...")
		fmt.Fprintln(stderr, "Maps each HL7 v2 message (or FHIR resource; a Bundle's entries in turn) in the files and prints")
		fmt.Fprintln(stderr, `the ops as JSON lines: {"mapping","object","action","key_field","key","fields"}. A message no`)
		fmt.Fprintln(stderr, "mapping accepts is reported on stderr. Exits 1 if a message could not be read or mapped.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() == 0 || (f.config == "" && len(extra) == 0) {
		fs.Usage()
		return exitUsage
	}
	_, set, ok := f.load(extra, stderr)
	if !ok {
		return exitFailure
	}
	if len(set.Mappings) == 0 {
		fmt.Fprintln(stderr, "ehrbridge map: no mappings are configured (mappings.paths, or --mappings)")
		return exitFailure
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	code := exitOK
	for _, file := range fs.Args() {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintf(stderr, "%s: cannot read: %v\n", file, errorsText(err))
			code = exitFailure
			continue
		}
		inputs, err := mappings.ParseInput(data)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", file, err)
			code = exitFailure
			continue
		}
		for i, in := range inputs {
			where := fmt.Sprintf("%s message %d (%s)", file, i+1, workbench.InputType(in))
			res, err := set.Map(in)
			if err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", where, err)
				code = exitFailure
				continue
			}
			if len(res.Mappings) == 0 {
				fmt.Fprintf(stderr, "%s: no mapping accepts it\n", where)
				continue
			}
			if *explain {
				explainInput(stdout, set, in, where)
				for _, w := range res.Warnings {
					fmt.Fprintf(stdout, "warning: %s\n", w)
				}
				continue
			}
			// Mapped with warnings: the fields left out, on stderr so
			// that stdout stays JSON lines.
			for _, w := range res.Warnings {
				fmt.Fprintf(stderr, "%s: warning: %s\n", where, w)
			}
			for _, op := range res.Ops {
				if err := enc.Encode(op); err != nil {
					fmt.Fprintf(stderr, "ehrbridge map: %v\n", err)
					return exitFailure
				}
			}
		}
	}
	return code
}

func errorsText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func cmdTest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f mappingFlags
	f.register(fs)
	verbose := fs.Bool("v", false, "list passing cases too")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ehrbridge test [--config FILE] [-v] [DIR_OR_TEST_FILE...]")
		fmt.Fprintln(stderr, "Runs mapping test files (x_test.yaml beside x.yaml) in the given directories, or in the")
		fmt.Fprintln(stderr, "config's mapping directories, printing a diff for each failing case; exits 1 on a failure.")
		fmt.Fprintln(stderr, "HL7 times without an offset are placed in --timezone, else the config's mappings.timezone, else UTC.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	paths := fs.Args()
	var cfg *config.Config
	if f.config != "" {
		c, ok := loadConfig(f.config, stdout)
		if !ok {
			return exitFailure
		}
		cfg = c
		if len(paths) == 0 {
			paths = c.Mappings.Paths
		}
	}
	if len(paths) == 0 {
		fs.Usage()
		return exitUsage
	}
	files, err := mappings.FindTests(paths)
	if err != nil {
		fmt.Fprintln(stdout, err)
		return exitFailure
	}
	if len(files) == 0 {
		fmt.Fprintf(stdout, "no test files (*_test.yaml) in %s\n", strings.Join(paths, " "))
		return exitFailure
	}
	// Each directory's mappings are loaded once, with the config's
	// options (time zone, schemas).
	byDir := map[string][]*mappings.TestFile{}
	var dirs []string
	bad := false
	for _, file := range files {
		tf, err := mappings.ParseTestFile(file)
		if err != nil {
			printProblems(stdout, err)
			bad = true
			continue
		}
		dir := filepath.Dir(file)
		if _, seen := byDir[dir]; !seen {
			dirs = append(dirs, dir)
		}
		byDir[dir] = append(byDir[dir], tf)
	}
	if cfg == nil {
		cfg = config.Default()
	}
	var results []workbench.TestCaseResult
	for _, dir := range dirs {
		dc := *cfg
		dc.Mappings.Paths = []string{dir}
		dc.Mappings.Schemas = append(append([]string(nil), cfg.Mappings.Schemas...), f.schemas...)
		switch {
		case f.timezone != "":
			dc.Mappings.Timezone = f.timezone
		case dc.Mappings.Timezone == "":
			// Expected values must not depend on the machine the tests
			// run on: without a configured zone, tests use UTC.
			dc.Mappings.Timezone = "UTC"
		}
		set, err := daemon.LoadMappings(&dc)
		if err != nil {
			printProblems(stdout, err)
			bad = true
			continue
		}
		results = append(results, workbench.TestResults(mappings.RunTests(set, byDir[dir]))...)
	}
	failed := workbench.WriteTestReport(stdout, results, *verbose)
	if failed > 0 || bad {
		return exitFailure
	}
	return exitOK
}

// explainInput prints how each accepting mapping maps the input, from
// the workbench's explanation (the console shows the same). Each op
// written carries its number among the input's ops, the number a
// dead-letter reason names ("on Contact (op 2: upsert by ...)").
func explainInput(w io.Writer, set *mappings.Set, in mappings.Input, where string) {
	x := workbench.ExplainInput(set, in)
	for _, m := range x.Mappings {
		fmt.Fprintf(w, "== %s: mapping %s (%s)\n", where, m.Name, m.File)
		for _, op := range m.Ops {
			rep := ""
			if op.Repeat > 0 {
				rep = fmt.Sprintf(" [repeat %d]", op.Repeat)
			}
			if op.Skipped {
				fmt.Fprintf(w, "-- op %s%s skipped: if %s is false\n", op.ID, rep, op.If)
				continue
			}
			if op.Action == mappings.Segment {
				fmt.Fprintf(w, "op %s%s: segment %s (op %d)\n", op.ID, rep, op.Object, op.Number)
			} else {
				fmt.Fprintf(w, "op %s%s: %s %s %s=%q (op %d)\n", op.ID, rep, op.Action, op.Object, op.KeyField, op.Key, op.Number)
				fmt.Fprintf(w, "    %-28s <- %s\n", "(key)", op.KeyExpr)
			}
			for _, f := range op.Fields {
				val := f.Value
				if f.LeftOut != "" {
					val = "(left out: " + f.LeftOut + ")"
				}
				fmt.Fprintf(w, "    %-28s <- %s\n", f.Name+" = "+val, f.Expr)
			}
		}
	}
}

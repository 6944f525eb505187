// Command ehrbridge syncs EHR events (HL7 v2, FHIR R4) into a CRM and files
// coordinator notes back into the EHR. Run "ehrbridge help" for the verbs.
package main

import (
	"fmt"
	"io"
	"os"

	// Mapping time zones must resolve on a Windows host, which has no
	// zoneinfo database of its own.
	_ "time/tzdata"
)

// Exit codes: 0 success, 1 the work failed (lint problems, a rejected
// message), 2 the command line was wrong.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run the daemon: ehrbridge run --config FILE", cmdRun},
		{"lint", "check a config and its mappings: ehrbridge lint --config FILE [MAPPING...]", cmdLint},
		{"crm", "read-only go-live preflight against the configured CRM: ehrbridge crm check --config FILE [--json]", cmdCRM},
		{"map", "show the CRM ops messages map to: ehrbridge map --config FILE MESSAGE_FILE...", cmdMap},
		{"test", "run mapping tests: ehrbridge test [--config FILE] [DIR...]", cmdTest},
		{"hl7", "inspect HL7 v2 files: ehrbridge hl7 show FILE | hl7 get FILE PATH...", cmdHL7},
		{"send", "send HL7 v2 files over MLLP: ehrbridge send --to HOST:PORT FILE...", cmdSend},
		{"log", "inspect and act on the checkpoint log: ehrbridge log stats|list|show|find|trace|retry|close|resolve|release|backup|compact|reseal|check", cmdLog},
		{"backfill", "load what a FHIR source holds, then let the daemon follow changes: ehrbridge backfill --config F --source NAME", cmdBackfill},
		{"service", "install and control the system service: ehrbridge service install|uninstall|start|stop|restart|status [--name N] [--config F]", cmdService},
		{"bench", "measure durable ingest, CRM sending, restart time and FHIR backfill: ehrbridge bench ingest|crm|open|fhir", cmdBench},
		{"sandbox", "run the CRM sandbox (Salesforce and Dataverse sides) alone: ehrbridge sandbox --listen ADDR", cmdSandbox},
		{"version", "print the version", cmdVersion},
	}
}

func main() {
	tuneProcs()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "ehrbridge: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ehrbridge COMMAND [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "ehrbridge COMMAND -h" for a command's flags.`)
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/crmcheck"
)

func cmdCRM(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: ehrbridge crm check --config FILE [--json]")
		return exitUsage
	}
	fs := flag.NewFlagSet("crm check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "config file (required): its crm section names the CRM, mappings.paths the mapping set")
	asJSON := fs.Bool("json", false, "print one JSON document instead of the checklist")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ehrbridge crm check --config FILE [--json]")
		fmt.Fprintln(stderr, "Read-only go-live preflight: logs in to the configured CRM, describes every object the mapping set and")
		fmt.Fprintln(stderr, "write-back use, and prints a checklist. Sends GET requests and the token request only.")
		fmt.Fprintln(stderr, "Exits 0 when all is green (warnings allowed), 1 on any blocker, 2 on a usage or config error.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	if *file == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	cfg, ok := loadConfig(*file, stderr)
	if !ok {
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	report, err := crmcheck.Run(ctx, cfg, crmcheck.Options{})
	if err != nil {
		fmt.Fprintln(stderr, "ehrbridge crm check:", err)
		if errors.Is(err, crmcheck.ErrConfig) {
			return exitUsage
		}
		return exitFailure
	}
	if *asJSON {
		if err := report.WriteJSON(stdout); err != nil {
			return exitFailure
		}
	} else {
		report.WriteText(stdout)
	}
	if !report.OK {
		return exitFailure
	}
	return exitOK
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/ehrbridge/ehrbridge/installer"
)

const serviceUsage = `usage: ehrbridge service ACTION [--name N] [--config F] [--data-dir D] [--user U]

Installs and controls ehrbridge as a system service: a systemd unit on Linux,
a Windows service on Windows. Several instances run side by side under
different names, each with its own config and data directory.

actions:
  install     install the instance (root / Administrator). The config must lint.
  uninstall   stop and remove it; its config and data are kept
  start, stop, restart, status
  unit        print the systemd unit install would write (for packaging)

Linux: the unit runs as the system user --user (created if missing), with
Type=notify, Restart=on-failure and a sandbox that lets it write only to the
data directory; logs go to the journal (journalctl -u NAME).
Windows: automatic (delayed) start, restart on failure, the virtual account
NT SERVICE\NAME, an Event Log source NAME; config and data default to
%ProgramData%\ehrbridge.

flags:`

func cmdService(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		printServiceUsage(stderr)
		return exitUsage
	}
	action, args := args[0], args[1:]
	fs := flag.NewFlagSet("service "+action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", installer.DefaultName, "service name of the instance (unit NAME.service)")
	cfgFile := fs.String("config", "", "config file (default /etc/ehrbridge/NAME.yaml; on Windows %ProgramData%\\ehrbridge\\NAME.yaml)")
	dataDir := fs.String("data-dir", "", "data directory the service may write (default: the config's data_dir)")
	usr := fs.String("user", "ehrbridge", "Linux: system user the service runs as")
	exe := fs.String("exe", "", "unit: the executable's installed path (default: this one)")
	fs.Usage = func() { printServiceUsage(stderr) }
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if err == nil {
			fs.Usage()
		}
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "ehrbridge service %s: %v\n", action, err)
		return exitFailure
	}
	// install lints the config; unit does too, unless it is given the data
	// dir (packaging, where the config is not installed yet).
	var lint func(string) (string, bool)
	if action == "install" || action == "unit" && *dataDir == "" {
		lint = func(file string) (string, bool) {
			cfg, ok := loadConfig(file, stderr)
			if !ok {
				return "", false
			}
			return cfg.DataDir, true
		}
	}
	p, err := installer.Resolve(*name, *cfgFile, *dataDir, *usr, lint)
	if err != nil {
		return fail(err)
	}
	if *exe != "" {
		if action != "unit" {
			return fail(errors.New("--exe is for service unit only"))
		}
		p.Exe = *exe
		if err := p.Check(); err != nil {
			return fail(err)
		}
	}
	if action == "unit" {
		unit, err := installer.SystemdUnit(p)
		if err != nil {
			return fail(err)
		}
		fmt.Fprint(stdout, unit)
		return exitOK
	}
	msg, err := installer.Control(p, action)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintln(stdout, msg)
	return exitOK
}

func printServiceUsage(w io.Writer) {
	fmt.Fprintln(w, serviceUsage)
	fmt.Fprintln(w, "  --name N       service name of the instance (default ehrbridge; unit NAME.service)")
	fmt.Fprintln(w, "  --config F     config file (default /etc/ehrbridge/NAME.yaml; Windows %ProgramData%\\ehrbridge\\NAME.yaml)")
	fmt.Fprintln(w, "  --data-dir D   data directory the service may write (default: the config's data_dir)")
	fmt.Fprintln(w, "  --user U       Linux: system user the service runs as (default ehrbridge)")
	fmt.Fprintln(w, "  --exe PATH     unit: the executable's installed path (default: this one)")
}

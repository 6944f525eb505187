package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"

	ks "github.com/kardianos/service"

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
	p, err := serviceParams(*name, *cfgFile, *dataDir, *usr, action == "install" || action == "unit" && *dataDir == "", stderr)
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
	kc, err := installer.KardianosConfig(p, runtime.GOOS)
	if err != nil {
		return fail(err)
	}
	m, err := ks.New(noProgram{}, kc)
	if err != nil {
		return fail(err)
	}
	if action == "install" && runtime.GOOS == "linux" {
		if err := prepareLinux(p); err != nil {
			return fail(err)
		}
	}
	msg, err := installer.Run(m, action, p.Name)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintln(stdout, msg)
	if action == "install" && runtime.GOOS == "linux" {
		fmt.Fprintf(stdout, "logs: journalctl -u %s; reload the config: systemctl reload %s\n", p.Name, p.Name)
	}
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

// serviceParams resolves an instance's executable, config and data
// directory. For install (and unit) the config must exist and lint: a
// service that cannot start is not installed.
func serviceParams(name, cfgFile, dataDir, usr string, needConfig bool, stderr io.Writer) (installer.Params, error) {
	p := installer.Params{Name: name, User: usr, DataDir: dataDir}
	defCfg, defData := installer.DefaultPaths(name, runtime.GOOS)
	if cfgFile == "" {
		cfgFile = defCfg
	}
	abs, err := filepath.Abs(cfgFile)
	if err != nil {
		return p, err
	}
	p.Config = abs
	exe, err := os.Executable()
	if err != nil {
		return p, err
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	p.Exe = exe
	if needConfig {
		cfg, ok := loadConfig(p.Config, stderr)
		if !ok {
			return p, fmt.Errorf("%s does not lint (or is missing): a service that cannot start is not installed", p.Config)
		}
		if p.DataDir == "" {
			p.DataDir = cfg.DataDir
		}
	}
	if p.DataDir == "" {
		p.DataDir = defData
	}
	if p.DataDir, err = filepath.Abs(p.DataDir); err != nil {
		return p, err
	}
	return p, p.Check()
}

// prepareLinux creates the service user (a system user without a login
// or home) and the data directory it owns.
func prepareLinux(p installer.Params) error {
	if os.Geteuid() != 0 {
		return errors.New("installing a system service needs root (sudo ehrbridge service install ...)")
	}
	if _, err := user.Lookup(p.User); err != nil {
		out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home", "--home-dir", p.DataDir,
			"--shell", "/usr/sbin/nologin", "--comment", "ehrbridge service", p.User).CombinedOutput()
		if err != nil {
			return fmt.Errorf("creating user %s: %v: %s", p.User, err, strings.TrimSpace(string(out)))
		}
	}
	if err := os.MkdirAll(p.DataDir, 0o750); err != nil {
		return err
	}
	if out, err := exec.Command("chown", p.User+":"+p.User, p.DataDir).CombinedOutput(); err != nil {
		return fmt.Errorf("giving %s to %s: %v: %s", p.DataDir, p.User, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// noProgram is the service body for control actions, which never run it.
type noProgram struct{}

func (noProgram) Start(ks.Service) error { return nil }
func (noProgram) Stop(ks.Service) error  { return nil }

package installer

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"

	ks "github.com/kardianos/service"
)

// Resolve describes an instance for the service commands: its executable
// (this one, symlinks resolved), config file and data directory as
// absolute paths, the defaults of DefaultPaths filling in what the command
// line left empty. With lint (install, and unit outside packaging) the
// config must load and lint, since a service that cannot start is not
// installed; lint reports the config's data_dir, which an empty dataDir
// then takes.
func Resolve(name, config, dataDir, usr string, lint func(config string) (dataDir string, ok bool)) (Params, error) {
	p := Params{Name: name, User: usr, DataDir: dataDir}
	defCfg, defData := DefaultPaths(name, runtime.GOOS)
	if config == "" {
		config = defCfg
	}
	abs, err := filepath.Abs(config)
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
	if lint != nil {
		cfgData, ok := lint(p.Config)
		if !ok {
			return p, fmt.Errorf("%s does not lint (or is missing): a service that cannot start is not installed", p.Config)
		}
		if p.DataDir == "" {
			p.DataDir = cfgData
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

// Control performs action (install, uninstall, start, stop, restart,
// status) on instance p through the system's service manager
// (kardianos/service) and returns what to tell the user. On Linux, install
// first creates the service user and the data directory (PrepareLinux).
func Control(p Params, action string) (string, error) {
	kc, err := KardianosConfig(p, runtime.GOOS)
	if err != nil {
		return "", err
	}
	m, err := ks.New(noProgram{}, kc)
	if err != nil {
		return "", err
	}
	linuxInstall := action == "install" && runtime.GOOS == "linux"
	if linuxInstall {
		if err := PrepareLinux(p); err != nil {
			return "", err
		}
	}
	msg, err := Run(m, action, p.Name)
	if err != nil {
		return "", err
	}
	if action == "install" {
		// The service's own source (its name) kardianos registers; the
		// audit lines' source is ours.
		if err := registerAuditSource(); err != nil {
			return "", fmt.Errorf("registering the Event Log source %q for audit lines: %w", auditSource, err)
		}
	}
	if linuxInstall {
		msg += fmt.Sprintf("\nlogs: journalctl -u %s; reload the config: systemctl reload %s", p.Name, p.Name)
	}
	return msg, nil
}

// PrepareLinux creates the service user (a system user without a login
// or home) and the data directory it owns.
func PrepareLinux(p Params) error {
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

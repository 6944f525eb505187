package installer

import (
	"fmt"
	"path/filepath"

	ks "github.com/kardianos/service"
)

// Manager controls one installed instance: kardianos/service on the real
// system, a fake in tests.
type Manager interface {
	Install() error
	Uninstall() error
	Start() error
	Stop() error
	Restart() error
	Status() (ks.Status, error)
}

// Windows defaults: config and data under %ProgramData%\ehrbridge.
const (
	WindowsConfigDir = `C:\ProgramData\ehrbridge`
)

// KardianosConfig is the service definition of an instance for goos
// ("linux", "windows"): on Linux the systemd unit of SystemdUnit; on
// Windows automatic delayed start, restart on failure (after 10 s, the
// failure count reset after a day), and the virtual account
// NT SERVICE\<name>, which needs no password and no user to manage. The
// Windows Event Log source of the same name is registered at install.
func KardianosConfig(p Params, goos string) (*ks.Config, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	c := &ks.Config{
		Name:        p.Name,
		DisplayName: "ehrbridge (" + p.Name + ")",
		Description: "ehrbridge: EHR events (HL7 v2, FHIR) into the CRM, coordinators' notes back into the EHR. Config " + p.Config,
		Executable:  p.Exe,
		Arguments:   p.Arguments(),
		Option:      ks.KeyValue{},
	}
	switch goos {
	case "windows":
		c.UserName = `NT SERVICE\` + p.Name
		c.Option["StartType"] = "automatic"
		c.Option["DelayedAutoStart"] = true
		c.Option["OnFailure"] = "restart"
		c.Option["OnFailureDelayDuration"] = "10s"
		c.Option["OnFailureResetPeriod"] = 86400
	default:
		unit, err := SystemdUnit(p)
		if err != nil {
			return nil, err
		}
		c.Option["SystemdScript"] = unit
	}
	return c, nil
}

// DefaultPaths are the config and data directory of an instance when the
// command line names none: /etc/ehrbridge/<name>.yaml and
// /var/lib/<name> on Linux, %ProgramData%\ehrbridge\<name>.yaml and
// ...\<name>-data on Windows.
func DefaultPaths(name, goos string) (config, dataDir string) {
	if goos == "windows" {
		return WindowsConfigDir + `\` + name + ".yaml", WindowsConfigDir + `\` + name + "-data"
	}
	return filepath.Join("/etc/ehrbridge", name+".yaml"), filepath.Join("/var/lib", name)
}

// Run performs a control action on m and returns what to tell the user.
func Run(m Manager, action, name string) (string, error) {
	switch action {
	case "install":
		if err := m.Install(); err != nil {
			return "", fmt.Errorf("installing %s: %w", name, err)
		}
		return fmt.Sprintf("installed %s; start it with: ehrbridge service start --name %s", name, name), nil
	case "uninstall":
		if st, err := m.Status(); err == nil && st == ks.StatusRunning {
			if err := m.Stop(); err != nil {
				return "", fmt.Errorf("stopping %s before uninstalling: %w", name, err)
			}
		}
		if err := m.Uninstall(); err != nil {
			return "", fmt.Errorf("uninstalling %s: %w", name, err)
		}
		return fmt.Sprintf("uninstalled %s (its config and data are kept)", name), nil
	case "start":
		return "started " + name, m.Start()
	case "stop":
		return "stopped " + name, m.Stop()
	case "restart":
		return "restarted " + name, m.Restart()
	case "status":
		st, err := m.Status()
		switch {
		case err == ks.ErrNotInstalled:
			return name + ": not installed", nil
		case err != nil:
			return "", err
		case st == ks.StatusRunning:
			return name + ": running", nil
		case st == ks.StatusStopped:
			return name + ": stopped", nil
		}
		return name + ": unknown", nil
	}
	return "", fmt.Errorf("unknown action %q: use install, uninstall, start, stop, restart or status", action)
}

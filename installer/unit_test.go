package installer

import (
	ks "github.com/kardianos/service"

	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The unit passes `systemd-analyze verify` (when systemd-analyze is
// installed: make test installs it), carries Type=notify, the restart
// policy, the user and the sandbox, and names only its data dir writable.
func TestSystemdUnitVerifies(t *testing.T) {
	skipOnWindows(t)
	dir := t.TempDir()
	exe := filepath.Join(dir, "bin", "ehrbridge")
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit, err := SystemdUnit(Params{Name: "ehrbridge-lab", Exe: exe, Config: "/etc/ehrbridge/lab.yaml", DataDir: "/var/lib/ehrbridge-lab"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "ExecStart=" + exe + " run --config /etc/ehrbridge/lab.yaml --service-name ehrbridge-lab", "Restart=on-failure",
		"User=ehrbridge", "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/ehrbridge-lab", "PrivateTmp=yes",
		"ExecReload=/bin/kill -HUP $MAINPID", "WantedBy=multi-user.target"} {
		if !strings.Contains(unit, want+"\n") {
			t.Errorf("unit lacks %q", want)
		}
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (make test installs systemd)")
	}
	file := filepath.Join(dir, "ehrbridge-lab.service")
	if err := os.WriteFile(file, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", file).CombinedOutput()
	if err != nil || strings.Contains(string(out), "ehrbridge-lab.service:") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// Names and paths a unit cannot carry are refused.
func TestParamsRefused(t *testing.T) {
	skipOnWindows(t)
	ok := Params{Exe: "/usr/bin/ehrbridge", Config: "/etc/ehrbridge/ehrbridge.yaml", DataDir: "/var/lib/ehrbridge"}
	for name, p := range map[string]Params{
		"name":          {Name: "Bad Name", Exe: ok.Exe, Config: ok.Config, DataDir: ok.DataDir},
		"relative":      {Exe: "ehrbridge", Config: ok.Config, DataDir: ok.DataDir},
		"space in path": {Exe: ok.Exe, Config: "/etc/my configs/e.yaml", DataDir: ok.DataDir},
		"newline":       {Exe: ok.Exe, Config: "/etc/e.yaml\nExecStartPre=/bin/rm", DataDir: ok.DataDir},
		"no data dir":   {Exe: ok.Exe, Config: ok.Config},
	} {
		if _, err := SystemdUnit(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := SystemdUnit(ok); err != nil {
		t.Errorf("good params: %v", err)
	}
}

// skipOnWindows skips a test of the systemd unit, whose paths are Linux
// paths, which Windows does not take for absolute.
func skipOnWindows(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the systemd unit and its Linux paths")
	}
}

type fakeManager struct {
	status  ks.Status
	statErr error
	calls   []string
}

func (f *fakeManager) Install() error   { f.calls = append(f.calls, "install"); return nil }
func (f *fakeManager) Uninstall() error { f.calls = append(f.calls, "uninstall"); return nil }
func (f *fakeManager) Start() error     { f.calls = append(f.calls, "start"); return nil }
func (f *fakeManager) Stop() error      { f.calls = append(f.calls, "stop"); return nil }
func (f *fakeManager) Restart() error   { f.calls = append(f.calls, "restart"); return nil }
func (f *fakeManager) Status() (ks.Status, error) {
	f.calls = append(f.calls, "status")
	return f.status, f.statErr
}

// The control actions: uninstall stops a running instance first; status
// speaks plainly, "not installed" included; an unknown action is refused.
func TestControlActions(t *testing.T) {
	m := &fakeManager{status: ks.StatusRunning}
	if msg, err := Run(m, "uninstall", "ehrbridge-lab"); err != nil || !strings.Contains(msg, "config and data are kept") ||
		strings.Join(m.calls, ",") != "status,stop,uninstall" {
		t.Errorf("uninstall: %q %v %v", msg, err, m.calls)
	}
	for st, want := range map[ks.Status]string{ks.StatusRunning: "running", ks.StatusStopped: "stopped", ks.StatusUnknown: "unknown"} {
		if msg, _ := Run(&fakeManager{status: st}, "status", "x"); msg != "x: "+want {
			t.Errorf("status %v: %q", st, msg)
		}
	}
	if msg, err := Run(&fakeManager{statErr: ks.ErrNotInstalled}, "status", "x"); err != nil || msg != "x: not installed" {
		t.Errorf("not installed: %q %v", msg, err)
	}
	if _, err := Run(&fakeManager{}, "reinstall", "x"); err == nil {
		t.Error("unknown action accepted")
	}
}

// The Windows service definition: automatic delayed start, restart on
// failure, the virtual account NT SERVICE\<name>, the instance's name on
// the command line (its Event Log source); on Linux, the systemd unit.
func TestKardianosConfig(t *testing.T) {
	p := Params{Name: "ehrbridge-lab", Exe: `C:\Program Files\ehrbridge\ehrbridge.exe`, Config: `C:\ProgramData\ehrbridge\ehrbridge-lab.yaml`,
		DataDir: `C:\ProgramData\ehrbridge\ehrbridge-lab-data`}
	w, err := KardianosConfig(p, "windows")
	if err != nil {
		// filepath.IsAbs is the host's: on Linux a Windows path is not absolute.
		if runtime.GOOS == "windows" {
			t.Fatal(err)
		}
		p = Params{Name: "ehrbridge-lab", Exe: "/opt/ehrbridge/ehrbridge.exe", Config: "/opt/ehrbridge/lab.yaml", DataDir: "/opt/ehrbridge/lab-data"}
		if w, err = KardianosConfig(p, "windows"); err != nil {
			t.Fatal(err)
		}
	}
	if w.UserName != `NT SERVICE\ehrbridge-lab` || w.Option["DelayedAutoStart"] != true || w.Option["OnFailure"] != "restart" ||
		w.Option["StartType"] != "automatic" || strings.Join(w.Arguments, " ") != "run --config "+p.Config+" --service-name ehrbridge-lab" {
		t.Errorf("windows config %+v", w)
	}
	if runtime.GOOS == "windows" {
		return // Linux paths are not absolute on Windows
	}
	l, err := KardianosConfig(Params{Exe: "/usr/bin/ehrbridge", Config: "/etc/ehrbridge/ehrbridge.yaml", DataDir: "/var/lib/ehrbridge"}, "linux")
	if err != nil {
		t.Fatal(err)
	}
	if unit, _ := l.Option["SystemdScript"].(string); !strings.Contains(unit, "Type=notify") || strings.Contains(unit, "{{") {
		t.Errorf("linux unit %q", unit)
	}
}

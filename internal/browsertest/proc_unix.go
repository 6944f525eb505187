//go:build !windows

package browsertest

import (
	"os/exec"
	"sync"
	"syscall"
)

// procGroup is the browser's process group: Chromium and the helpers it
// forks (zygote, renderers, GPU and network services).
type procGroup struct {
	mu  sync.Mutex
	cmd *exec.Cmd
}

// setup puts the browser in a process group of its own (so stop can kill
// its children without touching anything else) and, on Linux, kills it if
// the test binary dies.
func (g *procGroup) setup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setDeathSignal(cmd.SysProcAttr)
	g.mu.Lock()
	g.cmd = cmd
	g.mu.Unlock()
}

// kill sends SIGKILL to the group, if the browser started.
func (g *procGroup) kill() {
	g.mu.Lock()
	cmd := g.cmd
	g.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	// The group's id is the browser's pid; a negative pid names the group.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

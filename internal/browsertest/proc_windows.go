package browsertest

import "os/exec"

// procGroup leaves the browser to chromedp on Windows, which kills it when
// its context ends; Windows has no process groups to kill.
type procGroup struct{}

// setup leaves the command as it is.
func (*procGroup) setup(*exec.Cmd) {}

// kill does nothing; see procGroup.
func (*procGroup) kill() {}

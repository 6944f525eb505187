package browsertest

import "syscall"

// setDeathSignal has the kernel kill the browser when the test binary's
// thread that started it ends (chromedp starts it from a locked thread).
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }

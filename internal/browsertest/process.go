package browsertest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// process is the Chromium shared by a test binary's browsers: one
// process group, one temporary profile, one refusing proxy for traffic of
// the browser's own (each Browser's context has its own proxy).
type process struct {
	exe     string
	ctx     context.Context // the browser's first context; its cancel ends the browser
	cancel  context.CancelFunc
	group   *procGroup
	proxy   *refusingProxy
	profile string
	started time.Duration
}

var (
	sharedMu sync.Mutex
	shared   *process
)

// sharedProcess returns the running shared browser, starting it (again,
// if it died) when needed.
func sharedProcess() (*process, error) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil && shared.ctx.Err() == nil {
		return shared, nil
	}
	if shared != nil {
		shared.stop()
		shared = nil
	}
	p, err := startProcess()
	if err != nil {
		return nil, err
	}
	shared = p
	return p, nil
}

// startProcess starts Chromium headless: its own process group, a
// temporary profile, loopback-only networking, a 1280x900 window.
func startProcess() (*process, error) {
	exe, err := FindChromium()
	if err != nil {
		return nil, err
	}
	profile, err := os.MkdirTemp("", "ehrbridge-browsertest-")
	if err != nil {
		return nil, err
	}
	p := &process{exe: exe, group: &procGroup{}, profile: profile}
	if p.proxy, err = listenRefusingProxy(); err != nil {
		os.RemoveAll(profile)
		return nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(Width, Height),
		// Loopback only: Chromium sends loopback directly whatever the proxy
		// (its implicit bypass), everything else goes to the refusing proxy,
		// and names other than localhost do not resolve.
		chromedp.ProxyServer("http://"+p.proxy.addr),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		// Chromium's own services (autofill field types for a password form,
		// leak checks, hints) call Google: off, so that Outbound lists the
		// pages' requests, not the browser's.
		chromedp.Flag("disable-features", "site-per-process,Translate,BlinkGenPropertyTrees,AutofillServerCommunication,"+
			"PasswordLeakDetection,OptimizationHints,OptimizationHintsFetching,MediaRouter,NetworkTimeServiceQuerying,"+
			"CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions"),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.ModifyCmdFunc(p.group.setup),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium will not start as root with its sandbox
	} else {
		opts = append(opts, chromedp.Flag("no-sandbox", false))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	p.ctx = ctx
	p.cancel = func() { cancelCtx(); cancelAlloc() }

	// The first run starts the browser, on ctx itself: chromedp ties the
	// browser's life to the context of its first run.
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(ctx) }()
	select {
	case err = <-done:
	case <-time.After(startTimeout):
		err = fmt.Errorf("not started after %v", startTimeout)
	}
	p.started = time.Since(start)
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("browser: starting %s: %w", exe, err)
	}
	return p, nil
}

// stop closes the browser, kills what is left of its process group and
// removes its profile.
func (p *process) stop() {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	_ = chromedp.Cancel(ctx) // a graceful close; the kill below does the rest
	cancel()
	p.cancel()
	p.group.kill()
	p.proxy.close()
	os.RemoveAll(p.profile)
}

// Main runs the tests of m, then stops the shared browser. A package
// whose tests use New calls it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }
//
// Without it the browser ends with the test binary (on Linux the kernel
// kills it) but its temporary profile stays behind.
func Main(m *testing.M) int {
	code := m.Run()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.stop()
		shared = nil
	}
	return code
}

// ChromiumStartTime is how long the shared browser took to start, zero
// before the first New.
func ChromiumStartTime() time.Duration {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		return 0
	}
	return shared.started
}

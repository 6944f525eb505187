// Package browsertest drives a real Chromium from Go tests (issue 30): the
// Debian chromium package, headless, over the DevTools protocol with
// chromedp. New gives a test a browser of its own: a fresh browser context
// (cookies, storage and cache of its own, like a private window) with one
// 1280x900 tab, closed when the test ends. The Chromium process behind the
// contexts is started by a test binary's first New (a few seconds) and
// shared by its tests (each later New takes well under a second); it runs in
// its own process group with a temporary profile, and Main, called from
// TestMain, stops it and kills that group. A browser that died is started
// again by the next New.
//
// The browser reaches 127.0.0.1 and localhost only: every other host goes
// to a proxy on loopback that refuses it (each Browser has its own, so
// Browser.Outbound lists that test's attempts), and the host resolver
// answers NOTFOUND for any name but localhost, so nothing a page asks for
// leaves the machine.
//
// Every uncaught JavaScript exception, console error, browser log error and
// Content-Security-Policy violation is recorded as a Problem; any problem the
// test did not Allow or Expect fails it at cleanup, and so does an Expect
// that nothing matched.
//
// Helpers (Navigate, Click, SetValue, Type, Submit, WaitVisible, WaitText,
// Text, ...) fail the test themselves, naming the page's URL and saving a
// screenshot, so a test reads as a list of steps. Screenshots go to
// $EHRBRIDGE_ARTIFACTS/<test>/, by default <repo>/artifacts/<test>/
// (gitignored), and their paths are logged with t.Log.
//
// Finding the browser: $EHRBRIDGE_CHROMIUM, else chromium, chromium-browser
// or google-chrome on PATH. When none is found the test fails naming `make
// browser` if EHRBRIDGE_REQUIRE_BROWSER is set (make test sets it), and is
// skipped with the same message otherwise. As root, Chromium runs with
// --no-sandbox (it refuses to start as root otherwise); as anyone else it
// keeps its sandbox.
//
// Nothing here is part of the product. Page text can end up in test output
// (problem texts, failed waits), so tests must use made-up patient data.
package browsertest

package browsertest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/chromedp"
)

// cleared records the artifact folders emptied by this test binary, so a
// test's screenshots from an earlier run do not mix with this run's, and
// two browsers of one test do not empty each other's.
var cleared sync.Map

// ArtifactsDir is the folder this test's screenshots go to:
// $EHRBRIDGE_ARTIFACTS/<test>, by default <repo>/artifacts/<test>.
func (b *Browser) ArtifactsDir() string {
	b.t.Helper()
	if b.artifacts == "" {
		d, err := artifactsDir(b.t.Name())
		if err != nil {
			b.t.Fatalf("browser: %v", err)
		}
		b.artifacts = d
	}
	return b.artifacts
}

// artifactsDir makes (and, once per test binary, empties) the folder for
// test.
func artifactsDir(test string) (string, error) {
	root := os.Getenv(EnvArtifacts)
	if root == "" {
		mod, err := moduleRoot()
		if err != nil {
			return "", err
		}
		root = filepath.Join(mod, "artifacts")
	}
	d := filepath.Join(root, safeName(test))
	if _, done := cleared.LoadOrStore(d, true); !done {
		if err := os.RemoveAll(d); err != nil {
			return "", err
		}
	}
	return d, os.MkdirAll(d, 0o755)
}

// Screenshot saves the tab's viewport as <ArtifactsDir>/<name>.png, logs
// its path and returns it.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	path, err := b.capture(name)
	if err != nil {
		b.t.Fatalf("browser: screenshot %s: %v", name, err)
	}
	return path
}

// capture is Screenshot returning its error, for failure paths.
func (b *Browser) capture(name string) (string, error) {
	b.t.Helper()
	d, err := artifactsDir(b.t.Name())
	if err != nil {
		return "", err
	}
	b.artifacts = d
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		return "", err
	}
	path := filepath.Join(d, safeName(name)+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return "", err
	}
	b.t.Logf("browser: screenshot %s", path)
	return path, nil
}

// safeName keeps letters, digits and '-'; anything else becomes '_'.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			return r
		}
		return '_'
	}, s)
}

// moduleRoot is the nearest folder above the working directory (a test's
// package folder) that holds go.mod.
func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("no go.mod above the working directory; set " + EnvArtifacts)
		}
		d = parent
	}
}

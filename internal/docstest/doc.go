// Package docstest keeps the documentation honest: its tests check that
// every relative link and anchor in README.md and docs/*.md resolves, that
// every ehrbridge command shown names a verb and flags the binary has, that
// every config snippet decodes strictly, that every make target named
// exists, and they run the demo walk-throughs (code blocks marked
// <!-- demo: make TARGET -->) against the daemon started as that make
// target starts it, comparing the output the docs show.
package docstest

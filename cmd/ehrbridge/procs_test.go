package main

import (
	"runtime"
	"testing"
)

func TestTuneProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))

	t.Setenv("GOMAXPROCS", "")
	runtime.GOMAXPROCS(2)
	if got := tuneProcs(); got != 2+extraProcs || runtime.GOMAXPROCS(0) != 2+extraProcs {
		t.Errorf("without GOMAXPROCS in the environment: tuneProcs = %d, GOMAXPROCS %d; want %d", got, runtime.GOMAXPROCS(0), 2+extraProcs)
	}

	t.Setenv("GOMAXPROCS", "3")
	runtime.GOMAXPROCS(3)
	if got := tuneProcs(); got != 3 || runtime.GOMAXPROCS(0) != 3 {
		t.Errorf("with GOMAXPROCS=3 in the environment: tuneProcs = %d, GOMAXPROCS %d; want 3 left alone", got, runtime.GOMAXPROCS(0))
	}
}

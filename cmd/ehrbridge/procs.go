package main

import (
	"os"
	"runtime"
)

// extraProcs is how many Ps ehrbridge runs beyond the CPUs it may use.
//
// The checkpoint log's group commit is serial: one goroutine writes a
// batch and waits in fdatasync while the senders of the batch wait for
// it. With GOMAXPROCS at the CPU count, that goroutine comes back from
// the syscall to find every P busy with connection goroutines, and waits
// in the run queue while its batch's senders, and the next batch, wait on
// it. Two spare Ps let it run at once. Measured on 2 vCPUs with 64 MLLP
// connections (ehrbridge bench ingest, same-run ratios to raw bbolt group
// commit): 0.40-0.49 at GOMAXPROCS=2, 0.51-0.55 at 3, 4, 6 and 8.
const extraProcs = 2

// tuneProcs sets GOMAXPROCS to the runtime's default (the CPUs, or the
// container's CPU limit) plus extraProcs, unless the GOMAXPROCS
// environment variable sets it. Setting it stops the runtime's own updates
// when the CPU count or the container's CPU limit changes later: a changed
// limit takes effect at the next restart.
func tuneProcs() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	n := runtime.GOMAXPROCS(0) + extraProcs
	runtime.GOMAXPROCS(n)
	return n
}

package daemon

import (
	"fmt"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
)

// A full disk degrades the daemon, it does not stop it (issue 27): the
// listeners serve, what cannot be stored is answered AE, /readyz says why
// it is not ready, and storageLoop retries the log's refused writes until
// the data directory takes them again, without a restart.

// StorageCheckInterval is how often a log whose file system refused a
// write is retried (an append retries it too).
var StorageCheckInterval = 2 * time.Second

// storageProblem says why the data directory cannot be written, for
// /readyz and /status, or "" when it can. It names the directory's
// condition, never record data.
func (d *Daemon) storageProblem() string {
	p := d.cp.StorageProblem()
	if p == nil {
		return ""
	}
	return describeStorage(p.Kind, d.dataDir)
}

func describeStorage(k checkpoint.StorageKind, dir string) string {
	free := "" // where the platform cannot tell
	if n, ok := freeBytes(dir); ok {
		free = fmt.Sprintf(": %d bytes free", n)
	}
	switch k {
	case checkpoint.StorageFull:
		return "the data directory's disk is full" + free
	case checkpoint.StorageQuota:
		return "the data directory's disk quota is used up" + free
	case checkpoint.StorageReadOnly:
		return "the data directory's file system is read-only"
	case checkpoint.StorageFileLimit:
		return "the checkpoint log may not grow: the process's file size limit (RLIMIT_FSIZE) or the file system's largest file is reached"
	}
	return "the data directory cannot be written"
}

// storageLoop retries the log's refused writes every interval while there
// is a storage problem, and logs when it begins and ends.
func (d *Daemon) storageLoop(every time.Duration) {
	defer close(d.storageDone)
	t := time.NewTicker(every)
	defer t.Stop()
	degraded := false
	for {
		if d.cp.StorageProblem() != nil {
			_ = d.cp.Resume()
		}
		switch p := d.cp.StorageProblem(); {
		case p != nil && !degraded:
			degraded = true
			d.log.Error("the checkpoint log cannot be written: messages are answered AE (please resend) and /readyz is not ready until it can",
				"problem", describeStorage(p.Kind, d.dataDir), "err", p.Err)
		case p == nil && degraded:
			degraded = false
			d.log.Info("the checkpoint log is written again: storing resumed")
			d.crm.notify()
		}
		if d.cp.StorageProblem() == nil {
			// FHIR polls skipped for a storage problem (one shorter
			// than this interval too) run now, not at their next
			// schedule.
			d.fhir.catchUp()
		}
		select {
		case <-d.stopStorage:
			return
		case <-t.C:
		}
	}
}

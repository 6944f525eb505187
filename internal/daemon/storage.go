package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
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

// adminToken returns the data directory's admin token. A token file that
// cannot be written (full or read-only disk) does not stop the start: the
// admin endpoint (/readyz above all) serves, with a token kept in memory
// that no client can read, so the log API refuses every call until a
// restart with room writes the file.
func (d *Daemon) adminToken(dataDir string) (string, error) {
	tok, err := logadmin.EnsureToken(dataDir)
	if err == nil {
		return tok, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		// The data directory itself could not be made (a file system
		// mounted read-only before the start): that is the cause.
		if merr := os.MkdirAll(dataDir, 0o700); checkpoint.StorageKindOf(merr) != 0 {
			err = merr
		}
	}
	if checkpoint.StorageKindOf(err) == 0 {
		return "", err
	}
	d.log.Error("the admin token file cannot be written; the log API (ehrbridge log ... against the running daemon) is refused until a restart with room",
		"problem", describeStorage(checkpoint.StorageKindOf(err), dataDir))
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

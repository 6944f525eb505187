//go:build linux

package checkpoint

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// crashWithInflight appends n records with incompressible payloads, claims
// some (in progress) and closes the file without returning them, as a
// SIGKILL leaves the log. n < 0 appends until the file system is full.
// It returns the keys stored and the claimed ids.
func crashWithInflight(t *testing.T, path string, n, claim int) ([]string, map[uint64]bool) {
	t.Helper()
	l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !l.closed {
			l.db.Close()
		}
	})
	var keys []string
	var recs []*Record
	for i := 0; n < 0 || i < n; i++ {
		if i == claim*2 {
			// Claimed while there is room (Claim writes too).
			if recs, err = l.Claim(claim); err != nil {
				t.Fatal(err)
			}
		}
		key := fmt.Sprintf("k%04d", i)
		_, err := l.Append(context.Background(), entry(key, fmt.Sprintf("p%d", i%7), randomText(2000)))
		if n < 0 && errors.Is(err, ErrStorage) {
			break
		}
		if err != nil {
			t.Fatalf("Append(%s): %v", key, err)
		}
		keys = append(keys, key)
	}
	if len(recs) == 0 {
		t.Fatal("nothing claimed")
	}
	claimed := map[uint64]bool{}
	for _, r := range recs {
		claimed[r.ID] = true
	}
	// Close returns nothing to retrying: like a kill, the in-progress
	// records stay in the inflight index for the next Open.
	if err := l.db.Close(); err != nil {
		t.Fatal(err)
	}
	l.closed = true
	return keys, claimed
}

func randomText(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	for i := range b {
		b[i] = abc[int(b[i])%len(abc)]
	}
	return string(b)
}

// checkResumed proves the log writes again and lost nothing: the records in
// progress at the crash come back exactly once, every record is there once,
// and a new append is stored.
func checkResumed(t *testing.T, l *Log, keys []string, claimed map[uint64]bool) {
	t.Helper()
	if err := l.Resume(); err != nil {
		t.Fatalf("Resume after room was freed: %v", err)
	}
	if p := l.StorageProblem(); p != nil {
		t.Fatalf("StorageProblem after Resume = %v", p)
	}
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.States[InProgress] != 0 || st.States[Retrying] != int64(len(claimed)) {
		t.Fatalf("after resuming: %d in progress, %d retrying; want 0 and the %d claimed before the crash",
			st.States[InProgress], st.States[Retrying], len(claimed))
	}
	for _, k := range keys {
		e := entry(k, "", "")
		r, err := l.Append(context.Background(), e)
		if err != nil || r.Outcome != Conflict && r.Outcome != Duplicate {
			// Stored before the crash: a different hash under the same
			// key is a conflict, which proves the key is there.
			t.Fatalf("key %s after resuming: %+v %v, want it still stored", k, r, err)
		}
	}
	mustAppend(t, l, entry("after-resume", "p1", randomText(5000)))
	got := map[uint64]int{}
	for {
		recs, err := l.Claim(100)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			got[r.ID]++
			if err := l.MarkDone(r.ID, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	for id := range claimed {
		if got[id] != 1 {
			t.Errorf("record %d, in progress at the crash, claimed %d times after resuming", id, got[id])
		}
	}
	if problems, err := l.Check(); err != nil || len(problems) > 0 {
		t.Fatalf("log check: %v %q", err, problems)
	}
}

// setFileSizeLimit sets this process's RLIMIT_FSIZE soft limit and returns
// a function restoring the old one. With a limit of 0 every write to a
// regular file fails with EFBIG (Go ignores SIGXFSZ).
func setFileSizeLimit(t *testing.T, soft uint64) func() {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	lim := old
	lim.Cur = soft
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skipf("setrlimit RLIMIT_FSIZE: %v", err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Fatalf("restoring RLIMIT_FSIZE: %v", err)
			}
		}
	}
	t.Cleanup(restore)
	return restore
}

// A log whose file takes no writes (here RLIMIT_FSIZE 0, which needs no
// mount rights: every write fails with EFBIG, as on a disk with no room at
// all) still opens after a crash with records in progress; appends fail
// with a StorageError (so the source answers AE); once writes are possible
// again the log resumes without being reopened and nothing is lost.
// Before issue 27 Open failed ("file too large" / "no space left on
// device") and the daemon exited.
func TestOpenOnUnwritableFileResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	keys, claimed := crashWithInflight(t, path, 200, 30)

	restore := setFileSizeLimit(t, 0)
	l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		restore()
		t.Fatalf("Open with writes refused: %v", err)
	}
	defer l.Close()
	p := l.StorageProblem()
	if p == nil || p.Kind != StorageFileLimit {
		restore()
		t.Fatalf("StorageProblem after Open = %v, want the file size limit", p)
	}
	// Reads work meanwhile.
	if _, err := l.Get(1); err != nil {
		restore()
		t.Fatalf("Get while writes are refused: %v", err)
	}
	_, aerr := l.Append(context.Background(), entry("new-while-full", "p1", randomText(3000)))
	_, cerr := l.Claim(10)
	rerr := l.Resume()
	restore()
	if !errors.Is(aerr, ErrStorage) || StorageKindOf(aerr) != StorageFileLimit {
		t.Fatalf("Append while writes are refused: %v, want a StorageError", aerr)
	}
	if !errors.Is(cerr, ErrStorage) {
		t.Fatalf("Claim while writes are refused: %v, want a StorageError", cerr)
	}
	if rerr == nil {
		t.Fatal("Resume succeeded while writes were refused")
	}
	if _, err := l.Get(1); err != nil {
		t.Fatal(err)
	}
	checkResumed(t, l, keys, claimed)
	// The record refused while full was not stored.
	if r, err := l.Append(context.Background(), entry("new-while-full", "p1", "x")); err != nil || r.Outcome != Appended {
		t.Fatalf("the append refused while full was stored anyway: %+v %v", r, err)
	}
}

// The same on a real full file system: a small tmpfs the test mounts (root
// with mount rights only), filled by the log itself (as the daemon fills
// it) and to the last byte by a filler file, the log "crashed" with
// records in progress and reopened: returning them to retrying needs new
// pages, and before issue 27 Open failed with "no space left on device"
// here. Then the volume grows and the log resumes without a reopen.
func TestOpenOnFullTmpfsResumes(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	path := filepath.Join(dir, FileName)
	keys, claimed := crashWithInflight(t, path, -1, 30)
	fillDisk(t, dir)

	l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Open on a full disk: %v", err)
	}
	defer l.Close()
	t.Logf("after Open on the full disk: storage problem %v", l.StorageProblem())
	// A large append needs new pages: refused, classified as a full disk.
	var aerr error
	for i := range 50 {
		if _, aerr = l.Append(context.Background(), entry(fmt.Sprintf("full-%d", i), "p", randomText(20000))); aerr != nil {
			break
		}
	}
	if StorageKindOf(aerr) != StorageFull || !errors.Is(aerr, ErrStorage) {
		t.Fatalf("Append on a full disk: %v, want a StorageError (disk full)", aerr)
	}
	if p := l.StorageProblem(); p == nil || p.Kind != StorageFull {
		t.Fatalf("StorageProblem = %v, want disk full", p)
	}
	// Room frees: the operator grows the volume. The log itself filled
	// it, so removing the filler alone might free nothing.
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size=4m,mode=0700"); err != nil {
		t.Fatalf("growing the tmpfs: %v", err)
	}
	checkResumed(t, l, keys, claimed)
}

// mountTmpfs mounts a tmpfs of size on a temp dir for the test, or skips.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("a real full file system needs mounting a tmpfs (root with CAP_SYS_ADMIN): %v; TestOpenOnUnwritableFileResumes covers the behaviour without", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file in dir until the file system has no room left.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return path
		}
	}
}

// A log written before issue 27 (free list not in the file) gets its free
// list written by bbolt's open, a commit: on a disk that takes no writes
// that failed Open. It opens without, and the free list is written once
// writes are possible again.
func TestOpenLegacyLogOnUnwritableFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler), rebuildFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		mustAppend(t, l, entry(fmt.Sprintf("k%d", i), fmt.Sprintf("p%d", i%10), randomText(1000)))
	}
	if _, err := l.Claim(10); err != nil {
		t.Fatal(err)
	}
	l.db.Close()
	l.closed = true

	restore := setFileSizeLimit(t, 0)
	l, err = Open(path, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		restore()
		t.Fatalf("Open of a log without a free list, writes refused: %v", err)
	}
	defer l.Close()
	_, aerr := l.Append(context.Background(), entry("while-full", "p", "x"))
	restore()
	if !errors.Is(aerr, ErrStorage) {
		t.Fatalf("Append while writes are refused: %v", aerr)
	}
	if err := l.Resume(); err != nil {
		t.Fatal(err)
	}
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.States[InProgress] != 0 || st.States[Retrying] != 10 {
		t.Fatalf("after resuming: %+v, want the 10 in progress retrying", st.States)
	}
	mustAppend(t, l, entry("after", "p", "x"))
	if l.db.NoFreelistSync {
		t.Fatal("the free list is still not kept after resuming")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The free list is in the file now: bbolt's open commits nothing, so
	// it succeeds with writes refused.
	restore = setFileSizeLimit(t, 0)
	db, err := bolt.Open(path, 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType})
	restore()
	if err != nil {
		t.Fatalf("the free list was not written to the file: bbolt's open had to: %v", err)
	}
	db.Close()
}

// A new log that cannot be written fails Open (there is nothing to serve
// from), but leaves no partial file behind that would keep it from
// opening once room frees.
func TestOpenNewLogOnUnwritableFileLeavesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	restore := setFileSizeLimit(t, 0)
	_, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler)})
	restore()
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("Open of a new log, writes refused: %v, want a StorageError", err)
	}
	if _, serr := os.Stat(path); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("a partial log file was left behind: %v", serr)
	}
	l := reopen(t, path, Options{})
	mustAppend(t, l, entry("k", "p", "x"))
}

// The settlement of a batch sent while the disk was full is refused; it
// is written once writes are possible again, without a restart (before,
// its records stayed in progress, their lanes blocked, until the next
// start). Settling them again meanwhile, as the pipeline retries, is no
// error and changes nothing.
func TestSettlementRefusedByFullDiskIsWrittenLater(t *testing.T) {
	l, _ := openTest(t, Options{})
	for i := range 6 {
		mustAppend(t, l, entry(fmt.Sprintf("k%d", i), fmt.Sprintf("p%d", i), "x"))
	}
	recs, err := l.Claim(6)
	if err != nil || len(recs) != 6 {
		t.Fatalf("claim: %d %v", len(recs), err)
	}
	// Every lane has a second record waiting behind its head.
	for i := range 6 {
		mustAppend(t, l, entry(fmt.Sprintf("next%d", i), fmt.Sprintf("p%d", i), "y"))
	}
	var outs []Settlement
	for i, r := range recs {
		switch i % 3 {
		case 0:
			outs = append(outs, Settlement{ID: r.ID, State: Done, Targets: []string{"T"}})
		case 1:
			outs = append(outs, Settlement{ID: r.ID, State: Retrying, RetryAt: l.opts.Now(), Reason: "crm 503"})
		case 2:
			outs = append(outs, Settlement{ID: r.ID, State: Dead, Reason: "bad"})
		}
	}
	restore := setFileSizeLimit(t, 0)
	serr := l.Settle(outs)
	restore()
	if !errors.Is(serr, ErrStorage) {
		t.Fatalf("Settle with writes refused: %v, want a StorageError", serr)
	}
	if err := l.Resume(); err != nil {
		t.Fatal(err)
	}
	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.States[InProgress] != 0 || st.States[Done] != 2 || st.States[Retrying] != 2 || st.States[Dead] != 2 {
		t.Fatalf("after resuming: %v, want the refused settlement written", st.States)
	}
	// The pipeline's retry of the same settlement.
	if err := l.Settle(outs); err != nil {
		t.Fatalf("settling again after the owed settlement was written: %v", err)
	}
	// A settlement that was never owed still refuses a record not in
	// progress.
	if err := l.Settle([]Settlement{{ID: recs[0].ID, State: Done}}); !errors.Is(err, ErrTransition) {
		t.Fatalf("settling a done record: %v, want ErrTransition", err)
	}
	// The lanes moved on: the done and dead heads let their next record
	// be claimed.
	next, err := l.Claim(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(next) < 4 {
		t.Fatalf("claimed %d after the settlement, want the next records of the 4 finished lanes", len(next))
	}
}

// bbolt reports some causes only in its text ("file resize error: %s"),
// so the errno's text classifies too; other errors are not storage ones.
func TestStorageKindOf(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want StorageKind
	}{
		{&os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, StorageFull},
		{fmt.Errorf("file resize error: %s", syscall.ENOSPC), StorageFull},
		{fmt.Errorf("file sync error: %s", syscall.EDQUOT), StorageQuota},
		{&os.PathError{Op: "open", Path: "x", Err: syscall.EROFS}, StorageReadOnly},
		{fmt.Errorf("wrapped: %w", syscall.EFBIG), StorageFileLimit},
		{&StorageError{Kind: StorageQuota, Op: "append", Err: errors.New("x")}, StorageQuota},
		{syscall.EIO, 0},
		{errors.New("checkpoint: log is closed"), 0},
		{nil, 0},
	} {
		if got := StorageKindOf(tt.err); got != tt.want {
			t.Errorf("StorageKindOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if err := asStorage("append", fmt.Errorf("file resize error: %s", syscall.ENOSPC)); !errors.Is(err, ErrStorage) {
		t.Errorf("asStorage of a text-only ENOSPC: %v", err)
	}
	if err := asStorage("append", syscall.EIO); errors.Is(err, ErrStorage) {
		t.Errorf("asStorage of EIO made a StorageError: %v", err)
	}
}

// A full disk does not let another CRM in: the opening's transaction
// checks the CRM before its commit would fail, so Open refuses it even
// with DeferStorageErrors (the daemon's), rather than returning a log
// opened without writing that a later write would finish for the wrong
// CRM.
func TestCRMChangeOnUnwritableLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	seedFor(t, path, orgA, 2, 0)
	restore := setFileSizeLimit(t, 0)
	l, err := Open(path, Options{CRM: orgB, DeferStorageErrors: true, Logger: slog.New(slog.DiscardHandler)})
	restore()
	if err == nil {
		l.Close()
	}
	if !errors.Is(err, ErrCRMChanged) {
		t.Fatalf("Open for another CRM with writes refused: %v, want ErrCRMChanged", err)
	}
	// For its own CRM it opens without writing, as before.
	restore = setFileSizeLimit(t, 0)
	l, err = Open(path, Options{CRM: orgA, DeferStorageErrors: true, Logger: slog.New(slog.DiscardHandler)})
	restore()
	if err != nil {
		t.Fatalf("Open for its CRM with writes refused: %v", err)
	}
	l.Close()
}

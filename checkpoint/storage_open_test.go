//go:build linux

package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/syncbuf"
)

// Issue 27, deliverable 6, the part Open still refused: a new log on a
// full disk, an older log whose migration must write, and a read-only
// data directory. With DeferStorageErrors (the daemon) Open returns a Log
// not open yet; every call answers the StorageError, and Resume or the
// next Append opens it once the file system takes writes, with nothing
// lost. Before, Open returned the StorageError and the daemon exited.

func openDeferred(t *testing.T, path string) *Log {
	t.Helper()
	l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler), DeferStorageErrors: true})
	if err != nil {
		t.Fatalf("Open with DeferStorageErrors, writes refused: %v, want an unopened Log", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// checkUnopened proves every kind of call answers the StorageError of
// kind (and none panics on the file not being open).
func checkUnopened(t *testing.T, l *Log, kind StorageKind) {
	t.Helper()
	if p := l.StorageProblem(); p == nil || p.Kind != kind {
		t.Fatalf("StorageProblem = %v, want %s", p, kind)
	}
	_, aerr := l.Append(context.Background(), entry("while-refused", "p1", "x"))
	_, serr := l.Stats()
	_, cerr := l.Claim(10)
	_, gerr := l.Get(1)
	_, rerr := l.Recent(10)
	_, _, sserr := l.SourceState("fhir/x")
	_, swerr := l.Sweep()
	for name, err := range map[string]error{"Append": aerr, "Stats": serr, "Claim": cerr, "Get": gerr, "Recent": rerr,
		"SourceState": sserr, "Sweep": swerr, "Resume": l.Resume()} {
		if !errors.Is(err, ErrStorage) || StorageKindOf(err) != kind {
			t.Errorf("%s on the unopened log: %v, want a StorageError (%s)", name, err, kind)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// A first start on a disk that takes no writes (RLIMIT_FSIZE 0: EFBIG,
// as a disk with no room at all): no partial file is left, the log opens
// at the first append once writes are possible, and keeps what it stores.
func TestDeferredOpenNewLogUnwritable(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	restore := setFileSizeLimit(t, 0)
	l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler), DeferStorageErrors: true})
	if err != nil {
		restore()
		t.Fatalf("Open of a new log, writes refused: %v", err)
	}
	defer l.Close()
	checkUnopened(t, l, StorageFileLimit)
	restore()
	if _, serr := os.Stat(path); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("a partial log file was left behind: %v", serr)
	}
	// No Resume: the next append opens it.
	if r := mustAppend(t, l, entry("first", "p1", "one")); r.Outcome != Appended || r.ID != 1 {
		t.Fatalf("first append after writes are possible: %+v", r)
	}
	if p := l.StorageProblem(); p != nil {
		t.Fatalf("StorageProblem after the log opened: %v", p)
	}
	mustAppend(t, l, entry("second", "p1", "two"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = reopen(t, path, Options{})
	if st, err := l.Stats(); err != nil || st.States[Received] != 2 {
		t.Fatalf("after reopening: %+v %v", st, err)
	}
	if recs, err := l.Claim(10); err != nil || len(recs) != 1 || string(recs[0].Payload) != "one" {
		t.Fatalf("claim after reopening: %v %v", recs, err)
	}
}

// The same on a real full tmpfs (root with mount rights only), room
// freed by growing it; Resume (the daemon's storage loop) opens the log.
// Concurrent appends and readers meanwhile (go test -race) see either
// the StorageError or the open log.
func TestDeferredOpenNewLogFullTmpfs(t *testing.T) {
	dir := mountTmpfs(t, "256k")
	fillDisk(t, dir)
	path := filepath.Join(dir, FileName)
	l := openDeferred(t, path)
	checkUnopened(t, l, StorageFull)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	stored := make(chan string, 10000)
	for g := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("g%d-%d", g, i)
				_, err := l.Append(context.Background(), entry(key, fmt.Sprintf("p%d", i%3), "x"))
				switch {
				case err == nil:
					stored <- key
				case !errors.Is(err, ErrStorage):
					t.Errorf("append %s: %v", key, err)
					return
				}
				_, _ = l.Stats()
			}
		})
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size=8m,mode=0700"); err != nil {
		t.Fatalf("growing the tmpfs: %v", err)
	}
	if err := l.Resume(); err != nil {
		t.Fatalf("Resume after room was freed: %v", err)
	}
	close(stop)
	wg.Wait()
	close(stored)
	if p := l.StorageProblem(); p != nil {
		t.Fatalf("StorageProblem after Resume: %v", p)
	}
	n := 0
	for k := range stored {
		if r, err := l.Append(context.Background(), entry(k, "p0", "x")); err != nil || r.Outcome != Duplicate {
			t.Fatalf("key %s stored while opening: %+v %v", k, r, err)
		}
		n++
	}
	if st, err := l.Stats(); err != nil || st.States[Received] != int64(n) {
		t.Fatalf("stats: %+v %v, want %d received", st, err, n)
	}
	if problems, err := l.Check(); err != nil || len(problems) > 0 {
		t.Fatalf("log check: %v %q", err, problems)
	}
}

// An older log whose migration must write, with records left in progress
// by a crash, on a disk that takes no writes: before, Open refused it
// ("the log needs writing before use"). It opens unopened; once writes
// are possible Resume migrates it and returns the records, nothing lost.
func TestDeferredOpenMigrationUnwritable(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	keys, claimed := crashWithInflight(t, path, 100, 20)
	setSchema(t, path, schemaVersion-1)

	logs := &syncbuf.Buffer{}
	restore := setFileSizeLimit(t, 0)
	l, err := Open(path, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), DeferStorageErrors: true})
	if err != nil {
		restore()
		t.Fatalf("Open of a log to migrate, writes refused: %v", err)
	}
	defer l.Close()
	checkUnopened(t, l, StorageFileLimit)
	restore()
	// Each refused attempt rolled the migration back: none is reported.
	if n := strings.Count(logs.String(), "checkpoint log migrated"); n != 0 {
		t.Fatalf("a migration the disk refused was logged as done %d times", n)
	}
	checkResumed(t, l, keys, claimed)
	if n := strings.Count(logs.String(), "checkpoint log migrated"); n != 1 {
		t.Fatalf("the migration was logged %d times, want once", n)
	}
	if st, err := l.Stats(); err != nil || st.Schema != schemaVersion {
		t.Fatalf("after resuming: schema %d %v, want %d (migrated)", st.Schema, err, schemaVersion)
	}
}

// Without DeferStorageErrors (the offline commands: log, backup, bench)
// an unopenable log is still an error, as before.
func TestOpenWithoutDeferStillFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	crashWithInflight(t, path, 10, 2)
	setSchema(t, path, schemaVersion-1)
	restore := setFileSizeLimit(t, 0)
	l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler)})
	restore()
	if err == nil {
		l.Close()
		t.Fatal("Open of a log to migrate with writes refused succeeded without DeferStorageErrors")
	}
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("Open: %v, want a StorageError", err)
	}
	// The file is not held: it opens at once when writes are possible.
	l = reopen(t, path, Options{})
	if st, err := l.Stats(); err != nil || st.Schema != schemaVersion {
		t.Fatalf("%+v %v", st, err)
	}
}

// A data directory mounted read-only before the start, with a log left by
// a crash (bbolt's read-write open fails with EROFS) and without one (it
// cannot be created): the log opens once the directory is remounted
// read-write, by Resume or by the next append. Needs mount rights
// (skipped otherwise); the other tests cover the same path with
// RLIMIT_FSIZE.
func TestDeferredOpenReadOnlyDataDir(t *testing.T) {
	for _, existing := range []bool{true, false} {
		t.Run(fmt.Sprintf("existing=%v", existing), func(t *testing.T) {
			dir := mountTmpfs(t, "8m")
			path := filepath.Join(dir, "data", FileName)
			var keys []string
			var claimed map[uint64]bool
			if existing {
				keys, claimed = crashWithInflight(t, path, 100, 20)
			} else if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT|syscall.MS_RDONLY, "size=8m,mode=0700"); err != nil {
				t.Fatalf("remounting read-only: %v", err)
			}
			l := openDeferred(t, path)
			checkUnopened(t, l, StorageReadOnly)
			if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size=8m,mode=0700"); err != nil {
				t.Fatalf("remounting read-write: %v", err)
			}
			if !existing {
				mustAppend(t, l, entry("first", "p1", "one"))
				if p := l.StorageProblem(); p != nil {
					t.Fatalf("StorageProblem after the log opened: %v", p)
				}
				return
			}
			checkResumed(t, l, keys, claimed)
		})
	}
}

// A Log closed before it could open closes cleanly, and nothing opens it
// afterwards (no file is created, no lock left held).
func TestDeferredOpenClosedBeforeOpening(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	restore := setFileSizeLimit(t, 0)
	l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler), DeferStorageErrors: true})
	restore()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close of an unopened log: %v", err)
	}
	_, aerr := l.Append(context.Background(), entry("k", "p", "x"))
	_, serr := l.Stats()
	for name, err := range map[string]error{"Append": aerr, "Stats": serr, "Resume": l.Resume(), "Close again": l.Close()} {
		if name == "Close again" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the closed log's file was created: %v", err)
	}
	reopen(t, path, Options{})
}

// A log from before issue 27 (no free list in its file) that also needs
// migrating, on a disk that takes no writes: the file stays open between
// attempts (each bbolt open of such a file walks every page, 32 s for
// 2.2 GB) and its lock stays held (no second ehrbridge takes the data
// directory meanwhile); once writes are possible it is migrated, gets its
// free list, and keeps its records.
func TestDeferredMigrationKeepsFileOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler), rebuildFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		mustAppend(t, l, entry(fmt.Sprintf("k%d", i), fmt.Sprintf("p%d", i%5), randomText(500)))
	}
	if _, err := l.Claim(5); err != nil {
		t.Fatal(err)
	}
	l.db.Close()
	l.closed = true
	setSchema(t, path, schemaVersion-1)

	restore := setFileSizeLimit(t, 0)
	l, err = Open(path, Options{Logger: slog.New(slog.DiscardHandler), DeferStorageErrors: true})
	if err != nil {
		restore()
		t.Fatal(err)
	}
	defer l.Close()
	db := l.db
	rerr := l.Resume()
	_, aerr := l.Append(context.Background(), entry("while-full", "p", "x"))
	same := l.db == db
	restore()
	if db == nil || !same {
		t.Fatalf("the file was not kept open between attempts (db %p, then %p)", db, l.db)
	}
	if !errors.Is(rerr, ErrStorage) || !errors.Is(aerr, ErrStorage) {
		t.Fatalf("Resume %v, Append %v while writes are refused: want StorageErrors", rerr, aerr)
	}
	if _, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler), LockTimeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("a second Open while the first waits to migrate: %v, want ErrLocked", err)
	}
	if err := l.Resume(); err != nil {
		t.Fatalf("Resume once writes are possible: %v", err)
	}
	st, err := l.Stats()
	if err != nil || st.Schema != schemaVersion || st.States[Received]+st.States[Retrying] != 30 || st.States[InProgress] != 0 {
		t.Fatalf("after resuming: %+v %v, want 30 records at schema %d, none in progress", st, err, schemaVersion)
	}
	mustAppend(t, l, entry("after", "p", "x"))
	if l.db.NoFreelistSync {
		t.Fatal("the free list is still not kept after resuming")
	}
	if problems, err := l.Check(); err != nil || len(problems) > 0 {
		t.Fatalf("log check: %v %q", err, problems)
	}
}

package checkpoint

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// A full disk degrades the log, it does not stop it (issue 27). A write
// the data directory's file system refuses for want of room or because it
// is read-only is a StorageError: the append that met it is answered with
// an error (the MLLP source's AE, "please resend"), and the log stays
// open. What Open could not write (the opening's bookkeeping and the
// return of records left in progress by a crash) is written before the
// next write that succeeds, and Resume retries it, so that the log
// resumes by itself once room frees, without a restart. A log Open could
// not open at all without writing (creating it, migrating it, or a file
// system mounted read-only) is, with Options.DeferStorageErrors, returned
// not open yet, and the same retries open it.

// ErrStorage is what errors.Is finds in every StorageError.
var ErrStorage = errors.New("checkpoint: the data directory cannot be written")

// StorageKind says why the file system refused a write.
type StorageKind uint8

// Storage problems.
const (
	StorageFull     StorageKind = 1 // ENOSPC: no room left on the device
	StorageQuota    StorageKind = 2 // EDQUOT: the user's disk quota is used up
	StorageReadOnly StorageKind = 3 // EROFS: the file system is mounted read-only
	// EFBIG: the file may not grow (the process's RLIMIT_FSIZE, or the
	// file system's largest file).
	StorageFileLimit StorageKind = 4
)

func (k StorageKind) String() string {
	switch k {
	case StorageFull:
		return "disk full"
	case StorageQuota:
		return "disk quota exceeded"
	case StorageReadOnly:
		return "read-only file system"
	case StorageFileLimit:
		return "file size limit reached"
	}
	return "unknown"
}

// StorageError is a write the file system refused (see ErrStorage). It
// names the operation, never record data.
type StorageError struct {
	Kind StorageKind
	Op   string // what was being written: "append", "opening the log", ...
	Err  error
}

func (e *StorageError) Error() string {
	return fmt.Sprintf("checkpoint: %s not written (%s): %v", e.Op, e.Kind, e.Err)
}

func (e *StorageError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrStorage) true.
func (e *StorageError) Is(target error) bool { return target == ErrStorage }

// storageErrnos are the errors that make a StorageError, by kind.
var storageErrnos = []struct {
	errno syscall.Errno
	kind  StorageKind
}{
	{syscall.ENOSPC, StorageFull},
	{syscall.EDQUOT, StorageQuota},
	{syscall.EROFS, StorageReadOnly},
	{syscall.EFBIG, StorageFileLimit},
}

// StorageKindOf classifies err: the kind of storage problem it is, or 0.
// bbolt reports some failures (growing the file, its fsync, the mmap) with
// the cause formatted into the text and not wrapped, so the errno's text
// counts as well as the errno itself.
func StorageKindOf(err error) StorageKind {
	if err == nil {
		return 0
	}
	var se *StorageError
	if errors.As(err, &se) {
		return se.Kind
	}
	for _, s := range storageErrnos {
		if errors.Is(err, s.errno) {
			return s.kind
		}
	}
	msg := err.Error()
	for _, s := range storageErrnos {
		if strings.Contains(msg, s.errno.Error()) {
			return s.kind
		}
	}
	return 0
}

// asStorage returns err as a StorageError for op when the file system
// refused the write, else err unchanged.
func asStorage(op string, err error) error {
	if err == nil || errors.Is(err, ErrStorage) {
		return err
	}
	if k := StorageKindOf(err); k != 0 {
		return &StorageError{Kind: k, Op: op, Err: err}
	}
	return err
}

// storageState is the Log's view of its data directory.
type storageState struct {
	// startMu serialises finishing the opening; pending says the opening
	// still owes writes (it could not make them at Open).
	startMu sync.Mutex
	pending atomic.Bool
	// freelistOff says Open had to open the file without writing bbolt's
	// free list to it (a log from before issue 27 on a full disk): it is
	// turned back on when the opening is finished.
	freelistOff bool
	// problem is the last write's StorageError, nil after a write that
	// succeeded.
	problem atomic.Pointer[StorageError]
	// owed holds settlements the file system refused, by record, written
	// before the next write (payOwed); nOwed is its size, read without
	// the lock.
	owedMu sync.Mutex
	owed   map[uint64]Settlement
	nOwed  atomic.Int64
	// paid are owed settlements payOwed wrote, until the caller's own
	// retry of them (a settlement already written is no error then).
	paid  map[uint64]bool
	nPaid atomic.Int64
}

// owe keeps settlements the file system refused.
func (s *storageState) owe(outs []Settlement) {
	s.owedMu.Lock()
	defer s.owedMu.Unlock()
	if s.owed == nil {
		s.owed = map[uint64]Settlement{}
	}
	for _, o := range outs {
		s.owed[o.ID] = o
	}
	s.nOwed.Store(int64(len(s.owed)))
}

// forget drops outs from the owed settlements and says which were owed.
func (s *storageState) forget(outs []Settlement) map[uint64]bool {
	if s.nOwed.Load() == 0 && s.nPaid.Load() == 0 {
		return nil
	}
	s.owedMu.Lock()
	defer s.owedMu.Unlock()
	var was map[uint64]bool
	for _, o := range outs {
		_, owed := s.owed[o.ID]
		if owed || s.paid[o.ID] {
			if was == nil {
				was = map[uint64]bool{}
			}
			was[o.ID] = true
			delete(s.owed, o.ID)
			delete(s.paid, o.ID)
		}
	}
	s.nPaid.Store(int64(len(s.paid)))
	s.nOwed.Store(int64(len(s.owed)))
	return was
}

// payOwed writes the settlements the file system refused, for records
// still in progress (another call may have settled one since), in one
// transaction. Every write calls it first.
func (l *Log) payOwed() error {
	if l.storage.nOwed.Load() == 0 {
		return nil
	}
	l.storage.owedMu.Lock()
	defer l.storage.owedMu.Unlock()
	if len(l.storage.owed) == 0 {
		return nil
	}
	now := l.opts.Now()
	err := l.db.Update(func(tx *bolt.Tx) error {
		for _, o := range l.storage.owed {
			if !inProgress(tx, o.ID) {
				continue
			}
			if err := l.settleTx(tx, o, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && StorageKindOf(err) == 0 {
		// Not the disk: never block every write on it. The records
		// return to retrying at the next start, as any in progress do.
		l.opts.Logger.Error("checkpoint settlements refused by the file system could not be written; their records return to retrying at the next start",
			"records", len(l.storage.owed), "err", err)
		clear(l.storage.owed)
		l.storage.nOwed.Store(0)
		return nil
	}
	if err != nil {
		err = asStorage("settling records sent while the disk was full", err)
		l.storage.note(err)
		return err
	}
	l.opts.Logger.Info("checkpoint settlements refused by the file system written", "records", len(l.storage.owed))
	if l.storage.paid == nil || len(l.storage.paid) > 100000 {
		// Bounded: a caller that gave up never retries its own.
		l.storage.paid = map[uint64]bool{}
	}
	for id := range l.storage.owed {
		l.storage.paid[id] = true
	}
	l.storage.nPaid.Store(int64(len(l.storage.paid)))
	clear(l.storage.owed)
	l.storage.nOwed.Store(0)
	return nil
}

// note records the outcome of a write.
func (s *storageState) note(err error) {
	var se *StorageError
	switch {
	case err == nil:
		if s.problem.Load() != nil {
			s.problem.Store(nil)
		}
	case errors.As(err, &se):
		s.problem.Store(se)
	}
}

// StorageProblem returns the storage problem that stops the log from
// writing, nil when its last write succeeded and the opening is complete.
func (l *Log) StorageProblem() *StorageError { return l.storage.problem.Load() }

// Resume retries what the log could not write because of a storage
// problem: the opening (all of it for a log Open returned unopened, else
// the rest of it), or else one small write that proves the file takes
// writes again. It returns nil, and StorageProblem nil, once
// the log writes again; without a problem it does nothing.
func (l *Log) Resume() error {
	if l.opts.ReadOnly {
		return nil
	}
	if !l.opened.Load() || l.storage.pending.Load() {
		return l.update(func(*bolt.Tx) error { return nil })
	}
	if l.storage.problem.Load() == nil {
		return nil
	}
	return l.update(func(tx *bolt.Tx) error {
		// A real change (bbolt commits an unchanged transaction too, but
		// the probe should write a page as an append would).
		return tx.Bucket(bMeta).Put(metaWrittenBy, tx.Bucket(bMeta).Get(metaWrittenBy))
	})
}

// unopened is the error of a call on a Log Open returned unopened: the
// storage problem that keeps it from opening.
func (l *Log) unopened() error {
	if p := l.storage.problem.Load(); p != nil {
		return p
	}
	return &StorageError{Kind: StorageFull, Op: "opening the log", Err: errors.New("the log is not open yet")}
}

// finishOpening makes the writes Open could not, once: for a Log Open
// returned unopened the whole opening (openFile: creating the file, the
// migration, returning records in progress), else the opening's
// bookkeeping (init) and the return of records left in progress. Every
// write calls it first, so that nothing is claimed before the records a
// crash left in progress are back. Callers hold mu for reading or are an
// append Close waits for, so that Close never races the opening.
func (l *Log) finishOpening() error {
	if l.opened.Load() && !l.storage.pending.Load() {
		return nil
	}
	l.storage.startMu.Lock()
	defer l.storage.startMu.Unlock()
	if !l.opened.Load() {
		if err := l.openFile(); err != nil {
			if !errors.Is(err, ErrStorage) {
				// Not the disk (another process holds the lock, say):
				// the log stays unopened and says why, once per
				// attempt; the last storage problem stays the reason.
				l.opts.Logger.Warn("checkpoint log still not opened", "err", err)
				return fmt.Errorf("checkpoint: the log is not open: %w", err)
			}
			l.storage.note(err)
			return err
		}
		if !l.storage.pending.Load() {
			l.storage.note(nil)
			l.opts.Logger.Info("checkpoint log opened: its file system takes writes again")
			return nil
		}
	}
	if !l.storage.pending.Load() {
		return nil
	}
	if l.storage.freelistOff {
		// Safe: bbolt reads it only when a write transaction commits
		// (and at open), and while the opening is pending every write
		// waits for startMu above.
		l.db.NoFreelistSync = false
	}
	if err := l.init(); err != nil {
		if l.storage.freelistOff {
			l.db.NoFreelistSync = true
		}
		err = asStorage("opening the log", err)
		l.storage.note(err)
		return err
	}
	l.storage.freelistOff = false
	recovered, err := l.recoverInflight()
	if err != nil {
		err = asStorage("returning records in progress to retrying", err)
		l.storage.note(err)
		return err
	}
	l.storage.pending.Store(false)
	l.storage.note(nil)
	l.opts.Logger.Info("checkpoint log writable again: the opening is complete")
	if recovered > 0 {
		l.opts.Logger.Warn("checkpoint records in progress at the last stop returned to retrying", "records", recovered)
	}
	return nil
}

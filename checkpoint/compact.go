package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// CompactResult reports a compaction.
type CompactResult struct {
	Before, After int64 // file sizes in bytes
}

// Compact rewrites the log at path into a fresh file without free pages
// and replaces the original with it. The log must not be open anywhere: a
// running daemon makes Compact fail with ErrLocked. The compacted copy is
// written and synced beside it (path+".compact") and then renamed over it.
func Compact(path string) (CompactResult, error) {
	var res CompactResult
	fi, err := os.Stat(path)
	if err != nil {
		return res, fmt.Errorf("checkpoint: %w", err)
	}
	res.Before = fi.Size()
	src, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: DefaultLockTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return res, fmt.Errorf("%w: %s is locked: stop the daemon before compacting", ErrLocked, path)
		}
		return res, fmt.Errorf("checkpoint: opening %s: %w", path, err)
	}
	defer src.Close()
	tmp := path + ".compact"
	_ = os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return res, fmt.Errorf("checkpoint: creating %s: %w", tmp, err)
	}
	if err := bolt.Compact(dst, src, 64<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return res, fmt.Errorf("checkpoint: compacting: %w", err)
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		os.Remove(tmp)
		return res, err
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return res, err
	}
	// One rename replaces the log with the compacted copy, atomically: no
	// moment without a log at path, when a starting daemon would create an
	// empty one. On Linux the source stays locked until then. On Windows a
	// file open anywhere cannot be replaced (Go and bbolt open files
	// without FILE_SHARE_DELETE), this process's handle included, so the
	// source is closed first; a daemon that opens the log in between makes
	// the rename fail, and the log is left as it was.
	if runtime.GOOS == "windows" {
		if err := src.Close(); err != nil {
			os.Remove(tmp)
			return res, fmt.Errorf("checkpoint: closing %s: %w", path, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("checkpoint: replacing the log with its compacted copy (the log is unchanged): %w", err)
	}
	syncDir(path)
	if fi, err := os.Stat(path); err == nil {
		res.After = fi.Size()
	}
	return res, nil
}

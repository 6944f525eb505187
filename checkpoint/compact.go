package checkpoint

import (
	"errors"
	"fmt"
	"os"
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
// running daemon makes Compact fail with ErrLocked. The original is kept
// as path+".bak" until the new file is in place and synced.
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
	// Swap while the source is still locked, so no daemon can start on the
	// old file in between.
	bak := path + ".bak"
	if err := os.Rename(path, bak); err != nil {
		os.Remove(tmp)
		return res, err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Rename(bak, path)
		return res, err
	}
	syncDir(path)
	if err := os.Remove(bak); err != nil {
		return res, err
	}
	if fi, err := os.Stat(path); err == nil {
		res.After = fi.Size()
	}
	return res, nil
}

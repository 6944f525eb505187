//go:build linux

package bench

import (
	"os"

	"golang.org/x/sys/unix"
)

// evictCache drops the file's pages from the page cache, so that the next
// read of it comes from the disk, as after a reboot or a failover.
// Dirty pages are written first (DONTNEED drops only clean pages).
func evictCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

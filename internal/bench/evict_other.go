//go:build !linux

package bench

import "errors"

// evictCache cannot drop the page cache on this platform.
func evictCache(string) error {
	return errors.New("dropping a file from the page cache is only implemented on Linux")
}

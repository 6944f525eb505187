//go:build !linux && !darwin

package daemon

// freeBytes is unknown here.
func freeBytes(string) (uint64, bool) { return 0, false }

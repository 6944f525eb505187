package checkpoint

import "syscall"

// Windows reports a full disk with its own codes, not ENOSPC.
func init() {
	storageErrnos = append(storageErrnos,
		struct {
			errno syscall.Errno
			kind  StorageKind
		}{syscall.Errno(112), StorageFull}, // ERROR_DISK_FULL
		struct {
			errno syscall.Errno
			kind  StorageKind
		}{syscall.Errno(39), StorageFull}, // ERROR_HANDLE_DISK_FULL
	)
}

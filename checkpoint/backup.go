package checkpoint

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the log to w while it stays in use:
// one read transaction, so appends and settlements go on meanwhile and the
// copy is the log as of one commit. It returns the bytes written. The copy
// holds the payloads as stored: encrypted when the log is, so it needs the
// same key to be read.
func (l *Log) Backup(w io.Writer) (int64, error) {
	var n int64
	err := l.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// BackupFile writes a consistent copy of the log to path: into a temporary
// file beside it, fsynced, then renamed, so that path never holds half a
// copy. An existing path is not overwritten.
func (l *Log) BackupFile(path string) (int64, error) {
	return WriteFileAtomic(path, func(w io.Writer) (int64, error) { return l.Backup(w) })
}

// WriteFileAtomic creates path with what write writes, through a temporary
// file in the same directory (fsynced, then renamed, then the directory
// fsynced). It refuses to replace an existing file.
func WriteFileAtomic(path string, write func(io.Writer) (int64, error)) (int64, error) {
	if _, err := os.Lstat(path); err == nil {
		return 0, fmt.Errorf("checkpoint: %s exists; choose a new name for the backup", path)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".ehrbridge-backup-*")
	if err != nil {
		return 0, fmt.Errorf("checkpoint: backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	n, err := write(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err != nil {
		return n, fmt.Errorf("checkpoint: backup: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil { // no replace: fails if path appeared meanwhile
		return n, fmt.Errorf("checkpoint: backup: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return n, nil
}

//go:build !windows

package checkpoint

import (
	"fmt"
	"os"
)

// CheckKeyFile refuses a key file that group or others may read or write,
// as ssh refuses such private keys: whoever can read it reads every
// payload. It names the file and its mode, never its contents. On
// Windows, where modes do not express ACLs, it checks nothing (the
// installer takes inherited permissions off the data and key
// directories; see installer/packaging/windows).
func CheckKeyFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil // reading it reports the problem
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("key file %s has mode %#o, readable or writable by group or others: refused (as ssh refuses such keys); chmod 600 it (owner only)", path, perm)
	}
	return nil
}

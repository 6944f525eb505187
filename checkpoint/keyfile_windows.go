package checkpoint

// CheckKeyFile checks nothing on Windows: file modes do not express ACLs.
// The installer takes inherited permissions off the data directory and the
// key files (installer/packaging/windows/install.ps1).
func CheckKeyFile(path string) error { return nil }

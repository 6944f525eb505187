package configvalue

// Reporter receives the problems a settings type finds in its own values
// (a Validate method). Keys are relative to the section being validated:
// "smart_key_file", or "" for the section itself. The config loader turns
// each problem into "file:line:col: section.key: message" and reports every
// problem of the file at once.
type Reporter interface {
	// Add reports a problem about the key (relative to the section).
	Add(key, format string, args ...any)
	// Show quotes the string value written at key for a message, or hides
	// it when it came from the environment (it may be a secret).
	Show(key, value string) string
	// Readable reports a problem when file, named at key, cannot be read
	// (resolved as the config loader resolves paths); "" is not checked.
	Readable(key, file string)
}

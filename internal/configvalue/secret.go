package configvalue

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
)

// SecretRef says where a secret is, never what it is. A field of this type
// tagged `yaml:"password"` is decoded from the keys password_env (the name
// of an environment variable) and password_file (a file path, resolved
// against the config file's directory); the key password itself is
// rejected so that secrets never sit in the config file. At most one of Env
// and File is set; both empty means the secret is not configured.
//
// Because a SecretRef holds only a name or a path, printing or logging it
// cannot leak the secret; String, GoString, MarshalText and LogValue still
// print it marked "[redacted ...]" so logs make clear a secret is involved.
type SecretRef struct {
	Env  string
	File string

	// Key is the YAML key the reference was declared under ("hash_key"),
	// so errors name the setting the operator has to fix. The config
	// loader sets it; it is never read from the file.
	Key string
}

// IsSet reports whether the secret is configured.
func (s SecretRef) IsSet() bool { return s.Env != "" || s.File != "" }

// Resolve returns the secret: the environment variable's value, or the
// file's contents without one trailing newline (which editors and
// `echo >` add). An empty secret is an error, as is an unset reference.
// Errors name the reference but never contain the value.
func (s SecretRef) Resolve() (string, error) {
	switch {
	case s.Env != "" && s.File != "":
		return "", fmt.Errorf("secret %s: set only one of %s and %s", s.label(""), s.label("env"), s.label("file"))
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return "", fmt.Errorf("secret %s: environment variable %s is not set", s.label("env"), s.Env)
		}
		if v == "" {
			return "", fmt.Errorf("secret %s: environment variable %s is empty", s.label("env"), s.Env)
		}
		return v, nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("secret %s: cannot read %q: %s", s.label("file"), s.File, FileErrText(err))
		}
		v := strings.TrimSuffix(string(b), "\n")
		v = strings.TrimSuffix(v, "\r")
		if v == "" {
			return "", fmt.Errorf("secret %s: file %q is empty", s.label("file"), s.File)
		}
		return v, nil
	}
	return "", fmt.Errorf("secret %s: neither %s nor %s is set", s.label(""), s.label("env"), s.label("file"))
}

// label names the key behind the reference in errors ("hash_key_env").
func (s SecretRef) label(kind string) string {
	base := s.Key
	if base == "" {
		base = "secret"
	}
	if kind == "" {
		return base
	}
	return base + "_" + kind
}

// String returns "[redacted]" followed by where the secret comes from.
func (s SecretRef) String() string {
	var parts []string
	if s.Env != "" {
		parts = append(parts, "env:"+s.Env)
	}
	if s.File != "" {
		parts = append(parts, "file:"+s.File)
	}
	if len(parts) == 0 {
		return "[redacted]"
	}
	return "[redacted " + strings.Join(parts, " ") + "]"
}

// GoString makes %#v print the same as String instead of the struct.
func (s SecretRef) GoString() string { return s.String() }

// MarshalText makes encoders (JSON, YAML, text) print the same as String.
func (s SecretRef) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue makes slog print the same as String.
func (s SecretRef) LogValue() slog.Value { return slog.StringValue(s.String()) }

var (
	_ fmt.Stringer   = SecretRef{}
	_ fmt.GoStringer = SecretRef{}
	_ slog.LogValuer = SecretRef{}
)

// FileErrText describes why a file cannot be read without repeating the
// path, which callers already quote as written in the config.
func FileErrText(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// CheckReadable reports why path cannot be read, or "" if it can. It does
// not read the contents, and refuses anything but regular files so that a
// FIFO or device cannot block or flood the check.
func CheckReadable(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return FileErrText(err)
	}
	if fi.IsDir() {
		return "is a directory"
	}
	if !fi.Mode().IsRegular() {
		return "not a regular file"
	}
	f, err := os.Open(path)
	if err != nil {
		return FileErrText(err)
	}
	f.Close()
	return ""
}

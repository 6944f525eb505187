// Package config loads ehrbridge's YAML configuration file strictly and
// reports every problem in it at once, each as "file:line:col: message", so
// an operator can fix a broken file in one pass instead of one error per
// restart.
//
// # Loading
//
// [Load] (or [Parse] for bytes already read) runs these steps and returns
// either a complete [Config] or a [Problems] error, never both:
//
//  1. YAML parsing (one document only; an empty file is an empty mapping).
//  2. Environment expansion of scalar values, never of keys (see below).
//  3. Strict decoding: unknown keys, duplicate keys, wrong types and missing
//     required keys are problems. A null value (~ or nothing) leaves the
//     default in place. Aliases and merge keys (<<: *base) are supported;
//     top-level keys starting with "x-" are ignored so anchors can be
//     defined there.
//  4. Defaults for everything the file leaves out (see [Default]).
//  5. Validation of values and of cross-field rules.
//
// # Environment references
//
// Scalar values may contain ${NAME}, which is replaced by the variable's
// value and is a problem when NAME is unset, and ${NAME:-default}, which uses
// default when NAME is unset or empty (shell semantics). The default is taken
// literally up to the first "}", so references do not nest. "$$" is a literal
// "$", and a "$" followed by anything else is kept as is. Expansion happens
// before type conversion, so "${PORT:-2575}" can feed an integer. When a
// reference expands to the empty string in a value that is not a string (an
// integer, duration, ...), the key is treated as null and keeps its default.
// Problems never show a value that came from the environment, since it may
// be a secret.
//
// # Paths
//
// Relative file paths (data_dir, a log.output file, TLS files, *_file
// secret references) are resolved against the directory of the config file,
// not the process's working directory, so the same file works whatever
// directory the daemon starts in. A loaded Config holds the resolved paths;
// problems quote the paths as written in the file.
//
// # Secrets
//
// Secrets are never written in the file. A [SecretRef] field tagged
// `yaml:"name"` is decoded from the keys name_env (an environment variable
// name) and name_file (a file path); the key name itself is rejected, as are
// other keys that look like inline secrets (password, token, ...). Load
// checks that a referenced variable is set and that a referenced file is
// readable; [SecretRef.Resolve] reads the value when it is needed, so the
// value is never held in a Config and cannot be printed with it.
//
// # Transport security
//
// Validation refuses a plaintext listener on an address that is not
// loopback (127.0.0.0/8, ::1, "localhost"; "", 0.0.0.0 and :: are not), an
// http:// URL to a host that is not loopback, and write-back MLLP without
// TLS to such a host, unless the section of the address or URL sets
// [InsecureKey] (insecure_plaintext: true). [Config.Insecure] lists the
// opt-outs in use, by key path only, for the daemon's start-up warning and
// /status; an opt-out that excuses nothing is a problem.
//
// # Positions for later checks
//
// A Config remembers where each key was written, by dotted path such as
// "sources.mllp[0].listen"; [Config.Pos] and [Config.Problem] let other
// packages report their own findings at the right place.
package config

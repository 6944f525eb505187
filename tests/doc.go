// Package tests holds the end-to-end tests of ehrbridge: each builds the
// binary once (TestMain) and runs it as a process (`ehrbridge run`,
// `ehrbridge sandbox`, the log and send commands) against the embedded or a
// separately running CRM sandbox, real peers and the public corpus in the
// shared folder (found through internal/shared, so the tests run from a
// clean clone with ../shared beside it). Among them are the crash tests
// (SIGKILL during traffic), the exactly-once and write-back chaos runs
// (`make chaos` at scale), full disk, upgrade, FHIR, reload and the log's
// access control.
//
// The harness: binary_test.go builds and runs the binary, ports_test.go
// hands out free ports on 127.0.0.1, daemon_test.go starts, restarts,
// kills and stops daemons and the sandbox. Tests of the CLI's functions in
// process stay beside them in cmd/ehrbridge.
//
// The package has no code besides its tests.
package tests

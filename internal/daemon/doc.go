// Package daemon wires a loaded configuration into running parts: the MLLP
// sources and the admin HTTP endpoint. It binds every listener before it
// reports readiness, and shuts down in two phases: intake stops first, then
// in-flight work gets a deadline to finish.
//
// A full (or read-only) data directory degrades it, it does not stop it:
// the listeners serve, what cannot be stored is answered AE, /readyz
// answers 503 with the reason, and storageLoop retries the log's refused
// writes until they succeed (storage.go).
package daemon

// Package daemon is the composition root: it turns a loaded configuration
// into a table of named parts (parts.go) — the mapping set, the checkpoint
// log, the admin endpoint, the background loops, the FHIR clients, the CRM
// side and the intake (MLLP and FHIR sources) — started in that order and
// stopped in reverse. A part that fails to start has the parts started
// before it stopped in reverse, so a failed start leaves no listener bound.
// It binds every listener before it reports readiness, and the reverse stop
// is the two-phase shutdown exactly-once needs: intake stops first, then
// the pipeline drains within a deadline, the log closes last.
//
// A full (or read-only) data directory degrades it, it does not stop it:
// the listeners serve, what cannot be stored is answered AE, /readyz
// answers 503 with the reason, and storageLoop retries the log's refused
// writes until they succeed (storage.go).
package daemon

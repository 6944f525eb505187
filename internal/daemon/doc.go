// Package daemon wires a loaded configuration into running parts: the MLLP
// sources and the admin HTTP endpoint. It binds every listener before it
// reports readiness, and shuts down in two phases: intake stops first, then
// in-flight work gets a deadline to finish.
package daemon

// Package admin is the daemon's admin HTTP endpoint: /healthz, /readyz,
// /status (JSON), /metrics (Prometheus), the status page and the log API
// (internal/logadmin), served on loopback TCP (TLS optional) and on the
// admin socket (Linux) or named pipe (Windows), with access by role.
//
// It reads the running daemon only through Status, which the daemon
// implements by asking each of its parts for its status, and through the
// checkpoint log's own methods: counts, states, names and addresses, never
// message content.
package admin

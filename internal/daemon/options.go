package daemon

// StartOptions are choices made on the command line for one start.
type StartOptions struct {
	// AcceptCRMChange lets the daemon start against a CRM other than the
	// one the log's pending records were queued for (run
	// --accept-crm-change): they go to the configured one.
	AcceptCRMChange bool
}

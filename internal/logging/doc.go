// Package logging builds ehrbridge's structured loggers and enforces the rule
// that patient data (PHI) never reaches a log.
//
// # Redaction policy: deny by default
//
// Every logger built by [New] is wrapped in the handler returned by
// [NewRedactingHandler]. It rewrites every attribute (those passed to a log
// call, those added with Logger.With, those inside groups and those produced
// by a [slog.LogValuer]) before the underlying text or JSON handler sees it:
//
//   - A string passes only if its attribute key is in the allowlist
//     ([SafeKeys] plus [Options.SafeKeys]); any other string is logged as
//     [RedactedText]. The allowlist holds keys whose values are configuration,
//     enumerations or protocol codes, never data copied from a message.
//     Keys are matched on the attribute's own name, whatever group it is in.
//   - Integers, floats, booleans, durations and times pass, so counts, sizes
//     and latencies stay visible.
//   - An error passes as its Error() text, capped at 512 bytes. ehrbridge
//     packages guarantee PHI-free error strings; as a safety net, error text
//     that looks like HL7 message content (a '|' followed later by a '^', or
//     a segment-like "PID|") is replaced as a whole.
//   - A [Key] is logged as a keyed hash ("k_" + 16 hex digits, see [Hash]),
//     under any attribute key. Use it for record keys, lane keys and any
//     identifier that must be correlated across log lines.
//   - A [Safe] string passes under any attribute key.
//   - A [PHI] string is always redacted; it documents intent.
//   - Anything else (structs, maps, slices, []byte, fmt.Stringer, nil-typed
//     values) is redacted. LogValuers are resolved first and the result is
//     judged by the same rules.
//
// Strings that pass (allowlisted keys and [Safe]) are still checked for HL7
// message content and replaced if it is found; like the error check, this is
// a tripwire for bugs, not the policy.
//
// # What callers must do
//
// The record message, group names and attribute keys are logged as is, so the
// message must be a constant: never build it with fmt.Sprintf from data.
// Pass errors as error values (slog.Any("err", err)), not as err.Error()
// strings, which would be redacted. Never log patient identifiers or dates as
// numbers or time.Time values, which pass unchanged: wrap identifiers in
// [Key]. Never wrap message data in [Safe].
//
// # Servers, panics and repeated failures
//
// net/http writes its own lines (TLS handshake errors, handler panics with
// their values) to http.Server.ErrorLog as text, which slog.NewLogLogger
// would log as the record message, unredacted: give servers
// [NewHTTPErrorLog] instead. A recovered panic is logged with [PanicAttrs]
// (its type and where it was raised), never its value. A failure a peer
// can repeat at will, such as a failed TLS handshake, goes through a
// [PeerLimiter]: one line per peer host per minute, with a count.
//
// # Hash keys
//
// Hashes are HMAC-SHA256 under [Options.HashKey], so a log reader cannot
// confirm a guessed MRN without the key. When no key is configured a random
// key is generated once per process: hashes then correlate only within one
// process run. Configure log.hash_key_env for hashes that are stable across
// restarts and that admin tools can recompute with [Hash].
package logging

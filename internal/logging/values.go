package logging

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sync"
)

// RedactedText replaces every value the redacting handler refuses to log.
const RedactedText = "[redacted]"

// Replacement texts for values that were allowed by type or key but tripped
// the message-data check; distinct from RedactedText so an operator can tell
// a bug (data where none was expected) from normal redaction.
const (
	errorMessageDataText = "[redacted: error text contained message data]"
	valueMessageDataText = "[redacted: value contained message data]"
	errorUnavailableText = "[redacted: error text unavailable]"
)

// Key is an identifier (record key, lane key, MRN) that is logged as a keyed
// hash so that log lines can be correlated without revealing the value.
type Key string

// LogValue renders a Key outside a redacting handler; without the hash key
// there is no safe way to show it, so it is redacted.
func (Key) LogValue() slog.Value { return slog.StringValue(RedactedText) }

// Safe is text that code has vetted as free of patient data, such as a
// configuration value; it is logged under any attribute key. It must never
// wrap data taken from a message.
type Safe string

// LogValue renders a Safe string as is.
func (s Safe) LogValue() slog.Value { return slog.StringValue(string(s)) }

// PHI marks a value as patient data; it is always logged as RedactedText.
// Logging it at all is only useful to record that the value existed.
type PHI string

// LogValue renders PHI as RedactedText, so it stays hidden even when logged
// through a handler that does not redact.
func (PHI) LogValue() slog.Value { return slog.StringValue(RedactedText) }

// hashHexLen is 64 bits of HMAC output: enough to make accidental collisions
// between records negligible in a log search, short enough to read.
const hashHexLen = 16

// Hash returns the text the redacting handler logs for Key(s) under hashKey,
// so tests and admin tools can find a record's lines from its key. An empty
// hashKey is accepted but gives hashes anyone can recompute; the handler
// itself never uses one.
func Hash(hashKey []byte, s string) string {
	m := hmac.New(sha256.New, hashKey)
	m.Write([]byte(s))
	var sum [sha256.Size]byte
	return formatHash(m.Sum(sum[:0]))
}

func formatHash(sum []byte) string {
	var buf [2 + hashHexLen]byte
	buf[0], buf[1] = 'k', '_'
	hex.Encode(buf[2:], sum[:hashHexLen/2])
	return string(buf[:])
}

// processHashKey is shared by all handlers without a configured key so that
// hashes from different loggers of one process still correlate.
var processHashKey = sync.OnceValue(func() []byte {
	k := make([]byte, 32)
	// crypto/rand.Read never returns an error; it aborts the process
	// instead, which is the right outcome if the kernel has no entropy.
	_, _ = rand.Read(k)
	return k
})

// SafeKeys returns the default allowlist of attribute keys whose string
// values are logged. The result is a fresh copy that callers may modify.
func SafeKeys() []string {
	return []string{
		// Configuration: names and addresses chosen by the operator.
		"source",    // configured sending-system name, not MSH-3 text
		"connector", // configured CRM connector name
		"component", // subsystem name set in code
		"service",   // service name set in code
		"config",    // path of the daemon's own config file
		"listen",    // configured listen address
		"addr",      // configured or dialled network address
		"remote",    // peer network address of an MLLP connection
		"tls",       // TLS mode or negotiated version
		"level",     // log level name

		// Build information.
		"version",    // ehrbridge or HL7 version identifier
		"go_version", // toolchain version
		"commit",     // VCS revision

		// Enumerations and protocol codes with a fixed, small value set.
		"msg_type",    // HL7 message type code (MSH-9.1), e.g. ADT
		"trigger",     // HL7 trigger event code (MSH-9.2), e.g. A08
		"ack_code",    // HL7 acknowledgment code, e.g. AA, AE, AR
		"charset",     // HL7 character set code (MSH-18)
		"state",       // internal state-machine state name
		"reason_code", // internal reason code
		"error_code",  // internal error code
		"op",          // internal operation name
		"method",      // HTTP method of a CRM call
		"status",      // HTTP status or outcome enumeration of a CRM call
		"object",      // CRM object type name, never an object's contents
		"signal",      // OS signal name

		// Deliberately absent: "file" and "path" (sample and mapping
		// file names can be patient names) and "lane" (a lane is a
		// patient identity; log it as a Key).
	}
}

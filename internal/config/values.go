package config

import "github.com/ehrbridge/ehrbridge/internal/configvalue"

// The value types sections share live in configvalue, so that the
// components' settings types, declared once beside their code, can use
// them; these aliases keep their names in this package.
type (
	// Duration is [configvalue.Duration].
	Duration = configvalue.Duration
	// ByteSize is [configvalue.ByteSize].
	ByteSize = configvalue.ByteSize
	// SecretRef is [configvalue.SecretRef].
	SecretRef = configvalue.SecretRef
	// TLSServer is [configvalue.TLSServer].
	TLSServer = configvalue.TLSServer
	// TLSClient is [configvalue.TLSClient].
	TLSClient = configvalue.TLSClient
)

// Common sizes.
const (
	KiB = configvalue.KiB
	MiB = configvalue.MiB
	GiB = configvalue.GiB
)

// errNoUnit is returned for a bare number where a duration is expected.
var errNoUnit = configvalue.ErrNoUnit

func parseDuration(s string) (Duration, error) { return configvalue.ParseDuration(s) }
func parseByteSize(s string) (ByteSize, error) { return configvalue.ParseByteSize(s) }
func fileErrText(err error) string             { return configvalue.FileErrText(err) }
func checkReadable(path string) string         { return configvalue.CheckReadable(path) }

// Package configvalue holds the value types that configuration sections
// share, so that each component can declare its own settings type once,
// with yaml tags, and internal/config can decode it in place: a secret
// reference ([SecretRef], written name_env / name_file and read only when
// needed), [Duration] and [ByteSize] as people write them ("30s", "7d",
// "10MiB"), the TLS settings of a listener and of an outgoing connection
// ([TLSServer], [TLSClient]), and the [Reporter] a settings type's
// Validate method reports its problems to.
//
// It is a top-level package, not under internal/, because the connectors'
// settings types are built from it and connectors import nothing from
// internal/ but shared helpers; it depends on the standard library only.
// Decoding, environment expansion, file:line:col positions and path
// resolution stay in internal/config.
package configvalue

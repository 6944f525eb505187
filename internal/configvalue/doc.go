// Package configvalue holds the value types that configuration sections
// share, so that each component can declare its own settings type once,
// with yaml tags, and internal/config can decode it in place: a secret
// reference ([SecretRef], written name_env / name_file and read only when
// needed), [Duration] and [ByteSize] as people write them ("30s", "7d",
// "10MiB"), the TLS settings of a listener and of an outgoing connection
// ([TLSServer], [TLSClient]) and the tls.Config each builds (every
// listener's, allowed_clients enforced by [AllowClients], and the peer
// identity listeners log, [PeerIdentity]), and the [Reporter] a settings
// type's Validate method reports its problems to.
//
// It is one of the shared helpers under internal/ that connectors may
// import (like internal/logging): the connectors' settings types are
// built from it. It depends on the standard library only.
// Decoding, environment expansion, file:line:col positions and path
// resolution stay in internal/config.
package configvalue

// Package mllp carries HL7 v2 messages over the Minimal Lower Layer Protocol:
// each message framed as <VT> payload <FS><CR> on a TCP (optionally TLS)
// stream.
//
// The Reader is lenient in what it accepts, as senders in the field demand:
// frames split across reads and several frames in one read, a payload
// without a CR before the end block, an end block without the trailing CR,
// and junk between frames (skipped and counted). A start block inside a
// frame abandons the partial frame: the sender restarted. Frames larger
// than the configured maximum are discarded up to their end block and
// reported as a FrameTooLargeError carrying the frame's first line, so the
// receiver can still address a rejection to the sender; the stream stays
// usable.
//
// The Server runs one goroutine per connection and answers frames on a
// connection in order. It knows nothing of HL7 beyond framing: a Handler
// turns each frame into the bytes of its acknowledgment, a ReplyHandler
// into any number of frames (an enhanced-mode commit acknowledgment and
// application acknowledgment, or none) and whether to close.
//
// The Client keeps one connection open and matches acknowledgments to
// messages by MSA-2 = MSH-10, waiting for exactly the answers a message's
// MSH-15/MSH-16 ask for (original mode: the application acknowledgment,
// past a commit acknowledgment CA). A try that ends without an
// acknowledgment (refused, closed or reset by the receiver) is a failure:
// the client reconnects and resends after an exponential backoff with
// jitter that only an acknowledgment resets, and a Send gives up with a
// *SendError after its attempts or its timeout.
//
// Over TLS, the Server logs each client that presents a certificate
// (mutual TLS) at INFO with its identity (configvalue.PeerIdentity:
// subject CN, DNS and URI names) and address. The tls.Config is the
// caller's: a listener configured by a tls section gets it from
// configvalue.TLSServer.Config, whose allowed_clients
// (configvalue.AllowClients) narrow the clients that the ClientCAs admit
// to an exact list of those names, as on every other listener. Failed
// handshakes are logged at most once a minute per client host
// (Server.HandshakeLogInterval), with their count and the last reason. A
// handler's panic closes its connection and is logged with the panic's
// type and the function that raised it, never its value.
package mllp

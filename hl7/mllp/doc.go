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
// The Client keeps one connection open, reconnects with exponential
// backoff, and matches acknowledgments to messages by MSA-2 = MSH-10,
// waiting past an enhanced-mode commit acknowledgment (CA) for the
// application acknowledgment.
package mllp

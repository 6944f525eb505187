package checkpoint

import (
	"errors"
	"sync"

	"github.com/klauspost/compress/s2"
)

// Payloads are compressed with S2 (a faster Snappy) before they are
// sealed. HL7 v2 messages shrink to about two fifths (the public corpus:
// 0.39), so a record takes fewer bbolt pages: each commit writes and
// fsyncs less, and the file grows more slowly. S2 costs about 1.5 µs per
// kilobyte on the sender's goroutine; zstd would shrink a little more
// (0.29) at six times the CPU, which the ingest path cannot spare.
const (
	// minCompress is the smallest payload worth compressing.
	minCompress = 128
	// maxPayload bounds a stored payload's length as recorded.
	maxPayload = 1 << 30
)

// compressTo returns p compressed, or false when that would not save at
// least a sixteenth of it. It writes into dst's storage when that is large
// enough, and into a new slice otherwise.
func compressTo(dst, p []byte) ([]byte, bool) {
	if len(p) < minCompress || len(p) > maxPayload {
		return nil, false
	}
	if n := s2.MaxEncodedLen(len(p)); cap(dst) >= n {
		dst = dst[:n]
	} else {
		dst = make([]byte, n)
	}
	c := s2.Encode(dst, p)
	if len(c) > len(p)-len(p)/16 {
		return nil, false
	}
	return c, true
}

// compressBufs holds the scratch buffers Append compresses into: the
// compressed payload is copied into the record (or sealed) at once, so
// the buffer goes back for the next append instead of to the collector.
// Buffers grown past maxPooledCompress by a large message are dropped.
var compressBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledCompress = 64 << 10

var errDecompress = errors.New("checkpoint: compressed payload is damaged")

// decompressPayload reverses compressTo; n is the payload's recorded
// length, which the result must have.
func decompressPayload(c []byte, n int) ([]byte, error) {
	if got, err := s2.DecodedLen(c); err != nil || got != n || n > maxPayload {
		return nil, errDecompress
	}
	out, err := s2.Decode(make([]byte, n), c)
	if err != nil || len(out) != n {
		return nil, errDecompress
	}
	return out, nil
}

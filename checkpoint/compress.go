package checkpoint

import (
	"errors"

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

// compressPayload returns p compressed, or false when that would not save
// at least a sixteenth of it.
func compressPayload(p []byte) ([]byte, bool) {
	if len(p) < minCompress || len(p) > maxPayload {
		return nil, false
	}
	c := s2.Encode(make([]byte, 0, s2.MaxEncodedLen(len(p))), p)
	if len(c) > len(p)-len(p)/16 {
		return nil, false
	}
	return c, true
}

var errDecompress = errors.New("checkpoint: compressed payload is damaged")

// decompressPayload reverses compressPayload; n is the payload's recorded
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

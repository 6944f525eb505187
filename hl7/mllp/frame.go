package mllp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Framing bytes.
const (
	StartBlock = 0x0B // VT
	EndBlock   = 0x1C // FS
	CR         = 0x0D
)

// DefaultMaxFrameSize is the largest frame accepted unless configured.
const DefaultMaxFrameSize = 10 << 20

// headSize bounds how much of an oversized frame is kept for addressing a
// rejection: enough for any real MSH segment.
const headSize = 4096

// FrameTooLargeError reports a frame that exceeded the maximum size. It was
// read to its end block and discarded; Head holds its first line (at most
// 4 KiB) so that the receiver can address a rejection to the sender.
type FrameTooLargeError struct {
	Max  int
	Size int64 // bytes received before the end block
	Head []byte
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("mllp: frame of %d bytes exceeds the maximum of %d bytes", e.Size, e.Max)
}

// ErrIncompleteFrame is returned when the stream ends inside a frame.
var ErrIncompleteFrame = errors.New("mllp: stream ended inside a frame")

// Reader reads MLLP frames from a stream.
type Reader struct {
	br  *bufio.Reader
	max int
	// OnFrameStart, when set, is called as soon as a start block is seen,
	// so that a server can switch from its idle timeout to its read timeout.
	OnFrameStart func()
	junk         int64
}

// NewReader returns a Reader that accepts frames of at most maxSize bytes of
// payload (DefaultMaxFrameSize if maxSize <= 0).
func NewReader(r io.Reader, maxSize int) *Reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxFrameSize
	}
	return &Reader{br: bufio.NewReaderSize(r, 64<<10), max: maxSize}
}

// Skipped returns how many bytes outside frames were skipped so far, not
// counting CR and LF, which senders commonly put between frames.
func (r *Reader) Skipped() int64 { return r.junk }

// ReadFrame returns the payload of the next frame, in a new slice. It
// returns io.EOF when the stream ends between frames, ErrIncompleteFrame
// when it ends inside one, and a *FrameTooLargeError (after which the
// Reader remains usable) for an oversized frame.
func (r *Reader) ReadFrame() ([]byte, error) {
	if err := r.skipToStart(); err != nil {
		return nil, err
	}
	if r.OnFrameStart != nil {
		r.OnFrameStart()
	}
	var (
		payload []byte
		size    int64
		tooBig  bool
	)
	for {
		chunk, err := r.fill()
		if err != nil {
			if err == io.EOF {
				return nil, ErrIncompleteFrame
			}
			return nil, err
		}
		i := indexBlock(chunk)
		end := len(chunk)
		if i >= 0 {
			end = i
		}
		data := chunk[:end]
		size += int64(len(data))
		switch {
		case tooBig:
		case size > int64(r.max):
			tooBig = true
			payload = appendHead(payload[:min(len(payload), headSize)], data)
		default:
			payload = append(payload, data...)
		}
		if i < 0 {
			r.discard(len(chunk))
			continue
		}
		r.discard(i + 1)
		if chunk[i] == StartBlock {
			// A new start block: the sender gave up on the previous frame.
			r.junk += size
			payload, size, tooBig = payload[:0], 0, false
			if r.OnFrameStart != nil {
				r.OnFrameStart()
			}
			continue
		}
		r.skipTrailingCR()
		if tooBig {
			return nil, &FrameTooLargeError{Max: r.max, Size: size, Head: firstLine(payload)}
		}
		if payload == nil {
			payload = []byte{}
		}
		return payload, nil
	}
}

// indexBlock returns the index of the first start or end block in b, or
// -1. Two IndexByte scans are vectorised; bytes.IndexAny with two bytes
// goes byte by byte, at 3x the cost per frame.
func indexBlock(b []byte) int {
	end := bytes.IndexByte(b, EndBlock)
	if end < 0 {
		return bytes.IndexByte(b, StartBlock)
	}
	if i := bytes.IndexByte(b[:end], StartBlock); i >= 0 {
		return i
	}
	return end
}

// skipToStart discards bytes up to and including the next start block.
func (r *Reader) skipToStart() error {
	for {
		chunk, err := r.fill()
		if err != nil {
			return err
		}
		i := bytes.IndexByte(chunk, StartBlock)
		n := len(chunk)
		if i >= 0 {
			n = i
		}
		for _, c := range chunk[:n] {
			if c != CR && c != '\n' {
				r.junk++
			}
		}
		if i >= 0 {
			r.discard(i + 1)
			return nil
		}
		r.discard(n)
	}
}

// skipTrailingCR consumes the CR after an end block if it has already
// arrived. It never waits for it: a sender that omits it and waits for the
// acknowledgment must not be left hanging.
func (r *Reader) skipTrailingCR() {
	if r.br.Buffered() == 0 {
		return
	}
	if b, err := r.br.Peek(1); err == nil && b[0] == CR {
		r.discard(1)
	}
}

// fill returns the buffered bytes, reading more if none are buffered.
func (r *Reader) fill() ([]byte, error) {
	if r.br.Buffered() == 0 {
		if _, err := r.br.Peek(1); err != nil {
			return nil, err
		}
	}
	return r.br.Peek(r.br.Buffered())
}

func (r *Reader) discard(n int) {
	_, _ = r.br.Discard(n) // n bytes are buffered: Discard cannot fail
}

func appendHead(head, data []byte) []byte {
	if room := headSize - len(head); room > 0 {
		if len(data) > room {
			data = data[:room]
		}
		head = append(head, data...)
	}
	return head
}

func firstLine(b []byte) []byte {
	if len(b) > headSize {
		b = b[:headSize]
	}
	if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
		b = b[:i]
	}
	return append([]byte(nil), b...)
}

// AppendFrame appends payload framed as <VT> payload <FS><CR> to dst.
func AppendFrame(dst, payload []byte) []byte {
	dst = append(dst, StartBlock)
	dst = append(dst, payload...)
	return append(dst, EndBlock, CR)
}

// WriteFrame writes payload as one frame in a single Write call, so the
// frame is not split into several TCP segments by the writer.
func WriteFrame(w io.Writer, payload []byte) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, len(payload)+3), payload))
	return err
}

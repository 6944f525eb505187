package mllp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func frames(t *testing.T, r io.Reader, max int) ([]string, error) {
	t.Helper()
	rd := NewReader(r, max)
	var out []string
	for {
		p, err := rd.ReadFrame()
		if err != nil {
			return out, err
		}
		out = append(out, string(p))
	}
}

func TestReadFrame(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  []string
		err   error
		junk  int64
		split bool // deliver one byte per Read
	}{
		{name: "one", in: "\x0bMSH|A\r\x1c\r", want: []string{"MSH|A\r"}, err: io.EOF},
		{name: "no CR before end block", in: "\x0bMSH|A\x1c\r", want: []string{"MSH|A"}, err: io.EOF},
		{name: "no CR after end block", in: "\x0bA\x1c\x0bB\x1c", want: []string{"A", "B"}, err: io.EOF},
		{name: "pipelined", in: "\x0bA\r\x1c\r\x0bB\r\x1c\r\x0bC\r\x1c\r", want: []string{"A\r", "B\r", "C\r"}, err: io.EOF},
		{name: "split reads", in: "\x0bMSH|A\rPID|1\r\x1c\r\x0bX\x1c\r", want: []string{"MSH|A\rPID|1\r", "X"}, err: io.EOF, split: true},
		{name: "junk skipped", in: "garbage\x0bA\x1c\rmore\r\n\x0bB\x1c\r", want: []string{"A", "B"}, err: io.EOF, junk: 11},
		{name: "newlines between frames are not junk", in: "\r\n\x0bA\x1c\r\r\n", want: []string{"A"}, err: io.EOF},
		{name: "restart inside frame", in: "\x0bpartial\x0bA\x1c\r", want: []string{"A"}, err: io.EOF, junk: 7},
		{name: "empty frame", in: "\x0b\x1c\r", want: []string{""}, err: io.EOF},
		{name: "truncated", in: "\x0bMSH|A", err: ErrIncompleteFrame},
		{name: "nothing", in: "", err: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r io.Reader = strings.NewReader(tt.in)
			if tt.split {
				r = iotest.OneByteReader(r)
			}
			rd := NewReader(r, 0)
			var got []string
			var err error
			for {
				var p []byte
				p, err = rd.ReadFrame()
				if err != nil {
					break
				}
				got = append(got, string(p))
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("err = %v, want %v", err, tt.err)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("frames = %q, want %q", got, tt.want)
			}
			if rd.Skipped() != tt.junk {
				t.Errorf("skipped = %d, want %d", rd.Skipped(), tt.junk)
			}
		})
	}
}

func TestReadFrameTooLarge(t *testing.T) {
	big := "MSH|^~\\&|A|B\r" + strings.Repeat("OBX|1|TX|||xxxxxxxxxxxxxx\r", 200)
	in := "\x0b" + big + "\x1c\r\x0bMSH|small\x1c\r"
	rd := NewReader(iotest.HalfReader(strings.NewReader(in)), 1024)
	_, err := rd.ReadFrame()
	var tl *FrameTooLargeError
	if !errors.As(err, &tl) {
		t.Fatalf("err = %v, want FrameTooLargeError", err)
	}
	if tl.Size != int64(len(big)) || tl.Max != 1024 || string(tl.Head) != "MSH|^~\\&|A|B" {
		t.Errorf("error = %+v (head %q)", tl, tl.Head)
	}
	if !strings.Contains(tl.Error(), "exceeds the maximum of 1024 bytes") {
		t.Errorf("message = %q", tl.Error())
	}
	p, err := rd.ReadFrame()
	if err != nil || string(p) != "MSH|small" {
		t.Errorf("next frame = %q, %v; the reader must stay usable", p, err)
	}
}

func TestWriteFrame(t *testing.T) {
	var b bytes.Buffer
	if err := WriteFrame(&b, []byte("MSH|x\r")); err != nil {
		t.Fatal(err)
	}
	if b.String() != "\x0bMSH|x\r\x1c\r" {
		t.Errorf("frame = %q", b.String())
	}
}

// FuzzReadFrame: arbitrary streams never panic, frames never exceed the
// maximum, and a well-framed payload written after any junk is recovered.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte("\x0bMSH|A\r\x1c\r"), []byte("MSH|B"))
	f.Add([]byte("junk\x0b\x0b\x1c\x1c\r\r"), []byte(""))
	f.Add([]byte("\x0bpartial"), []byte("PID|1\rOBX|2"))
	f.Fuzz(func(t *testing.T, stream, payload []byte) {
		if len(stream) > 1<<16 || bytes.ContainsAny(payload, "\x0b\x1c") {
			return
		}
		const max = 512
		rd := NewReader(bytes.NewReader(stream), max)
		for {
			p, err := rd.ReadFrame()
			if err != nil {
				break
			}
			if len(p) > max {
				t.Fatalf("frame of %d bytes exceeds max %d", len(p), max)
			}
		}
		// Junk followed by a frame: the frame's payload comes out last,
		// unless the junk leaves a frame open (then it absorbs the payload
		// up to the start block, which restarts the frame).
		in := append(bytes.ReplaceAll(stream, []byte{EndBlock}, nil), AppendFrame(nil, payload)...)
		rd = NewReader(bytes.NewReader(in), 1<<20)
		var last []byte
		for {
			p, err := rd.ReadFrame()
			if err != nil {
				break
			}
			last = p
		}
		if !bytes.Equal(last, payload) {
			t.Fatalf("last frame = %q, want %q", last, payload)
		}
	})
}

func TestIndexBlock(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"", -1},
		{"MSH|^~\\&|A\r", -1},
		{"abc\x1c\r", 3},
		{"ab\x0bcd", 2},
		{"ab\x0bc\x1c", 2},
		{"ab\x1cc\x0b", 2},
		{"\x0b", 0},
		{"\x1c", 0},
	} {
		if got := indexBlock([]byte(c.in)); got != c.want {
			t.Errorf("indexBlock(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

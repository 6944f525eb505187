package ehr

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/logging"
)

// Appender is where accepted messages go: the checkpoint log. Append must
// be durable when it returns.
type Appender interface {
	Append(ctx context.Context, e checkpoint.Entry) (checkpoint.Result, error)
}

// MLLPSource turns MLLP frames into acknowledged, durably logged HL7
// messages. It answers AA only after Append returned: a retransmit gets
// the original acknowledgment's bytes again, a reused control id with
// other content gets AR, and a failed append AE.
type MLLPSource struct {
	// Name identifies the source in logs and record keys.
	Name string
	// AppName and Facility fill MSH-3 and MSH-4 of acknowledgments when the
	// inbound message leaves MSH-5 or MSH-6 empty. Default "EHRBRIDGE".
	AppName, Facility string
	// Log receives every valid message. Nil acknowledges without storing
	// (for tests of the protocol alone).
	Log Appender
	// HashIgnore lists fields left out of the content hash (see
	// ContentHash); nil means MSH-7.
	HashIgnore []hl7.Path
	// Lane, when set, gives the lane key (patient identity) from the
	// mappings; "" falls back to LaneKey.
	Lane func(*hl7.Message) string
	// Appended, when set, is called after a new record was stored (to
	// wake the pipeline).
	Appended func()
	Logger   *slog.Logger

	Accepted, Duplicates, Conflicts, Rejected, Errored atomic.Int64

	logOnce sync.Once
	log     *slog.Logger
}

// ServeMLLP implements mllp.Handler.
func (s *MLLPSource) ServeMLLP(ctx context.Context, req *mllp.Request) []byte {
	return s.handle(ctx, req)
}

func (s *MLLPSource) handle(ctx context.Context, req *mllp.Request) []byte {
	log := s.logger()
	var tooBig *mllp.FrameTooLargeError
	if errors.As(req.Err, &tooBig) {
		s.Rejected.Add(1)
		hdr, err := hl7.ParseHeader(req.Payload)
		if err != nil {
			log.Warn("oversized frame without a readable MSH; connection closed", "bytes", tooBig.Size)
			return nil
		}
		text := fmt.Sprintf("message of %d bytes exceeds the maximum of %d bytes", tooBig.Size, tooBig.Max)
		return s.reply(hdr, hdr.Header(), hl7.AR, text, []hl7.ErrDetail{{Code: hl7.ErrCodeInternal, Text: text}})
	}
	msg, err := hl7.Parse(req.Payload)
	if err != nil {
		s.Rejected.Add(1)
		hdr, herr := hl7.ParseHeader(req.Payload)
		if herr != nil {
			// Without a header there is nobody to address an ACK to; a
			// closed connection tells the sender something is wrong.
			log.Warn("frame is not an HL7 message; connection closed", "err", err, "bytes", len(req.Payload))
			return nil
		}
		hh := hdr.Header()
		detail := hl7.ErrDetail{Code: hl7.ErrCodeSegmentSequence, Text: "message could not be parsed"}
		var pe *hl7.ParseError
		if errors.As(err, &pe) {
			detail.Segment, detail.Field = pe.ID, pe.Field
			detail.Text = pe.Reason
		}
		log.Warn("hl7 message rejected: parse error", "key", s.key(hh), "err", err)
		return s.reply(hdr, hh, hl7.AR, "message could not be parsed", []hl7.ErrDetail{detail})
	}
	// The header is read once: it feeds the key, the ACK and the logs.
	h := msg.Header()
	if problems := h.Check(); len(problems) > 0 {
		s.Rejected.Add(1)
		details := make([]hl7.ErrDetail, len(problems))
		for i, p := range problems {
			details[i] = p.Detail()
		}
		log.Warn("hl7 message rejected: invalid header", "key", s.key(h), "err", problems[0], "problems", len(problems))
		return s.reply(msg, h, hl7.AR, problems[0].Reason, details)
	}
	if s.Log == nil {
		s.Accepted.Add(1)
		log.Info("hl7 message accepted (not stored)", "key", s.key(h), "msg_type", msgType(h))
		return s.reply(msg, h, hl7.AA, "", nil)
	}
	e := s.entry(msg, h, req.Payload, req.Received)
	res, err := s.Log.Append(ctx, e)
	if err != nil {
		s.Errored.Add(1)
		log.Error("hl7 message not stored; answered AE", "key", s.key(h), "msg_type", msgType(h), "err", err)
		text := "message could not be stored; please resend"
		return s.reply(msg, h, hl7.AE, text, []hl7.ErrDetail{{Code: hl7.ErrCodeInternal, Text: text}})
	}
	switch res.Outcome {
	case checkpoint.Duplicate:
		s.Duplicates.Add(1)
		log.Info("hl7 retransmit recognised; original acknowledgment sent again", "key", s.key(h), "record", res.ID)
		return res.Ack
	case checkpoint.Conflict:
		s.Conflicts.Add(1)
		log.Warn("hl7 control id reused with different content; rejected and recorded as a conflict",
			"key", s.key(h), "record", res.ID, "conflict", res.ConflictID)
		text := fmt.Sprintf("control id already used for a different message (conflict %d)", res.ConflictID)
		return s.reply(msg, h, hl7.AR, text, []hl7.ErrDetail{{Segment: "MSH", Field: 10, Code: hl7.ErrCodeDuplicateKey, Text: text}})
	}
	s.Accepted.Add(1)
	if s.Appended != nil {
		s.Appended()
	}
	log.Info("hl7 message stored and acknowledged", "key", s.key(h), "msg_type", msgType(h), "record", res.ID, "bytes", len(req.Payload))
	return e.Ack
}

// Entry is the checkpoint entry this source appends for msg, a parsed
// message whose header passed its checks, received at received: its
// record key, content hash and lane, and the AA it answers with. The
// ingest benchmark appends these directly, to measure the log without
// the network.
func (s *MLLPSource) Entry(msg *hl7.Message, payload []byte, received time.Time) checkpoint.Entry {
	return s.entry(msg, msg.Header(), payload, received)
}

func (s *MLLPSource) entry(msg *hl7.Message, h hl7.Header, payload []byte, received time.Time) checkpoint.Entry {
	return checkpoint.Entry{
		Key: RecordKey(s.Name, h), Source: s.Name, Kind: "hl7v2", Type: msgType(h),
		Hash: ContentHash(msg, s.hashIgnore()), Lane: s.laneKey(msg),
		Payload: payload, Ack: s.reply(msg, h, hl7.AA, "", nil), Received: received,
	}
}

func (s *MLLPSource) hashIgnore() []hl7.Path {
	if s.HashIgnore == nil {
		return defaultHashIgnore
	}
	return s.HashIgnore
}

var defaultHashIgnore = []hl7.Path{hl7.MustPath("MSH-7")}

// reply encodes the acknowledgment of in, whose header is h.
func (s *MLLPSource) reply(in *hl7.Message, h hl7.Header, code hl7.AckCode, text string, errs []hl7.ErrDetail) []byte {
	opts := hl7.AckOptions{}
	if h.ReceivingApp == "" {
		opts.SendingApp = cmp.Or(s.AppName, "EHRBRIDGE")
	}
	if h.ReceivingFacility == "" && s.Facility != "" {
		opts.SendingFacility = s.Facility
	}
	return hl7.BuildAck(in, code, text, errs, opts).Bytes()
}

// key is the message's record key (source | MSH-3 | MSH-4 | MSH-10), which
// is logged only as a keyed hash.
func (s *MLLPSource) key(h hl7.Header) logging.Key {
	return logging.Key(RecordKey(s.Name, h))
}

// msgType renders MSH-9 for logs. Only code-shaped values pass: a sender
// could put anything in MSH-9.
func msgType(h hl7.Header) string {
	t := h.Type
	if h.Trigger != "" {
		t += "^" + h.Trigger
	}
	if len(t) > 16 {
		return "invalid"
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '^' || c == '_') {
			return "invalid"
		}
	}
	return t
}

func (s *MLLPSource) logger() *slog.Logger {
	s.logOnce.Do(func() {
		l := s.Logger
		if l == nil {
			l = slog.Default()
		}
		s.log = l.With("source", s.Name)
	})
	return s.log
}

// laneKey is the mapping's lane key when Lane gives one, else LaneKey.
func (s *MLLPSource) laneKey(m *hl7.Message) string {
	if s.Lane != nil {
		if l := s.Lane(m); l != "" {
			return l
		}
	}
	return LaneKey(m)
}

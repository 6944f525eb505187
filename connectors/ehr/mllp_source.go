package ehr

import (
	"bytes"
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
// messages. It acknowledges acceptance only after Append returned: a
// retransmit gets the original acknowledgments' bytes again, a reused
// control id with other content is rejected, a failed append answered
// with an error.
//
// Acknowledgment modes follow MSH-15 and MSH-16 (HL7 table 0155). With
// both empty (original mode) every message gets one AA, AR or AE. When
// either is valued (enhanced mode) the commit acknowledgment (CA after the
// durable append, CE when the append failed, CR for a rejected message) is
// sent when MSH-15 asks for it (AL always, ER on error or reject only, SU
// on success only, NE or empty never), then an application acknowledgment
// when MSH-16 asks for it: AA for an accepted message (acceptance is the
// durable append, as in original mode), AR or AE for a failed one only
// when no commit acknowledgment already reported the failure. A message
// whose MSH-2 or MSH-18 cannot be read (oversized or not) is rejected,
// addressed with safe default delimiters when its own are unusable: CR
// (and what MSH-16 asks for) when its MSH-15/16 hold valid table 0155
// values, else AR in original mode, as for any message with an MSH-15/16
// outside the table. Only a frame that does not start with "MSH" and a
// field separator is answered by closing the connection.
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

var _ mllp.ReplyHandler = (*MLLPSource)(nil)

// ServeMLLP implements mllp.Handler for callers that take a single
// reply: the first frame of ServeMLLPReply's answer, nil (close) when it
// has none. An mllp.Server calls ServeMLLPReply instead.
func (s *MLLPSource) ServeMLLP(ctx context.Context, req *mllp.Request) []byte {
	r := s.ServeMLLPReply(ctx, req)
	if r.Close || len(r.Frames) == 0 {
		return nil
	}
	return r.Frames[0]
}

// ServeMLLPReply implements mllp.ReplyHandler.
func (s *MLLPSource) ServeMLLPReply(ctx context.Context, req *mllp.Request) mllp.Reply {
	frames, ok := s.handle(ctx, req)
	if !ok {
		return mllp.Reply{Close: true}
	}
	return mllp.Reply{Frames: frames}
}

// outcome is what became of a message, for choosing its acknowledgments.
type outcome uint8

const (
	accepted outcome = iota // durably stored (or a retransmit of a stored one)
	rejected                // the sender must fix it: header, structure, size, reused control id
	errored                 // not stored for a reason of ours: the sender may resend
)

func (s *MLLPSource) handle(ctx context.Context, req *mllp.Request) ([][]byte, bool) {
	log := s.logger()
	var tooBig *mllp.FrameTooLargeError
	if errors.As(req.Err, &tooBig) {
		s.Rejected.Add(1)
		hdr, problems, ok := hl7.ReadHeader(req.Payload)
		if !ok {
			log.Warn("oversized frame without a readable MSH; connection closed", "bytes", tooBig.Size)
			return nil, false
		}
		h := hdr.Header()
		text := fmt.Sprintf("message of %d bytes exceeds the maximum of %d bytes", tooBig.Size, tooBig.Max)
		details := append([]hl7.ErrDetail{{Code: hl7.ErrCodeInternal, Text: text}}, headerDetails(problems)...)
		return s.answer(hdr, h, rejected, text, details), true
	}
	msg, err := hl7.Parse(req.Payload)
	if err != nil {
		s.Rejected.Add(1)
		hdr, problems, ok := hl7.ReadHeader(req.Payload)
		if !ok {
			// Without "MSH" and a field separator there is nobody to
			// address an ACK to; a closed connection tells the sender
			// something is wrong.
			log.Warn("frame is not an HL7 message (no MSH segment with a field separator); no acknowledgment possible, connection closed",
				"err", err, "bytes", len(req.Payload))
			return nil, false
		}
		hh := hdr.Header()
		if len(problems) > 0 {
			// MSH-2 or MSH-18 unusable: answered with what could be read.
			// The fields are still split at the message's own field
			// separator, so MSH-15/16 (plain codes of table 0155) are
			// honoured when they hold valid values: a sender that asked
			// for enhanced mode waits for a commit acknowledgment (CR).
			details := append(headerDetails(problems), headerDetails(hh.Check())...)
			log.Warn("hl7 message rejected: unreadable header", "key", s.key(hh), "err", problems[0], "problems", len(details))
			return s.answer(hdr, hh, rejected, problems[0].Reason, details), true
		}
		detail := hl7.ErrDetail{Code: hl7.ErrCodeSegmentSequence, Text: "message could not be parsed"}
		var pe *hl7.ParseError
		if errors.As(err, &pe) {
			detail.Segment, detail.Field = pe.ID, pe.Field
			detail.Text = pe.Reason
		}
		log.Warn("hl7 message rejected: parse error", "key", s.key(hh), "err", err)
		return s.answer(hdr, hh, rejected, "message could not be parsed", []hl7.ErrDetail{detail}), true
	}
	// The header is read once: it feeds the key, the ACK and the logs.
	h := msg.Header()
	if problems := h.Check(); len(problems) > 0 {
		s.Rejected.Add(1)
		log.Warn("hl7 message rejected: invalid header", "key", s.key(h), "err", problems[0], "problems", len(problems))
		return s.answer(msg, h, rejected, problems[0].Reason, headerDetails(problems)), true
	}
	if s.Log == nil {
		s.Accepted.Add(1)
		log.Info("hl7 message accepted (not stored)", "key", s.key(h), "msg_type", msgType(h))
		return s.answer(msg, h, accepted, "", nil), true
	}
	acks := s.answer(msg, h, accepted, "", nil)
	e := s.entry(msg, h, req.Payload, req.Received, acks)
	res, err := s.Log.Append(ctx, e)
	if err != nil {
		s.Errored.Add(1)
		log.Error("hl7 message not stored; answered with an error", "key", logging.Key(e.Key), "msg_type", e.Type, "err", err)
		text := "message could not be stored; please resend"
		if errors.Is(err, checkpoint.ErrStorage) {
			// The sender's interface team learns why its queue backs up;
			// the cause is the receiver's, never the message's.
			text = "message could not be stored (receiver's disk full or read-only); please resend"
		}
		return s.answer(msg, h, errored, text, []hl7.ErrDetail{{Code: hl7.ErrCodeInternal, Text: text}}), true
	}
	switch res.Outcome {
	case checkpoint.Duplicate:
		s.Duplicates.Add(1)
		log.Info("hl7 retransmit recognised; original acknowledgment sent again", "key", logging.Key(e.Key), "record", res.ID)
		return DecodeAcks(res.Ack), true
	case checkpoint.Conflict:
		s.Conflicts.Add(1)
		log.Warn("hl7 control id reused with different content; rejected and recorded as a conflict",
			"key", logging.Key(e.Key), "record", res.ID, "conflict", res.ConflictID)
		text := fmt.Sprintf("control id already used for a different message (conflict %d)", res.ConflictID)
		return s.answer(msg, h, rejected, text, []hl7.ErrDetail{{Segment: "MSH", Field: 10, Code: hl7.ErrCodeDuplicateKey, Text: text}}), true
	}
	s.Accepted.Add(1)
	if s.Appended != nil {
		s.Appended()
	}
	if len(acks) == 0 {
		log.Info("hl7 message stored; the sender asked for no acknowledgment (MSH-15/MSH-16)", "key", logging.Key(e.Key), "msg_type", e.Type, "record", res.ID, "bytes", len(req.Payload))
	} else {
		log.Info("hl7 message stored and acknowledged", "key", logging.Key(e.Key), "msg_type", e.Type, "record", res.ID, "bytes", len(req.Payload), "acks", len(acks))
	}
	return acks, true
}

func headerDetails(problems []*hl7.HeaderError) []hl7.ErrDetail {
	out := make([]hl7.ErrDetail, len(problems))
	for i, p := range problems {
		out[i] = p.Detail()
	}
	return out
}

// ackTypesValid reports whether MSH-15 and MSH-16 hold table 0155 values
// (or nothing), so that the acknowledgment mode they ask for can be
// honoured; otherwise a rejection goes out in original mode.
func ackTypesValid(h hl7.Header) bool {
	return hl7.AckCondition(h.AcceptAckType).Valid() && hl7.AckCondition(h.AppAckType).Valid()
}

// answer renders the acknowledgments of in (header h) for outcome o: one
// in original mode, or those MSH-15 and MSH-16 ask for in enhanced mode
// (see MLLPSource). A header whose MSH-15/16 hold values outside table
// 0155 is answered in original mode, whatever else is wrong with it.
func (s *MLLPSource) answer(in *hl7.Message, h hl7.Header, o outcome, text string, errs []hl7.ErrDetail) [][]byte {
	app := [...]hl7.AckCode{accepted: hl7.AA, rejected: hl7.AR, errored: hl7.AE}[o]
	if !h.Enhanced() || !ackTypesValid(h) {
		return [][]byte{s.reply(in, h, app, text, errs)}
	}
	ok := o == accepted
	var frames [][]byte
	commit := hl7.AckCondition(h.AcceptAckType).Wants(ok)
	if commit {
		code := [...]hl7.AckCode{accepted: hl7.CA, rejected: hl7.CR, errored: hl7.CE}[o]
		frames = append(frames, s.reply(in, h, code, text, errs))
	}
	// A message refused at commit never reaches the application: its
	// failure is reported once, by the commit acknowledgment when the
	// sender asked for that one.
	if hl7.AckCondition(h.AppAckType).Wants(ok) && (ok || !commit) {
		frames = append(frames, s.reply(in, h, app, text, errs))
	}
	return frames
}

// EncodeAcks is how a record stores the acknowledgments sent for it: a
// single one as its bytes (the form of every record before enhanced
// mode), any other number as MLLP frames back to back. An acknowledgment
// is an HL7 message and starts with "MSH", never with the start block,
// so DecodeAcks tells the forms apart.
func EncodeAcks(frames [][]byte) []byte {
	if len(frames) == 1 {
		return frames[0]
	}
	var b []byte
	for _, f := range frames {
		b = mllp.AppendFrame(b, f)
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

// DecodeAcks reverses EncodeAcks; a record of another form (a source's
// single acknowledgment) reads as one frame, an empty one as none. The
// frames share b's memory. A truncated last frame is left out.
func DecodeAcks(b []byte) [][]byte {
	if len(b) == 0 {
		return nil
	}
	if b[0] != mllp.StartBlock {
		return [][]byte{b}
	}
	var frames [][]byte
	for len(b) > 0 && b[0] == mllp.StartBlock {
		end := bytes.IndexByte(b, mllp.EndBlock)
		if end < 0 {
			break
		}
		frames = append(frames, b[1:end])
		b = bytes.TrimPrefix(b[end+1:], []byte{mllp.CR})
	}
	return frames
}

// Entry is the checkpoint entry this source appends for msg, a parsed
// message whose header passed its checks, received at received: its
// record key, content hash and lane, and the AA it answers with. The
// ingest benchmark appends these directly, to measure the log without
// the network.
func (s *MLLPSource) Entry(msg *hl7.Message, payload []byte, received time.Time) checkpoint.Entry {
	h := msg.Header()
	return s.entry(msg, h, payload, received, s.answer(msg, h, accepted, "", nil))
}

// entry builds the entry of msg (header h) whose acceptance is answered
// with acks, the frames handle sends once the append returns.
func (s *MLLPSource) entry(msg *hl7.Message, h hl7.Header, payload []byte, received time.Time, acks [][]byte) checkpoint.Entry {
	key, legacy := recordKeys(s.Name, h)
	return checkpoint.Entry{
		Key: key, LegacyKey: legacy, Source: s.Name, Kind: checkpoint.KindHL7v2, Type: msgType(h),
		Hash: ContentHash(msg, s.hashIgnore()), Lane: s.laneKey(msg),
		Payload: payload, Ack: EncodeAcks(acks), Received: received,
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
	// The inbound MSH-5/MSH-6 are copied whole; only an empty designator
	// (not one named by its universal id alone) is replaced.
	if h.ReceivingApp.IsZero() {
		opts.SendingApp = cmp.Or(s.AppName, "EHRBRIDGE")
	}
	if h.ReceivingFacility.IsZero() && s.Facility != "" {
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

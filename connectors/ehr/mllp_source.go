package ehr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/logging"
)

// Intake receives each valid message before it is acknowledged. Returning
// an error makes the source answer AE with the error's text, which must
// therefore be free of patient data. A nil Intake accepts everything.
type Intake func(ctx context.Context, source string, msg *hl7.Message, raw []byte) error

// MLLPSource turns MLLP frames into acknowledged HL7 messages.
type MLLPSource struct {
	// Name identifies the source in logs and, later, in record keys.
	Name string
	// AppName and Facility fill MSH-3 and MSH-4 of acknowledgments when the
	// inbound message leaves MSH-5 or MSH-6 empty. Default "EHRBRIDGE".
	AppName, Facility string
	Intake            Intake
	Logger            *slog.Logger

	Accepted, Rejected, Errored atomic.Int64
}

// ServeMLLP implements mllp.Handler.
func (s *MLLPSource) ServeMLLP(ctx context.Context, req *mllp.Request) []byte {
	ack := s.handle(ctx, req)
	if ack == nil {
		return nil
	}
	return ack.Bytes()
}

func (s *MLLPSource) handle(ctx context.Context, req *mllp.Request) *hl7.Message {
	log := s.logger()
	var tooBig *mllp.FrameTooLargeError
	if errors.As(req.Err, &tooBig) {
		hdr, err := hl7.ParseHeader(req.Payload)
		if err != nil {
			log.Warn("oversized frame without a readable MSH; connection closed", "bytes", tooBig.Size)
			return nil
		}
		s.Rejected.Add(1)
		text := fmt.Sprintf("message of %d bytes exceeds the maximum of %d bytes", tooBig.Size, tooBig.Max)
		return s.reply(hdr, hl7.AR, text, []hl7.ErrDetail{{Code: hl7.ErrCodeInternal, Text: text}})
	}
	msg, err := hl7.Parse(req.Payload)
	if err != nil {
		hdr, herr := hl7.ParseHeader(req.Payload)
		if herr != nil {
			// Without a header there is nobody to address an ACK to; a
			// closed connection tells the sender something is wrong.
			s.Rejected.Add(1)
			log.Warn("frame is not an HL7 message; connection closed", "err", err, "bytes", len(req.Payload))
			return nil
		}
		s.Rejected.Add(1)
		detail := hl7.ErrDetail{Code: hl7.ErrCodeSegmentSequence, Text: "message could not be parsed"}
		var pe *hl7.ParseError
		if errors.As(err, &pe) {
			detail.Segment, detail.Field = pe.ID, pe.Field
			detail.Text = pe.Reason
		}
		log.Warn("hl7 message rejected: parse error", "key", s.key(hdr), "err", err)
		return s.reply(hdr, hl7.AR, "message could not be parsed", []hl7.ErrDetail{detail})
	}
	if problems := msg.CheckHeader(); len(problems) > 0 {
		s.Rejected.Add(1)
		details := make([]hl7.ErrDetail, len(problems))
		for i, p := range problems {
			details[i] = p.Detail()
		}
		log.Warn("hl7 message rejected: invalid header", "key", s.key(msg), "err", problems[0], "problems", len(problems))
		return s.reply(msg, hl7.AR, problems[0].Reason, details)
	}
	h := msg.Header()
	if s.Intake != nil {
		if err := s.Intake(ctx, s.Name, msg, req.Payload); err != nil {
			s.Errored.Add(1)
			log.Error("hl7 message not accepted: intake failed", "key", s.key(msg), "msg_type", msgType(h), "err", err)
			return s.reply(msg, hl7.AE, err.Error(), []hl7.ErrDetail{{Code: hl7.ErrCodeInternal, Text: err.Error()}})
		}
	}
	s.Accepted.Add(1)
	log.Info("hl7 message accepted", "key", s.key(msg), "msg_type", msgType(h), "bytes", len(req.Payload))
	return s.reply(msg, hl7.AA, "", nil)
}

func (s *MLLPSource) reply(in *hl7.Message, code hl7.AckCode, text string, errs []hl7.ErrDetail) *hl7.Message {
	opts := hl7.AckOptions{}
	h := in.Header()
	if h.ReceivingApp == "" {
		opts.SendingApp = orDefault(s.AppName, "EHRBRIDGE")
	}
	if h.ReceivingFacility == "" && s.Facility != "" {
		opts.SendingFacility = s.Facility
	}
	return hl7.BuildAck(in, code, text, errs, opts)
}

// key is the message's record key (source | MSH-3 | MSH-4 | MSH-10), which
// is logged only as a keyed hash.
func (s *MLLPSource) key(m *hl7.Message) logging.Key {
	return logging.Key(RecordKey(s.Name, m.Header()))
}

// RecordKey is the durable identity of an inbound HL7 message: source name,
// sending application, sending facility and control id, joined by "|".
func RecordKey(source string, h hl7.Header) string {
	return source + "|" + h.SendingApp + "|" + h.SendingFacility + "|" + h.ControlID
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
	l := s.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("source", s.Name)
}

func orDefault(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

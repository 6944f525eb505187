package ehr

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// MLLPTarget sends each message to the EHR's MLLP receiver and waits for the
// answers its MSH-15/MSH-16 ask for (mllp.Client.Send): AA, past a commit
// CA; or the CA alone when MSH-16 is NE. AR or CR is a rejection
// (connectors.Rejected, its text starting with the code); AE or CE asks
// for a resend (connectors.Deferred). A send that got no answer (refused,
// connection lost, no acknowledgment in time) is a
// *connectors.Unreachable: the note is retried with backoff, not sooner
// than the client will try again.
type MLLPTarget struct{ Client *mllp.Client }

var _ connectors.EHRTarget = (*MLLPTarget)(nil)

// MLLPTargetConfig is the settings of an MLLPTarget: declared once, with
// the keys of the config file's writeback.target section that are the
// MLLP target's (internal/config embeds it there, inline).
type MLLPTargetConfig struct {
	// MLLP is the EHR's MLLP receiver, host:port.
	MLLP string `yaml:"mllp"`
	// TLS, when set, makes every connection TLS, verified as it says (CAs,
	// client certificate for mutual TLS, server name): a handshake that
	// fails is a failed try, never a fallback to plain TCP. Nil: plain
	// TCP.
	TLS *configvalue.TLSClient `yaml:"tls"`
	// MLLPMaxBackoff caps the client's delays between tries when the
	// receiver refuses or drops connections (they start at 100 ms and
	// double); 0: 30 s.
	MLLPMaxBackoff configvalue.Duration `yaml:"mllp_max_backoff"`
	// Logger gets the client's warnings (failed sends, skipped replies;
	// never message bytes); nil: slog.Default().
	Logger *slog.Logger
}

// NewMLLPTarget is the write-back target for the EHR's MLLP receiver at
// cfg.MLLP. Its client resends a message whose connection was lost after
// short backoffs (from 100 ms), and gives up at once when its next try is
// more than 2 s off, so that a note whose EHR is down goes back to the
// pipeline, which retries it later, instead of holding the note lane. It
// fails when the TLS files cannot be loaded (errors name the setting).
func NewMLLPTarget(cfg MLLPTargetConfig) (*MLLPTarget, error) {
	var tc *tls.Config
	if cfg.TLS != nil {
		var err error
		if tc, err = cfg.TLS.Config(); err != nil {
			return nil, err
		}
	}
	return &MLLPTarget{Client: &mllp.Client{Addr: cfg.MLLP, TLSConfig: tc, MaxBackoff: cfg.MLLPMaxBackoff.Std(), MaxWait: 2 * time.Second, Logger: cfg.Logger}}, nil
}

// InFlight is how long after a send the EHR may still apply it: the
// client's acknowledgment timeout.
func (t *MLLPTarget) InFlight() time.Duration { return cmp.Or(t.Client.AckTimeout, 30*time.Second) }

// File implements connectors.EHRTarget.
func (t *MLLPTarget) File(ctx context.Context, doc *connectors.Document) error {
	msg := doc.MDM
	if !confirmable(msg.Header()) {
		return connectors.ErrUnconfirmable
	}
	resp, err := t.Client.Send(ctx, msg.Bytes())
	if err != nil {
		u := &connectors.Unreachable{Err: err}
		var se *mllp.SendError
		if errors.As(err, &se) {
			u.RetryAfter = se.RetryIn
		}
		return u
	}
	switch {
	case resp.Accepted():
		return nil
	case resp.Code == hl7.AE || resp.Code == hl7.CE:
		return &connectors.Deferred{Code: resp.Code, Text: resp.Text}
	case resp.Code == hl7.AR || resp.Code == hl7.CR:
		return &connectors.Rejected{Text: string(resp.Code) + " " + resp.Text}
	}
	return &connectors.Error{Kind: connectors.Transient, Code: "EHR_ANSWER_" + string(resp.Code)}
}

// confirmable reports whether a message's MSH-15/MSH-16 make the receiver
// answer a success: AL or SU in either, or both empty (original mode: the
// application acknowledgment). An empty one beside a valued one is read as
// AL, as mllp.Client does.
func confirmable(h hl7.Header) bool {
	a, p := strings.ToUpper(strings.TrimSpace(h.AcceptAckType)), strings.ToUpper(strings.TrimSpace(h.AppAckType))
	silent := func(s string) bool { return s == "NE" || s == "ER" }
	return !(silent(a) && silent(p))
}

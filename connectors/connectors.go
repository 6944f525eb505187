// Package connectors holds the contracts every edge implements, declared
// once: the op a mapping produces and the Sink that applies ops (CRM
// connectors), the NoteReader write-back reads notes through (CRM
// connectors), the EHRTarget it files them with (connectors/ehr), and how
// failures are classified for the pipeline (retry, dead letter, or
// pause). Each edge is a directory below this one.
package connectors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ehrbridge/ehrbridge/mappings"
)

// Op is one write for the CRM: an upsert, update or delete of one record
// by its external key, with its fields (see mappings.Op).
type Op = mappings.Op

// Result is the outcome of one op.
type Result struct {
	// ID is the CRM's id of the record written ("" for a delete, or an
	// update of a record that does not exist).
	ID string
	// Err is nil on success; otherwise classify it with KindOf.
	Err error
}

// Sink applies ops to a CRM. Apply returns one result per op, in order.
// It must be idempotent: the pipeline re-applies ops after a crash or an
// ambiguous failure. Ops may reference records that earlier ops of the
// same call write; the sink orders its requests so that they exist.
type Sink interface {
	Apply(ctx context.Context, ops []Op) []Result
}

// Prober is a Sink that can probe its CRM: one small read-only request,
// sent once (no retries), that tells whether the CRM answers again after
// transient failures. The pipeline's breaker sends it instead of batches
// while the CRM is failing. Its error is classified like a Result's.
type Prober interface {
	Probe(ctx context.Context) error
}

// Kind classifies a failure.
type Kind int

const (
	// Transient failures are retried with backoff.
	Transient Kind = iota + 1
	// Permanent failures dead-letter the record: retrying cannot help.
	Permanent
	// Throttled means the CRM's API allocation is (nearly) spent: pause
	// everything until RetryAfter; it does not count against the record.
	Throttled
)

func (k Kind) String() string {
	switch k {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	case Throttled:
		return "throttled"
	}
	return "unknown"
}

// Error is a classified failure. Code is the CRM's error code (or an HTTP
// status); Message is the CRM's text, which may echo field values and so
// is patient data: store it with the record, never log it.
type Error struct {
	Kind       Kind
	Code       string
	Message    string
	Fields     []string
	Status     int
	RetryAfter time.Duration
}

// Error names the kind and code, never the CRM's message.
func (e *Error) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("crm %s error %s", e.Kind, e.Code)
	}
	return fmt.Sprintf("crm %s error %s (HTTP %d)", e.Kind, e.Code, e.Status)
}

// Detail is the error with the CRM's message, for a dead letter's reason
// (kept in the checkpoint log, encrypted at rest when configured), not for
// logs.
func (e *Error) Detail() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// KindOf returns the kind of err: an *Error's own, Transient for anything
// else (network, context), so that unknown failures are retried.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Transient
}

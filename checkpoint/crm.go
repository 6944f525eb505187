package checkpoint

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// metaCRM names the CRM (an org, an environment) the log's records were
// queued for: Options.CRM as last opened for writing with one.
var metaCRM = []byte("crm_identity")

// ErrCRMChanged means the log was opened for a CRM other than the one its
// pending records were queued for (see Options.CRM); the error is a
// *CRMChangeError.
var ErrCRMChanged = errors.New("checkpoint: the CRM changed while records are pending")

// CRMChangeError is the refusal to open a log for another CRM while
// records queued for the one it names are pending. The identities are
// addresses and names an admin configured, never patient data.
type CRMChangeError struct {
	Stored, Configured string
	Pending            int64 // received, in progress and retrying
}

// Error names both CRMs, the pending count and the flag that accepts the change.
func (e *CRMChangeError) Error() string {
	return fmt.Sprintf("checkpoint: %d records in the log are pending for the CRM %q, but the config names %q; "+
		"start with --accept-crm-change to send them to %q, or configure %q again until they are done",
		e.Pending, e.Stored, e.Configured, e.Configured, e.Stored)
}

// Is makes errors.Is(err, ErrCRMChanged) hold.
func (e *CRMChangeError) Is(target error) bool { return target == ErrCRMChanged }

// CRMIdentity returns the CRM the log's records were last queued for
// (Options.CRM of the last writer that named one), "" when none did.
func (l *Log) CRMIdentity() (string, error) {
	var out string
	err := l.view(func(tx *bolt.Tx) error {
		out = string(tx.Bucket(bMeta).Get(metaCRM))
		return nil
	})
	return out, err
}

// pendingCount is the records not finished: received (indexed or not),
// in progress and retrying.
func pendingCount(tx *bolt.Tx) int64 {
	return counter(tx, countKey(Received)) + counter(tx, countKey(InProgress)) + counter(tx, countKey(Retrying))
}

// bindCRM records Options.CRM in the log as the CRM its records are
// queued for, within the opening's transaction. A different CRM already
// recorded, with records pending, is refused (*CRMChangeError) unless
// Options.AcceptCRMChange; accepted, the change is logged once the
// opening commits (changed). With nothing pending the new CRM is recorded
// silently: nothing is left that was meant for the old one.
func (l *Log) bindCRM(tx *bolt.Tx) (changed *CRMChangeError, err error) {
	id := l.opts.CRM
	if id == "" {
		return nil, nil
	}
	meta := tx.Bucket(bMeta)
	stored := string(meta.Get(metaCRM))
	if stored == id {
		return nil, nil
	}
	if stored != "" {
		if n := pendingCount(tx); n > 0 {
			changed = &CRMChangeError{Stored: stored, Configured: id, Pending: n}
			if !l.opts.AcceptCRMChange {
				return nil, changed
			}
		}
	}
	return changed, meta.Put(metaCRM, []byte(id))
}

package checkpoint

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// A record's detail is the prose that came with its reason: the CRM's
// error message, which can quote any value of the record (Salesforce's
// DUPLICATE_VALUE quotes the duplicate key, an MRN) in any case or
// format, so no scrubbing can be trusted with it. It is kept apart from
// the record, in its own bucket, sealed like the payload when a key is
// configured, and returned only by Reveal (an audited reveal); the reason
// that lists and logs show holds codes and field names only.
//
// The bucket is created by the first detail written: an older ehrbridge
// of schema 3 ignores it (it shows the reason, as before, and never the
// detail).
var bDetails = []byte("details") // record id → detail

// Stored detail forms: the first byte says whether the rest is sealed.
const (
	detailClear  = 0
	detailSealed = 1
)

func detailAAD(id uint64) []byte { return []byte(fmt.Sprintf("detail/%d", id)) }

// putDetail stores (or, when detail is empty, removes) a record's detail
// in tx.
func (l *Log) putDetail(tx *bolt.Tx, id uint64, detail string) error {
	if detail == "" {
		if b := tx.Bucket(bDetails); b != nil {
			return b.Delete(itob(id))
		}
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bDetails)
	if err != nil {
		return err
	}
	v := append([]byte{detailClear}, detail...)
	if l.opts.Keyring != nil {
		v = append([]byte{detailSealed}, l.opts.Keyring.seal([]byte(detail), detailAAD(id))...)
	}
	return b.Put(itob(id), v)
}

// deleteDetail removes a record's detail, if any.
func deleteDetail(tx *bolt.Tx, id uint64) error {
	if b := tx.Bucket(bDetails); b != nil {
		return b.Delete(itob(id))
	}
	return nil
}

// hasDetail says whether a record has a detail.
func hasDetail(tx *bolt.Tx, id uint64) bool {
	b := tx.Bucket(bDetails)
	return b != nil && b.Get(itob(id)) != nil
}

// detail returns a record's detail, opened; "" when it has none.
func (l *Log) detail(tx *bolt.Tx, id uint64) (string, error) {
	b := tx.Bucket(bDetails)
	if b == nil {
		return "", nil
	}
	v := b.Get(itob(id))
	if len(v) == 0 {
		return "", nil
	}
	switch v[0] {
	case detailClear:
		return string(v[1:]), nil
	case detailSealed:
		if l.opts.Keyring == nil {
			return "", ErrEncrypted
		}
		plain, err := l.opts.Keyring.open(v[1:], detailAAD(id))
		if err != nil {
			return "", fmt.Errorf("record %d detail: %w", id, err)
		}
		return string(plain), nil
	}
	return "", fmt.Errorf("%w %d: detail of unknown form", errCorrupt, id)
}

// walkDetails calls fn for every stored detail, for SealStats and Reseal.
func walkDetails(tx *bolt.Tx, fn func(bucket, key, aad []byte, sealed bool, v []byte) error) error {
	b := tx.Bucket(bDetails)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		if len(v) == 0 || len(k) != 8 {
			return nil
		}
		return fn(bDetails, k, detailAAD(btoi(k)), v[0] == detailSealed, v[1:])
	})
}

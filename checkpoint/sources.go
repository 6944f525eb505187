package checkpoint

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Source state values can identify a patient (where a FHIR resource was
// written in the CRM holds its record key, an MRN; a note's filing state
// names the note), so with a Keyring they are sealed like payloads, bound
// to their key. A sealed value starts with sealedStatePrefix, which no
// value stored in clear does (they are JSON or RFC 3339 times, and begin
// with a printable byte): values written before encryption was enabled
// are read as they are until `log reseal` seals them.
var sealedStatePrefix = []byte{0, 'S'}

func sourceAAD(key []byte) []byte { return append([]byte("source/"), key...) }

// sealState returns the form of value to store under key.
func (l *Log) sealState(key string, value []byte) []byte {
	if l.opts.Keyring == nil {
		return value
	}
	return append(bytes.Clone(sealedStatePrefix), l.opts.Keyring.seal(value, sourceAAD([]byte(key)))...)
}

// openState returns a stored value as it was given.
func (l *Log) openState(key, v []byte) ([]byte, error) {
	rest, sealed := bytes.CutPrefix(v, sealedStatePrefix)
	if !sealed {
		return append([]byte(nil), v...), nil
	}
	if l.opts.Keyring == nil {
		return nil, ErrEncrypted
	}
	plain, err := l.opts.Keyring.open(rest, sourceAAD(key))
	if err != nil {
		return nil, fmt.Errorf("source state: %w", err)
	}
	return plain, nil
}

// walkSourceStates calls fn for every source state value, for SealStats
// and Reseal.
func walkSourceStates(tx *bolt.Tx, fn func(bucket, key, aad []byte, sealed bool, v []byte) error) error {
	return tx.Bucket(bSources).ForEach(func(k, v []byte) error {
		rest, sealed := bytes.CutPrefix(v, sealedStatePrefix)
		return fn(bSources, k, sourceAAD(k), sealed, rest)
	})
}

// SourceState returns what a source stored under key with SetSourceState
// (a FHIR source's watermark, say), and whether there is any.
func (l *Log) SourceState(key StateKey) ([]byte, bool, error) {
	var out []byte
	err := l.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSources)
		if b == nil {
			return nil // a log older than the bucket: nothing stored
		}
		if v := b.Get([]byte(key)); v != nil {
			var err error
			out, err = l.openState([]byte(key), v)
			return err
		}
		return nil
	})
	return out, out != nil, err
}

// SetSourceState stores a source's state under key, durably (one fsynced
// transaction): a source advances its watermark only after the records it
// covers were appended, so that a crash in between re-reads them (and the
// log recognises them) rather than skipping them. The value is sealed
// when a key is configured.
func (l *Log) SetSourceState(key StateKey, value []byte) error {
	v := l.sealState(string(key), value)
	return l.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bSources).Put([]byte(key), v)
	})
}

// SetSourceStates stores several keys in one fsynced transaction.
func (l *Log) SetSourceStates(kv map[StateKey][]byte) error {
	if len(kv) == 0 {
		return nil
	}
	sealed := make(map[string][]byte, len(kv))
	for k, v := range kv {
		sealed[string(k)] = l.sealState(string(k), v)
	}
	return l.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSources)
		for k, v := range sealed {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteSourceState removes a source's state key (durably).
func (l *Log) DeleteSourceState(key StateKey) error {
	return l.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bSources).Delete([]byte(key))
	})
}

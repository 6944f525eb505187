package checkpoint

import (
	bolt "go.etcd.io/bbolt"
)

// SourceState returns what a source stored under key with SetSourceState
// (a FHIR source's watermark, say), and whether there is any.
func (l *Log) SourceState(key string) ([]byte, bool, error) {
	var out []byte
	err := l.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSources)
		if b == nil {
			return nil // a log older than the bucket: nothing stored
		}
		if v := b.Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, out != nil, err
}

// SetSourceState stores a source's state under key, durably (one fsynced
// transaction): a source advances its watermark only after the records it
// covers were appended, so that a crash in between re-reads them (and the
// log recognises them) rather than skipping them.
func (l *Log) SetSourceState(key string, value []byte) error {
	return l.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bSources).Put([]byte(key), value)
	})
}

// SetSourceStates stores several keys in one fsynced transaction.
func (l *Log) SetSourceStates(kv map[string][]byte) error {
	if len(kv) == 0 {
		return nil
	}
	return l.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSources)
		for k, v := range kv {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteSourceState removes a source's state key (durably).
func (l *Log) DeleteSourceState(key string) error {
	return l.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bSources).Delete([]byte(key))
	})
}

package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SealStats says how much of a log is stored under the active key: what
// `log stats` and /status report until `log reseal` has run after
// encryption was enabled or the key rotated.
type SealStats struct {
	// Records is how many records hold a payload (retention has not
	// dropped it); Unencrypted of them are stored in clear, OldKey sealed
	// with a key other than the active one (not counted without a
	// Keyring).
	Records, Unencrypted, OldKey int64
	// RawHashes counts records whose content hash is not keyed (written
	// before a key was configured; see Record.Hash).
	RawHashes int64
	// LegacyReasons counts dead records whose reason, written by an
	// earlier release, holds the CRM's message in clear.
	LegacyReasons int64
	// Other counts the other stored values that can identify a patient
	// (conflict payloads, error details, sealed source state) that are in
	// clear or under an old key.
	Other int64
}

// Mixed says whether anything is not under the active key.
func (s SealStats) Mixed() bool {
	return s.Unencrypted+s.OldKey+s.Other+s.RawHashes+s.LegacyReasons > 0
}

// SealStats walks the log (every record's metadata: about a second per
// million records) and counts what is not sealed with the active key.
func (l *Log) SealStats() (SealStats, error) {
	var st SealStats
	var active *[8]byte
	if l.opts.Keyring != nil {
		active = &l.opts.Keyring.active
	}
	under := func(sealed bool, v []byte) (clear, old bool) {
		if !sealed {
			return true, false
		}
		if active == nil {
			return false, false // which key: unknown without the keyring
		}
		id, ok := sealedWith(v)
		return false, !ok || id != *active
	}
	err := l.view(func(tx *bolt.Tx) error {
		err := tx.Bucket(bRecords).ForEach(func(k, v []byte) error {
			r, payload, err := decodeRecord(btoi(k), v)
			if err != nil {
				return err
			}
			if !r.hashKeyed {
				st.RawHashes++
			}
			if _, _, ok := legacyCRMReason(r.Reason); ok && r.State == Dead && !hasDetail(tx, r.ID) {
				st.LegacyReasons++
			}
			if r.PayloadDropped {
				return nil
			}
			st.Records++
			clear, old := under(r.sealed, payload)
			if clear {
				st.Unencrypted++
			} else if old {
				st.OldKey++
			}
			return nil
		})
		if err != nil {
			return err
		}
		return l.walkOther(tx, func(_ []byte, _ []byte, _ []byte, sealed bool, v []byte) error {
			if clear, old := under(sealed, v); clear || old {
				st.Other++
			}
			return nil
		})
	})
	return st, err
}

// walkOther calls fn for every stored value other than record payloads
// that is sealed when a key is configured: conflict payloads, source
// states (sources.go) and record details (details.go). fn gets the
// bucket, the key, the value's AAD, whether it is sealed and the value.
func (l *Log) walkOther(tx *bolt.Tx, fn func(bucket, key, aad []byte, sealed bool, v []byte) error) error {
	err := tx.Bucket(bConflicts).ForEach(func(k, v []byte) error {
		id := btoi(k)
		c, payload, err := decodeConflict(id, v)
		if err != nil {
			return err
		}
		return fn(bConflicts, k, conflictAAD(id), c.sealed, payload)
	})
	if err != nil {
		return err
	}
	if err := walkSourceStates(tx, fn); err != nil {
		return err
	}
	return walkDetails(tx, fn)
}

// sealCache keeps the last SealStats for Stats, which /status and
// /metrics call often: a walk costs about a second per million records.
type sealCache struct {
	mu      sync.Mutex
	st      SealStats
	at      time.Time
	valid   bool
	running bool
}

// sealStatsMaxAge is how long Stats reuses a count of a mixed log.
const sealStatsMaxAge = time.Minute

// cachedSealStats returns the seal counts for Stats: on a read-only log
// (the admin commands) counted at the first call; on a writable one (the
// daemon) counted in the background, not counted until that is done, and
// refreshed at most once a minute. A log
// found all under the active key stays so (appends seal with it, and the
// keyring does not change while the log is open), so it is not walked
// again. A log that was never encrypted and has no key is not walked:
// Stats.Encrypted false says it all.
func (l *Log) cachedSealStats() (SealStats, bool) {
	if l.opts.Keyring == nil && !l.encrypted {
		return SealStats{}, false
	}
	c := &l.sealCache
	c.mu.Lock()
	if !c.valid && l.opts.ReadOnly {
		// An admin command on a stopped log: count now.
		c.mu.Unlock()
		st, err := l.SealStats()
		if err != nil {
			return SealStats{}, false
		}
		c.mu.Lock()
		c.st, c.at, c.valid = st, l.opts.Now(), true
		c.mu.Unlock()
		return st, true
	}
	st, valid := c.st, c.valid
	stale := !valid || (st.Mixed() || l.opts.Keyring == nil) && l.opts.Now().Sub(c.at) > sealStatsMaxAge
	if stale && !c.running {
		// The daemon: /status and /metrics never wait for the walk.
		c.running = true
		go func() {
			st, err := l.SealStats()
			c.mu.Lock()
			defer c.mu.Unlock()
			c.running = false
			if err == nil {
				c.st, c.at, c.valid = st, l.opts.Now(), true
			}
		}()
	}
	c.mu.Unlock()
	return st, valid
}

// ResealResult reports a Reseal.
type ResealResult struct {
	Records int // record payloads sealed anew
	Others  int // conflict payloads and other values sealed anew
	Hashes  int // content hashes of records and conflicts keyed
	// Reasons counts dead records whose reason (from an earlier release)
	// held the CRM's message: moved to their sealed detail.
	Reasons   int
	Compacted CompactResult
	Took      time.Duration
}

// resealBatch bounds the records one transaction re-seals.
const resealBatch = 512

// ErrNoKey is returned by Reseal without a Keyring.
var ErrNoKey = errors.New("checkpoint: reseal needs the encryption key (checkpoint key) configured")

// Reseal seals every stored payload, and every other value that is sealed
// when a key is configured, with the active key of opts.Keyring: those
// stored in clear (written before encryption was enabled) and those
// sealed with an older key. It works in short transactions, then
// compacts the file (Compact), because bbolt keeps the pages a
// transaction freed, with the clear copies they held, inside the file
// until they are reused: after Reseal the file holds no payload but
// under the active key. The log must not be open elsewhere (ErrLocked).
// Backups taken before hold the old copies.
func Reseal(path string, opts Options) (ResealResult, error) {
	var res ResealResult
	start := time.Now()
	if opts.Keyring == nil {
		return res, ErrNoKey
	}
	opts.ReadOnly = false
	opts.DeferStorageErrors = false
	l, err := Open(path, opts)
	if err != nil {
		return res, err
	}
	if err := l.reseal(&res); err != nil {
		l.Close()
		return res, err
	}
	if err := l.Close(); err != nil {
		return res, err
	}
	c, err := Compact(path)
	if err != nil {
		return res, fmt.Errorf("checkpoint: payloads re-sealed, but compacting (which removes the old copies from the file's free pages) failed; run `ehrbridge log compact`: %w", err)
	}
	res.Compacted = c
	res.Took = time.Since(start)
	return res, nil
}

func (l *Log) reseal(res *ResealResult) error {
	k := l.opts.Keyring
	after := uint64(0)
	for {
		n, hashes, reasons, last, done := 0, 0, 0, after, false
		err := l.update(func(tx *bolt.Tx) error {
			n, hashes, reasons = 0, 0, 0
			c := tx.Bucket(bRecords).Cursor()
			key, v := c.Seek(itob(after + 1))
			var puts [][2][]byte
			for ; key != nil && len(puts) < resealBatch; key, v = c.Next() {
				last = btoi(key)
				r, payload, err := decodeRecord(last, v)
				if err != nil {
					return err
				}
				changed := false
				if r.State == Dead {
					if code, msg, ok := legacyCRMReason(r.Reason); ok && !hasDetail(tx, last) {
						r.Reason = "crm permanent error " + code + "; the CRM's message: log show --reveal"
						if err := l.putDetail(tx, last, msg); err != nil {
							return err
						}
						changed = true
						reasons++
					}
				}
				if !r.hashKeyed {
					r.Hash, r.hashKeyed, changed = l.keyedHash(r.Hash), true, true
					hashes++
				}
				current := false
				if r.sealed {
					id, ok := sealedWith(payload)
					current = ok && id == k.active
				}
				if !r.PayloadDropped && !current {
					if r.sealed {
						plain, err := k.open(payload, []byte(r.Key))
						if err != nil {
							return fmt.Errorf("record %d: %w", last, err)
						}
						payload = plain
					}
					r.sealed, payload, changed = true, k.seal(payload, []byte(r.Key)), true
					n++
				}
				if !changed {
					continue
				}
				nv, err := encodeRecord(r, payload)
				if err != nil {
					return err
				}
				puts = append(puts, [2][]byte{append([]byte(nil), key...), nv})
			}
			done = key == nil
			for _, p := range puts {
				if err := tx.Bucket(bRecords).Put(p[0], p[1]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		res.Records += n
		res.Hashes += hashes
		res.Reasons += reasons
		if done || last == after {
			break
		}
		after = last
	}
	return l.update(func(tx *bolt.Tx) error {
		type put struct{ bucket, key, v []byte }
		var puts []put
		err := l.walkOther(tx, func(bucket, key, aad []byte, sealed bool, v []byte) error {
			nv, changed, err := k.reseal(v, aad, sealed)
			if err != nil || !changed {
				return err
			}
			switch {
			case bytes.Equal(bucket, bConflicts):
				nv, err = resealConflict(tx.Bucket(bConflicts).Get(key), nv)
				if err != nil {
					return err
				}
			case bytes.Equal(bucket, bDetails):
				nv = append([]byte{detailSealed}, nv...)
			case bytes.Equal(bucket, bSources):
				nv = append(bytes.Clone(sealedStatePrefix), nv...)
			}
			puts = append(puts, put{bucket, append([]byte(nil), key...), nv})
			return nil
		})
		if err != nil {
			return err
		}
		for _, p := range puts {
			if err := tx.Bucket(p.bucket).Put(p.key, p.v); err != nil {
				return err
			}
		}
		res.Others = len(puts)
		// Conflict entries' content hashes, keyed like the records'.
		var rekeyed [][2][]byte
		err = tx.Bucket(bConflicts).ForEach(func(key, v []byte) error {
			nv, changed, err := rekeyConflictHash(v, l.keyedHash)
			if changed {
				rekeyed = append(rekeyed, [2][]byte{append([]byte(nil), key...), nv})
			}
			return err
		})
		if err != nil {
			return err
		}
		for _, p := range rekeyed {
			if err := tx.Bucket(bConflicts).Put(p[0], p[1]); err != nil {
				return err
			}
		}
		res.Hashes += len(rekeyed)
		return nil
	})
}

// reseal returns v sealed with the active key (opening it first when it is
// sealed with another), and whether that changed it.
func (k *Keyring) reseal(v, aad []byte, sealed bool) ([]byte, bool, error) {
	if sealed {
		if id, ok := sealedWith(v); ok && id == k.active {
			return v, false, nil
		}
		plain, err := k.open(v, aad)
		if err != nil {
			return nil, false, err
		}
		v = plain
	}
	return k.seal(v, aad), true, nil
}

// legacyCRMReasonRE matches the reason releases before issue 28 gave a
// record the CRM refused for good: the CRM's error code, ": ", and its
// message (scrubbed only of the op's exact values): a Salesforce code
// (upper case with an underscore), a Dataverse hex code or an HTTP status.
var legacyCRMReasonRE = regexp.MustCompile(`^([A-Z][A-Z0-9]*_[A-Z0-9_]*|0x[0-9a-fA-F]{1,16}|[1-5][0-9][0-9]): (.+)$`)

// legacyCRMReason splits such a reason into the code and the message.
func legacyCRMReason(reason string) (code, msg string, ok bool) {
	m := legacyCRMReasonRE.FindStringSubmatch(reason)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

package checkpoint

import (
	"bytes"
	"errors"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// The patient index (bPatients) holds every record under its lane, the
// keyed hash of its patient's identity, whatever its state: lane | id. The
// lane index (bLanes) holds only pending records, for ordering work; this
// one answers "every record of this patient" for admins (Find, the patient
// timeline) without storing an identifier in clear. Like the lane index
// it is written when Claim indexes records after the lane cursor
// (indexLanes), thousands at once, not in the append's transaction: a put
// on a page picked by the lane is a random page, and paying it in every
// group commit cut durable ingest with 64 senders to 0.69× (ehrbridge
// bench ingest, same run). Find reads the records after the lane cursor
// in id order for a patient search, so a record is found from the moment
// it is acknowledged. It is removed with the record by retention, and
// built from the records when a log of schema 3 or older is migrated.

// patientKey is a patient index key.
func patientKey(lane [16]byte, id uint64) []byte { return laneKey(lane, id) }

// rebuildPatients (the 3 → 4 migration) fills the patient index from the
// records; it replaces whatever the bucket held.
func rebuildPatients(tx *bolt.Tx) error {
	if tx.Bucket(bPatients) != nil {
		if err := tx.DeleteBucket(bPatients); err != nil {
			return err
		}
	}
	b, err := tx.CreateBucket(bPatients)
	if err != nil {
		return err
	}
	// Put in key order: bbolt splits nodes only at commit, so keys put
	// in random (lane) order into one transaction each shift a growing
	// node, quadratic in the records (a log of 100,000 took 6.8 s).
	keys := make([][24]byte, 0, tx.Bucket(bRecords).Stats().KeyN)
	err = tx.Bucket(bRecords).ForEach(func(k, v []byte) error {
		r, _, err := decodeRecord(btoi(k), v)
		if err != nil {
			return err
		}
		keys = append(keys, [24]byte(patientKey(r.Lane, r.ID)))
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(keys, func(a, b [24]byte) int { return bytes.Compare(a[:], b[:]) })
	for i := range keys {
		if err := b.Put(keys[i][:], nil); err != nil {
			return err
		}
	}
	return nil
}

// ErrNoLaneKey is returned when lanes are asked for on a log whose lane
// salt is sealed and no key is configured: the hashes could not be the
// log's.
var ErrNoLaneKey = errors.New("checkpoint: the log's lane salt is sealed and no key is configured: finding a patient needs the key (checkpoint.encryption)")

// PatientLanes returns the lanes (keyed hashes) of the lane keys given,
// empty ones left out, duplicates once. A patient search hashes every form
// the patient's lane key may take (see logadmin.PatientLaneKeys) and
// passes them to Find as Query.Lanes.
func (l *Log) PatientLanes(keys ...string) ([][16]byte, error) {
	if !l.opened.Load() {
		return nil, l.unopened()
	}
	if len(l.salt) == 0 {
		return nil, ErrNoLaneKey
	}
	out := [][16]byte{} // not nil: no lane matches nothing (Query.Lanes)
	seen := map[[16]byte]bool{}
	for _, k := range keys {
		if k == "" {
			continue
		}
		h := l.LaneHash(k)
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out, nil
}

// LaneHolder returns the record that holds a lane: its oldest unfinished
// record (received, in progress or retrying), which every later record
// of the patient waits for; 0 when the lane is idle.
func (l *Log) LaneHolder(lane [16]byte) (uint64, error) {
	var id uint64
	err := l.view(func(tx *bolt.Tx) error {
		if id = laneHead(tx, lane); id != 0 {
			return nil
		}
		// Records after the lane cursor are not in their lanes yet: the
		// oldest of them still received holds the lane.
		b := tx.Bucket(bPatients)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.Seek(patientKey(lane, laneCursor(tx)+1)); len(k) == 24 && string(k[:16]) == string(lane[:]); k, _ = c.Next() {
			r, _, err := getRecord(tx, btoi(k[16:]))
			if err != nil {
				return err
			}
			if !r.State.Finished() {
				id = r.ID
				return nil
			}
		}
		return nil
	})
	return id, err
}

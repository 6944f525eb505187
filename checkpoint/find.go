package checkpoint

import (
	"bytes"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Query selects records by their metadata for Find. Zero fields do not
// filter; the filters that are set must all hold.
type Query struct {
	// States: any of these.
	States []State
	// Type is a message type: "ADT^A01" matches exactly, "ADT" (no "^")
	// matches ADT and every ADT event; a FHIR resource type matches
	// exactly.
	Type string
	// Source is the source's name, exactly.
	Source string
	// From and To bound the arrival time: From ≤ Received < To.
	From, To time.Time
	// ControlID is the end of an HL7 v2 record key (source | MSH-3 |
	// MSH-4 | MSH-10, each part escaped as connectors/ehr.RecordKey does):
	// the control id part ("MSG00001") or, to name the sender too, the
	// last parts ("LAB|GENERAL|MSG00001"). Parts match whole: "123" does
	// not find "1234".
	ControlID string
	// Lanes, when not nil, keeps records of these lanes only (a patient:
	// PatientLanes); an empty, non-nil Lanes matches nothing.
	Lanes [][16]byte
	// Before continues a listing: only records with smaller ids (Page.Next
	// of the page before). 0: from the newest.
	Before uint64
	// Limit is the page size: default 50, at most MaxFindLimit.
	Limit int
	// MaxExamined bounds the records one call reads (default
	// DefaultMaxExamined): a filter that few records pass returns a
	// partial page and a cursor instead of reading the whole log.
	MaxExamined int
}

// Find's bounds.
const (
	DefaultFindLimit   = 50
	MaxFindLimit       = 1000
	DefaultMaxExamined = 20000
)

// receivedSkew is how far arrival times may run against id order: ids
// are given at the commit, arrival times just before it, and a clock may
// be set back a little. A time range starts and stops this far beyond its
// bounds in id order.
const receivedSkew = 10 * time.Minute

// Page is one page of Find's answer.
type Page struct {
	// Records match the query, newest (highest id) first, without
	// payloads.
	Records []*Record
	// Next is the Before of the next page; 0 when there is none.
	Next uint64
	// Partial says the call stopped at MaxExamined before the page was
	// full: more may match after Next.
	Partial bool
	// Examined counts the records read.
	Examined int
}

// Find returns a page of the records that match q, newest first, from
// their metadata only (payloads are never read, so it answers the same
// after retention dropped them). It reads the narrowest index the query
// allows: the patient index for Lanes, the key index for ControlID, the
// dead, pending and in-progress indexes for those states, else the
// records in id order (arrival order, within receivedSkew, which a time
// range uses to start and stop).
func (l *Log) Find(q Query) (Page, error) {
	if q.Limit <= 0 {
		q.Limit = DefaultFindLimit
	}
	q.Limit = min(q.Limit, MaxFindLimit)
	if q.MaxExamined <= 0 {
		q.MaxExamined = DefaultMaxExamined
	}
	var page Page
	if q.Lanes != nil && len(q.Lanes) == 0 {
		return page, nil
	}
	err := l.view(func(tx *bolt.Tx) error {
		page = Page{}
		m := newMatcher(q)
		it := l.findIter(tx, q)
		floor := int64(0)
		if !q.From.IsZero() {
			floor = q.From.Add(-receivedSkew).UnixNano()
		}
		records := tx.Bucket(bRecords)
		var last uint64
		for {
			id, ok := it.next()
			if !ok {
				return nil
			}
			if len(page.Records) == q.Limit || page.Examined == q.MaxExamined {
				// More to read: the next page starts below the last
				// record read.
				page.Next, page.Partial = last, len(page.Records) < q.Limit
				return nil
			}
			last = id
			v := records.Get(itob(id))
			if v == nil {
				continue // an index entry swept meanwhile: not in this view
			}
			page.Examined++
			r, _, err := decodeRecord(id, v)
			if err != nil {
				return err
			}
			if floor != 0 && r.Received.UnixNano() < floor {
				return nil
			}
			if m.match(r) {
				page.Records = append(page.Records, r)
			}
		}
	})
	return page, err
}

// matcher checks the filters of a query on a record.
type matcher struct {
	q      Query
	states map[State]bool
	lanes  map[[16]byte]bool
	suffix string
}

func newMatcher(q Query) *matcher {
	m := &matcher{q: q}
	if len(q.States) > 0 {
		m.states = map[State]bool{}
		for _, s := range q.States {
			m.states[s] = true
		}
	}
	if q.Lanes != nil {
		m.lanes = map[[16]byte]bool{}
		for _, l := range q.Lanes {
			m.lanes[l] = true
		}
	}
	if q.ControlID != "" {
		m.suffix = "|" + q.ControlID
	}
	return m
}

func (m *matcher) match(r *Record) bool {
	q := m.q
	switch {
	case m.states != nil && !m.states[r.State]:
	case q.Source != "" && r.Source != q.Source:
	case q.Type != "" && !TypeMatches(r.Type, q.Type):
	case !q.From.IsZero() && r.Received.Before(q.From):
	case !q.To.IsZero() && !r.Received.Before(q.To):
	case m.suffix != "" && (r.Kind != KindHL7v2 || !strings.HasSuffix(r.Key, m.suffix)):
	case m.lanes != nil && !m.lanes[r.Lane]:
	default:
		return true
	}
	return false
}

// TypeMatches says whether a record's type matches a query's (see
// Query.Type).
func TypeMatches(recordType, want string) bool {
	if recordType == want {
		return true
	}
	return !strings.Contains(want, "^") && strings.HasPrefix(recordType, want+"^")
}

// idIter yields record ids, highest first.
type idIter interface{ next() (uint64, bool) }

// findIter picks the index Find reads for q (see Find).
func (l *Log) findIter(tx *bolt.Tx, q Query) idIter {
	before := q.Before
	if !q.To.IsZero() {
		if b := firstReceivedAt(tx, q.To.Add(receivedSkew)); b != 0 && (before == 0 || b < before) {
			before = b
		}
	}
	if q.Lanes != nil {
		if b := tx.Bucket(bPatients); b != nil {
			its := make([]idIter, 0, len(q.Lanes))
			for _, lane := range q.Lanes {
				its = append(its, &prefixIter{c: b.Cursor(), prefix: append([]byte(nil), lane[:]...), before: before})
			}
			// Records after the lane cursor are indexed when Claim reaches
			// them (lanes.go): read them in id order (the matcher keeps
			// the patient's).
			its = append(its, &prefixIter{c: tx.Bucket(bRecords).Cursor(), before: before, floor: laneCursor(tx)})
			return union(its)
		}
		// A log of schema 3 opened read-only: no patient index.
		return &prefixIter{c: tx.Bucket(bRecords).Cursor(), before: before}
	}
	if q.ControlID != "" {
		return controlIDs(tx, q.Source, "|"+q.ControlID, before)
	}
	if len(q.States) > 0 {
		var its []idIter
		byIndex := true
		for _, s := range q.States {
			switch s {
			case Dead:
				its = append(its, &prefixIter{c: tx.Bucket(bDead).Cursor(), before: before})
			case InProgress:
				its = append(its, &prefixIter{c: tx.Bucket(bInflight).Cursor(), before: before})
			case Received, Retrying:
				its = append(its, &prefixIter{c: tx.Bucket(bPending).Cursor(), before: before})
				if s == Received && l.pendingByPosition() {
					// New records, after the lane cursor, are received
					// and pending by their position alone.
					its = append(its, &prefixIter{c: tx.Bucket(bRecords).Cursor(), before: before, floor: laneCursor(tx)})
				}
			default:
				byIndex = false // done and skipped are most records: read them in id order
			}
		}
		if byIndex {
			return union(its)
		}
	}
	return &prefixIter{c: tx.Bucket(bRecords).Cursor(), before: before}
}

// firstReceivedAt returns the lowest id of a record that arrived at or
// after t, by bisection over ids (arrival follows id order, see
// receivedSkew); 0 when every record arrived before t.
func firstReceivedAt(tx *bolt.Tx, t time.Time) uint64 {
	c := tx.Bucket(bRecords).Cursor()
	first, _ := c.First()
	last, lv := c.Last()
	if first == nil {
		return 0
	}
	if r, _, err := decodeRecord(btoi(last), lv); err != nil || r.Received.Before(t) {
		return 0
	}
	lo, hi := btoi(first), btoi(last) // answer in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		k, v := c.Seek(itob(mid))
		if k == nil {
			return 0
		}
		r, _, err := decodeRecord(btoi(k), v)
		if err != nil {
			return 0 // no shortcut on a damaged record: read from the top
		}
		if r.Received.Before(t) {
			lo = btoi(k) + 1
		} else {
			hi = btoi(k)
		}
	}
	return lo
}

// prefixIter walks the keys of a bucket that start with prefix and end
// with an 8-byte id, highest id first, below before (0: all) and above
// floor.
type prefixIter struct {
	c             *bolt.Cursor
	prefix        []byte
	before, floor uint64
	started, done bool
}

func (p *prefixIter) next() (uint64, bool) {
	if p.done {
		return 0, false
	}
	var k []byte
	if !p.started {
		p.started = true
		// The last key below prefix|before (or below the next prefix).
		seek := append(slices.Clone(p.prefix), itob(p.before)...)
		if p.before == 0 {
			seek = nextPrefix(p.prefix)
		}
		if seek == nil {
			k, _ = p.c.Last()
		} else if k, _ = p.c.Seek(seek); k == nil {
			k, _ = p.c.Last()
		} else {
			k, _ = p.c.Prev()
		}
	} else {
		k, _ = p.c.Prev()
	}
	if k == nil || len(k) != len(p.prefix)+8 || !bytes.HasPrefix(k, p.prefix) {
		p.done = true
		return 0, false
	}
	id := btoi(k[len(p.prefix):])
	if id <= p.floor {
		p.done = true
		return 0, false
	}
	return id, true
}

// nextPrefix is the smallest key after every key that starts with p; nil
// when there is none (p empty or all 0xff).
func nextPrefix(p []byte) []byte {
	out := slices.Clone(p)
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] != 0xff {
			out[i]++
			return out[:i+1]
		}
	}
	return nil
}

// unionIter merges iterators, highest id first, each id once.
type unionIter struct {
	its   []idIter
	heads []uint64
	ok    []bool
	last  uint64
}

func union(its []idIter) idIter {
	if len(its) == 1 {
		return its[0]
	}
	u := &unionIter{its: its, heads: make([]uint64, len(its)), ok: make([]bool, len(its))}
	for i, it := range its {
		u.heads[i], u.ok[i] = it.next()
	}
	return u
}

func (u *unionIter) next() (uint64, bool) {
	for {
		best := -1
		for i := range u.its {
			if u.ok[i] && (best < 0 || u.heads[i] > u.heads[best]) {
				best = i
			}
		}
		if best < 0 {
			return 0, false
		}
		id := u.heads[best]
		u.heads[best], u.ok[best] = u.its[best].next()
		if id != u.last || u.last == 0 {
			u.last = id
			return id, true
		}
	}
}

// sliceIter yields ids collected beforehand, already highest first.
type sliceIter []uint64

func (s *sliceIter) next() (uint64, bool) {
	if len(*s) == 0 {
		return 0, false
	}
	id := (*s)[0]
	*s = (*s)[1:]
	return id, true
}

// controlIDs collects the ids of the records whose key ends with suffix
// (of source's keys when source is set), below before, highest first. The
// key index is in key order, not id order, so it is read whole (its keys
// only; a million keys take about a tenth of a second here).
func controlIDs(tx *bolt.Tx, source, suffix string, before uint64) idIter {
	var ids []uint64
	c := tx.Bucket(bKeys).Cursor()
	var prefix []byte
	if source != "" {
		prefix = []byte(source + "|")
	}
	suf := []byte(suffix)
	k, v := c.First()
	if prefix != nil {
		k, v = c.Seek(prefix)
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if bytes.HasSuffix(k, suf) && len(v) == 8 {
			if id := btoi(v); before == 0 || id < before {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	it := sliceIter(ids)
	return &it
}

package sandbox

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The write journal is a test aid: once a test turns it on (POST
// /sandbox/v1/journal), the sandbox remembers each write the CRM API was
// asked for (object, key, method, the answer's status, created or not,
// the fields written) and how each $batch and each single write ended
// (answered, or committed and dropped), so that a test that finds a
// record missing or stale can show what the sandbox saw for its key
// (GET /sandbox/v1/journal?key=K). It is off by default: it keeps field
// values, which a test's synthetic patients may show but real ones must
// not. It keeps at most maxJournal entries, the oldest dropped first.

// maxJournal bounds the journal.
const maxJournal = 200_000

// JournalEntry is one write or one request's end.
type JournalEntry struct {
	Seq    int64     `json:"seq"`
	At     time.Time `json:"at"`
	Object string    `json:"object,omitempty"`
	// Key is the alternate key or external id as the request named it
	// ("msemr_medicalrecordnumber=GENHOSP|EO0066"), or "id=..." for a
	// row addressed by id.
	Key     string `json:"key,omitempty"`
	Method  string `json:"method,omitempty"`
	Status  int    `json:"status,omitempty"`
	Created bool   `json:"created,omitempty"`
	ID      string `json:"id,omitempty"`
	// Batch is the $batch request the write was part of (its Seq), 0
	// for a write of its own.
	Batch int64 `json:"batch,omitempty"`
	// Outcome, on the entry that ends a request: "answered" or
	// "dropped" (applied, connection cut before the answer).
	Outcome string `json:"outcome,omitempty"`
	// Parts is how many items of a $batch were run.
	Parts  int    `json:"parts,omitempty"`
	Fields Record `json:"fields,omitempty"`
	Error  string `json:"error,omitempty"`
}

type writeJournal struct {
	on      atomic.Bool
	seq     atomic.Int64
	mu      sync.Mutex
	entries []JournalEntry
}

// next reserves a sequence number (for a $batch, before its parts).
func (j *writeJournal) next() int64 { return j.seq.Add(1) }

// add keeps e when the journal is on.
func (j *writeJournal) add(e JournalEntry) {
	if !j.on.Load() {
		return
	}
	if e.Seq == 0 {
		e.Seq = j.next()
	}
	e.At = time.Now().UTC()
	if e.Fields != nil {
		e.Fields = copyRecord(e.Fields)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.entries) >= maxJournal {
		j.entries = append(j.entries[:0], j.entries[len(j.entries)-maxJournal/2:]...)
	}
	j.entries = append(j.entries, e)
}

// matching returns the entries whose Key contains key (case-insensitive),
// with the end entries of the batches they were part of and of the
// single writes to their rows.
func (j *writeJournal) matching(key string) []JournalEntry {
	j.mu.Lock()
	defer j.mu.Unlock()
	key = strings.ToLower(key)
	batches, ids := map[int64]bool{}, map[string]bool{}
	for _, e := range j.entries {
		if strings.Contains(strings.ToLower(e.Key), key) {
			batches[e.Batch] = e.Batch != 0
			ids[e.ID] = e.ID != ""
		}
	}
	out := []JournalEntry{}
	for _, e := range j.entries {
		switch {
		case key == "" || strings.Contains(strings.ToLower(e.Key), key):
		case e.Outcome != "" && (batches[e.Seq] || e.Batch == 0 && ids[e.ID]):
		default:
			continue
		}
		out = append(out, e)
	}
	return out
}

// journalOn serves POST /sandbox/v1/journal: from now on, writes are
// kept.
func (s *Server) journalOn(w http.ResponseWriter, r *http.Request) {
	s.journal.on.Store(true)
	w.WriteHeader(http.StatusNoContent)
}

// journalGet serves GET /sandbox/v1/journal?key=K: the entries of writes
// whose key contains K, and the ends of their batches, oldest first.
func (s *Server) journalGet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.journal.matching(r.URL.Query().Get("key")))
}

// journalBatchKey keys a $batch's sequence number in its parts' context.
type journalBatchKey struct{}

// batchSeq is the $batch a request is part of (0: none).
func batchSeq(r *http.Request) int64 {
	n, _ := r.Context().Value(journalBatchKey{}).(int64)
	return n
}

// String names the row a predicate addresses, for the journal.
func (p dvPredicate) String() string {
	if p.id != "" {
		return "id=" + p.id
	}
	return p.key.String()
}

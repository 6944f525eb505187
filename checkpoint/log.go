package checkpoint

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the log's file inside the data directory.
const FileName = "checkpoint.db"

// Defaults for Options.
const (
	DefaultDedupeWindow     = 30 * 24 * time.Hour
	DefaultPayloadRetention = 7 * 24 * time.Hour
	DefaultLockTimeout      = time.Second
)

// Errors callers act on.
var (
	// ErrLocked means another process has the log open for writing.
	ErrLocked = errors.New("checkpoint: the log is in use by another process")
	// ErrClosed is returned by calls on a closed Log.
	ErrClosed = errors.New("checkpoint: log is closed")
	// ErrNotFound is returned for an unknown record id.
	ErrNotFound = errors.New("checkpoint: no such record")
	// ErrTransition is returned for a state change the record's state does
	// not allow (done twice, say).
	ErrTransition = errors.New("checkpoint: state change not allowed")
	// ErrEncrypted means the log was written with encryption and no key is
	// configured.
	ErrEncrypted = errors.New("checkpoint: the log is encrypted and no key is configured")
	// ErrNewerSchema means the log was written by a newer ehrbridge than
	// this one: it must not be changed by code that does not know its
	// layout.
	ErrNewerSchema = errors.New("checkpoint: the log was written by a newer ehrbridge")
)

// Options configure Open. Zero values select the defaults.
type Options struct {
	// Writer names the program that opens the log for writing (its
	// version), kept in the log for `ehrbridge log stats` and upgrades.
	Writer           string
	LockTimeout      time.Duration // waiting for another process's lock; default 1s
	DedupeWindow     time.Duration // how long done records' keys are kept; default 30 days
	PayloadRetention time.Duration // how long done records' payloads are kept; default 7 days
	Keyring          *Keyring      // nil: payloads stored in clear
	ReadOnly         bool          // for admin tools on a stopped log
	Now              func() time.Time
	Logger           *slog.Logger
	// MaxBatch bounds how many appends share one commit; default 1024.
	MaxBatch int
	// OnCommit, when set, is called by the committing goroutine after each
	// group commit of appends, with the number of appends it carried and
	// its duration, once its appenders have their answers. It must return
	// quickly and must not call the Log. `ehrbridge bench ingest` uses it;
	// CommitStats gives the same as counters.
	OnCommit func(appends int, d time.Duration)
	// UnsafeNoSync skips fsync, so that nothing is durable. It exists for
	// `ehrbridge bench ingest` to measure the ingest path without the disk
	// (its CPU ceiling); the daemon never sets it and no config reaches it.
	// It skips the fsync after the file grows as well: with no fsync per
	// commit, that one flushed everything written since the last growth,
	// and its 10-20 ms stalls were most of the no-fsync phases' p99.
	UnsafeNoSync bool
	// DeferStorageErrors makes Open return a Log that is not open yet,
	// rather than an error, when the file system refuses the writes the
	// opening needs (a new log on a full disk, an older log's migration,
	// a read-only data directory): every call answers the StorageError
	// (see StorageProblem) until Resume, or an Append, opens it. The
	// daemon sets it, so that it starts whatever state its disk is in;
	// commands on a stopped log do not, and fail clearly instead.
	DeferStorageErrors bool

	// CRM names the CRM (Salesforce org, Dataverse environment, sandbox)
	// the records are sent to; a writable open records it in the log.
	// Opening for another CRM than the one recorded while records are
	// pending fails with a *CRMChangeError, unless AcceptCRMChange. ""
	// (the log commands) neither checks nor records one.
	CRM             string
	AcceptCRMChange bool

	// rebuildFreelist opens the log as releases before issue 27 did,
	// without bbolt's free list in the file; for the benchmark that
	// measures what keeping it costs each commit.
	rebuildFreelist bool
}

// Log is an open checkpoint log. Its methods are safe for concurrent use.
type Log struct {
	db   *bolt.DB
	path string
	opts Options
	salt []byte
	// laneMACs holds HMACs keyed with salt, reset after use: keying one
	// costs two hash blocks and allocations on every append.
	laneMACs sync.Pool
	// encrypted says the log was written with a key (its salt is sealed),
	// whether or not this process has the key.
	encrypted bool
	// schema is the layout of the file as read: schemaVersion, or older
	// for a read-only open, which does not migrate.
	schema uint64

	// Group commit (see lead): queued appends, whether one is committing,
	// whether Close has begun, and the appends not yet answered.
	wmu        sync.Mutex
	queue      []*appendOp
	committing bool
	stopping   bool
	inflight   sync.WaitGroup
	// The last commit's size and duration, and the leader's wait for a
	// batch as large (see lead).
	lastBatch  int
	lastCommit time.Duration
	gathering  bool
	gathered   chan struct{}
	// commitStats counts the group commits (see CommitStats).
	commitStats commitCounters

	// sealCache keeps Stats's count of what is not under the active key.
	sealCache sealCache

	// storage tracks writes the file system refused (storage.go).
	storage storageState
	// loaded says Open has read the schema and salt (set before the Log
	// is shared, read only after).
	loaded bool
	// opened says the file is open and db, salt, schema and encrypted
	// are set; they are written only before it becomes true (openFile),
	// and read only after it is seen true. A Log Open returned unopened
	// (DeferStorageErrors) has it false until finishOpening opens it.
	opened atomic.Bool

	closeOnce sync.Once
	mu        sync.RWMutex // held for reading by calls, for writing by Close
	closed    bool
}

var (
	bMeta      = []byte("meta")
	bRecords   = []byte("records")   // id → record
	bKeys      = []byte("keys")      // record key → id
	bPending   = []byte("pending")   // id → ∅: received (indexed), in progress, retrying
	bLanes     = []byte("lanes")     // lane hash | id → ∅, for pending records up to the lane cursor
	bReady     = []byte("ready")     // readyAt | id → ∅: the claimable head of each lane
	bInflight  = []byte("inflight")  // id → ∅: in progress
	bDone      = []byte("done")      // doneAt | id → ∅
	bDead      = []byte("dead")      // id → ∅
	bConflicts = []byte("conflicts") // seq → conflict
	bSources   = []byte("sources")   // a source's own state (a FHIR source's watermarks) by key
	// bSkipped indexes skipped records as bDone does done ones. A log
	// last written by an ehrbridge without the skipped state lacks it
	// until it is next opened for writing (read-only opens find nil).
	bSkipped = []byte("skipped") // skippedAt | id → ∅
	// bPatients indexes every record by its lane (the patient), whatever
	// its state, from schema 4 (patients.go); bHistory keeps each record's
	// history (history.go).
	bPatients  = []byte("patients") // lane hash | id → ∅
	bHistory   = []byte("history")  // id → events
	allBuckets = [][]byte{bMeta, bRecords, bKeys, bPending, bLanes, bReady, bInflight, bDone, bDead, bConflicts, bSources, bSkipped,
		bPatients, bHistory}

	metaSchema      = []byte("schema")
	metaWrittenBy   = []byte("written_by") // schema 2: the last program that opened the log for writing
	metaSalt        = []byte("lane_salt")
	metaSweepCursor = []byte("sweep_payload_cursor")
	metaLaneCursor  = []byte("lane_cursor") // last record id put in its lane
)

// schemaVersion is the layout this code writes. An older log is migrated
// when opened for writing (migrations[v] takes a log from v to v+1, in the
// same transaction as the rest of the opening); a newer one is refused.
// Read-only opens accept every version from minReadableSchema up to this
// one without migrating.
const (
	schemaVersion     = 4
	minReadableSchema = 1
)

// migrations[v] moves a log from schema v to v+1.
var migrations = map[uint64]func(tx *bolt.Tx) error{
	// 1 → 2: the log names the program that last wrote it.
	1: func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(metaWrittenBy, []byte("ehrbridge (schema 1)")) },
	// 2 → 3: records are written in binary (record version 2), payloads
	// compressed; version 1 records stay readable as they are and take the
	// new form when they next change. Records after the lane cursor are
	// pending by position, no longer in the pending index: their entries
	// go.
	2: func(tx *bolt.Tx) error {
		pending := tx.Bucket(bPending)
		var drop [][]byte
		c := pending.Cursor()
		for k, _ := c.Seek(itob(laneCursor(tx) + 1)); k != nil; k, _ = c.Next() {
			drop = append(drop, append([]byte(nil), k...))
		}
		for _, k := range drop {
			if err := pending.Delete(k); err != nil {
				return err
			}
		}
		return nil
	},
	// 3 → 4: every record is indexed by its patient (lane), whatever its
	// state, and keeps a history; the index is built here from the
	// records, the history starts empty.
	3: rebuildPatients,
}

// pendingByPosition says whether new records (after the lane cursor) are
// pending by their position alone, out of the pending index: from schema
// 3. Before, every new record was in the pending index at once; a
// read-only open of such a log reads it that way.
func (l *Log) pendingByPosition() bool { return l.schema >= 3 }

// SchemaVersion is the log layout this ehrbridge writes.
func SchemaVersion() int { return schemaVersion }

// Open opens or creates the log at path, recovers records that were in
// progress when it was last closed, and starts the committer.
func Open(path string, opts Options) (*Log, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = DefaultDedupeWindow
	}
	if opts.PayloadRetention <= 0 {
		opts.PayloadRetention = DefaultPayloadRetention
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	l := &Log{path: path, opts: opts, gathered: make(chan struct{}, 1)}
	err := l.openFile()
	if err == nil {
		return l, nil
	}
	if !opts.DeferStorageErrors || opts.ReadOnly || !errors.Is(err, ErrStorage) {
		if l.db != nil { // kept open for a retry of a migration
			l.db.Close()
		}
		return nil, err
	}
	// The daemon starts whatever state its disk is in: a log it cannot
	// create, migrate or open for writing yet is returned unopened, every
	// call answers the StorageError, and Resume (or the next Append)
	// retries the opening (a log to migrate stays open meanwhile, its
	// lock held).
	l.storage.note(err)
	opts.Logger.Error("checkpoint log not opened: its file system refuses writes; appends are answered with an error until it takes them again",
		"err", err)
	return l, nil
}

// openFile opens the log's file and makes the opening's writes (init,
// migration, the return of records left in progress), setting opened when
// the Log may be used. It is called by Open before the Log is shared, and
// for a Log Open returned unopened by finishOpening, with startMu held.
// On an error l.db is nil and the Log stays unopened.
func (l *Log) openFile() (err error) {
	opts := l.opts
	if l.db == nil {
		db, freelistOff, err := openBolt(l.path, opts)
		if err != nil {
			return err
		}
		l.db = db
		l.storage.freelistOff = freelistOff
	}
	// keep says the file stays open although the opening failed: a log
	// that must be migrated keeps its lock, and a retry does not open
	// the file again (for a log without the free list in its file that
	// walks every page).
	keep := false
	defer func() {
		if err != nil && !keep {
			l.db.Close()
			l.db = nil
		}
	}()
	err = l.init()
	l.loaded = err == nil
	if err != nil {
		// A full disk (or a read-only one) must not keep the daemon from
		// starting: a log that needs no migration and has its salt is
		// usable as it is read, and what the opening writes waits for
		// the next write (finishOpening).
		if opts.ReadOnly || StorageKindOf(err) == 0 {
			return err
		}
		if lerr := l.loadForDeferredOpening(); lerr != nil {
			// An older schema: the migration must be written before
			// the log is used.
			keep = true
			return asStorage("migrating the log", err)
		}
		l.loaded = true
		l.storage.pending.Store(true)
		l.storage.note(asStorage("opening the log", err))
		l.opened.Store(true)
		opts.Logger.Error("checkpoint log opened without writing: its file system refuses writes; appends are answered with an error until it takes them again",
			"err", err)
		return nil
	}
	if opts.ReadOnly {
		l.opened.Store(true)
		return nil
	}
	if l.storage.freelistOff {
		// init wrote without the free list: write it at the next write.
		l.storage.pending.Store(true)
	}
	recovered, err := l.recoverInflight()
	if err != nil {
		if StorageKindOf(err) == 0 {
			return err
		}
		l.storage.pending.Store(true)
		l.storage.note(asStorage("returning records in progress to retrying", err))
		l.opened.Store(true)
		opts.Logger.Error("checkpoint records in progress at the last stop could not be returned to retrying: the file system refuses writes; they will be once it takes them again",
			"err", err)
		return nil
	}
	l.opened.Store(true)
	if recovered > 0 {
		opts.Logger.Warn("checkpoint records in progress at the last stop returned to retrying", "records", recovered)
	}
	return nil
}

// openBolt opens (or creates) the bbolt file of the log at path. It says
// whether it had to open without writing the free list (see below).
func openBolt(path string, opts Options) (*bolt.DB, bool, error) {
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, asStorage("creating the data directory", fmt.Errorf("checkpoint: creating data directory: %w", err))
		}
	} else if _, err := os.Stat(path); err != nil {
		return nil, false, fmt.Errorf("checkpoint: opening %s: %w", path, err)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	bopts := &bolt.Options{
		Timeout:    opts.LockTimeout,
		ReadOnly:   opts.ReadOnly,
		NoSync:     opts.UnsafeNoSync,
		NoGrowSync: opts.UnsafeNoSync,
		// The free list is kept in the file (NoFreelistSync false): without
		// it every open walks every page to rebuild it, 32 s for a 2.2 GB
		// log on a cold cache, and the EHR is refused meanwhile. A log
		// written without it (before issue 27) is walked once, at its first
		// open, and keeps it from the first commit on. Cost per commit and
		// time to ready: ehrbridge bench ingest / bench open.
		NoFreelistSync: opts.rebuildFreelist,
		FreelistType:   bolt.FreelistMapType,
	}
	db, err := bolt.Open(path, 0o600, bopts)
	freelistOff := false
	if err != nil && !opts.ReadOnly && !created && !bopts.NoFreelistSync && StorageKindOf(err) != 0 {
		// A log without the free list in its file (before issue 27) gets
		// it written at bbolt's open, a commit that needs room. Open
		// without it and write it when the opening is finished.
		bopts.NoFreelistSync, freelistOff = true, true
		db, err = bolt.Open(path, 0o600, bopts)
	}
	if err != nil {
		if created {
			// bbolt writes a new file's first pages at open: a partial
			// file left by a full disk would not open again once room
			// frees. Nothing was stored in it.
			_ = os.Remove(path)
		}
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, false, fmt.Errorf("%w: %s is locked (is another ehrbridge running with this data directory?)", ErrLocked, path)
		}
		if k := StorageKindOf(err); k != 0 {
			op := "opening the log"
			if created {
				op = "creating the log"
			}
			return nil, false, &StorageError{Kind: k, Op: op, Err: err}
		}
		return nil, false, fmt.Errorf("checkpoint: opening %s: %w", path, err)
	}
	return db, freelistOff, nil
}

// loadForDeferredOpening reads what init would have written, for a log
// whose opening cannot write: it must be at this schema (a migration
// writes) and have its lane salt.
func (l *Log) loadForDeferredOpening() error {
	return l.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil || len(meta.Get(metaSchema)) != 8 || btoi(meta.Get(metaSchema)) != schemaVersion {
			return errors.New("checkpoint: the log needs writing before use")
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return errors.New("checkpoint: the log needs writing before use")
			}
		}
		l.schema = schemaVersion
		return l.loadSalt(meta.Get(metaSalt))
	})
}

// Path returns the log's file.
func (l *Log) Path() string { return l.path }

// init creates the buckets and the lane salt, or checks them.
func (l *Log) init() error {
	load := func(tx *bolt.Tx) error {
		if l.loaded {
			// Writing what a deferred opening owes (finishOpening):
			// the fields were read at Open and are in use.
			return nil
		}
		meta := tx.Bucket(bMeta)
		if meta == nil {
			return errors.New("checkpoint: not an ehrbridge checkpoint log (no meta bucket)")
		}
		v := meta.Get(metaSchema)
		if len(v) != 8 {
			return errors.New("checkpoint: the log has no schema version; it is damaged or not an ehrbridge log")
		}
		switch got := btoi(v); {
		case got > schemaVersion:
			return fmt.Errorf("%w: %s has log schema %d, this ehrbridge reads up to %d. Run the newer ehrbridge, or restore the backup taken before the upgrade (ehrbridge log backup)",
				ErrNewerSchema, l.path, got, schemaVersion)
		case got < minReadableSchema:
			return fmt.Errorf("checkpoint: %s has log schema %d, older than this ehrbridge can read (%d): upgrade through an intermediate release", l.path, got, minReadableSchema)
		case got < schemaVersion && !l.opts.ReadOnly:
			return fmt.Errorf("checkpoint: %s still has log schema %d after migration", l.path, got)
		}
		l.schema = btoi(v)
		return l.loadSalt(meta.Get(metaSalt))
	}
	if l.opts.ReadOnly {
		return l.db.View(load)
	}
	var migratedFrom uint64
	var crmChanged *CRMChangeError
	err := l.db.Update(func(tx *bolt.Tx) error {
		crmChanged = nil
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if meta.Get(metaSchema) == nil {
			if err := meta.Put(metaSchema, itob(schemaVersion)); err != nil {
				return err
			}
		}
		from, err := l.migrate(tx)
		if err != nil {
			return err
		}
		migratedFrom = from
		if crmChanged, err = l.bindCRM(tx); err != nil {
			return err
		}
		if l.opts.Writer != "" {
			if err := meta.Put(metaWrittenBy, []byte(l.opts.Writer)); err != nil {
				return err
			}
		}
		stored := meta.Get(metaSalt)
		if stored == nil {
			salt := make([]byte, 32)
			if _, err := rand.Read(salt); err != nil {
				return err
			}
			stored = append([]byte{0}, salt...)
			if err := meta.Put(metaSalt, stored); err != nil {
				return err
			}
		}
		if err := load(tx); err != nil {
			return err
		}
		// Keep the salt sealed with the active key: a log that gains a
		// key, or rotates it, re-seals the salt here.
		want := append([]byte{0}, l.salt...)
		if l.opts.Keyring != nil {
			if id, ok := sealedWith(stored[1:]); stored[0] == 1 && ok && id == l.opts.Keyring.active {
				return nil
			}
			want = append([]byte{1}, l.opts.Keyring.seal(l.salt, metaSalt)...)
		}
		if bytes.Equal(want, stored) {
			return nil
		}
		return meta.Put(metaSalt, want)
	})
	if err == nil && migratedFrom != 0 {
		// Logged once committed: a migration the disk refused is
		// retried (finishOpening) and would otherwise be reported as
		// done at each attempt.
		l.opts.Logger.Info("checkpoint log migrated", "from_schema", migratedFrom, "to_schema", schemaVersion)
	}
	if err == nil && crmChanged != nil {
		l.opts.Logger.Warn("the CRM changed while records were pending (--accept-crm-change): they go to the new CRM",
			"previous_crm", crmChanged.Stored, "crm", crmChanged.Configured, "pending", crmChanged.Pending)
	}
	return err
}

// migrate brings an older log to schemaVersion, one step at a time; the
// caller's transaction makes it all or nothing. A newer log is left alone
// (load refuses it). It returns the schema it migrated from, 0 when it
// did not migrate.
func (l *Log) migrate(tx *bolt.Tx) (uint64, error) {
	meta := tx.Bucket(bMeta)
	v := meta.Get(metaSchema)
	if len(v) != 8 {
		return 0, nil // load reports it
	}
	from := btoi(v)
	for ver := from; ver < schemaVersion && ver >= minReadableSchema; ver++ {
		step, ok := migrations[ver]
		if !ok {
			return 0, fmt.Errorf("checkpoint: no migration from log schema %d", ver)
		}
		if err := step(tx); err != nil {
			return 0, fmt.Errorf("checkpoint: migrating the log from schema %d: %w", ver, err)
		}
		if err := meta.Put(metaSchema, itob(ver+1)); err != nil {
			return 0, err
		}
	}
	if from < schemaVersion && from >= minReadableSchema {
		return from, nil
	}
	return 0, nil
}

func (l *Log) loadSalt(v []byte) error {
	if len(v) < 1 {
		return errors.New("checkpoint: lane salt missing")
	}
	l.encrypted = v[0] == 1
	switch v[0] {
	case 0:
		l.salt = append([]byte(nil), v[1:]...)
	case 1:
		if l.opts.Keyring == nil {
			if l.opts.ReadOnly {
				// Admin views need no salt (only Append hashes lanes);
				// revealing a payload still needs the key.
				return nil
			}
			return ErrEncrypted
		}
		salt, err := l.opts.Keyring.open(v[1:], metaSalt)
		if err != nil {
			return fmt.Errorf("checkpoint: lane salt: %w", err)
		}
		l.salt = salt
	default:
		return errors.New("checkpoint: lane salt has an unknown format")
	}
	return nil
}

// LaneHash is the keyed hash the log stores for a lane key. An empty lane
// key gives each record a lane of its own (see Append). The key (the lane
// salt) is read from the file: on a log not open yet (StorageProblem) the
// hash is not the log's, and Append opens the log before hashing.
func (l *Log) LaneHash(lane string) [16]byte {
	if !l.opened.Load() {
		// Never pooled: a MAC keyed without the salt must not outlive
		// the opening.
		var h [16]byte
		m := hmac.New(sha256.New, nil)
		m.Write([]byte(lane))
		copy(h[:], m.Sum(nil))
		return h
	}
	sum := l.saltMAC([]byte(lane))
	var h [16]byte
	copy(h[:], sum[:])
	return h
}

// saltMAC is the HMAC-SHA256 of the parts under the log's salt, from a
// pool of MACs (the ingest path computes one or two per record).
func (l *Log) saltMAC(parts ...[]byte) [sha256.Size]byte {
	m, _ := l.laneMACs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, l.salt)
	}
	for _, p := range parts {
		m.Write(p)
	}
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	m.Reset()
	l.laneMACs.Put(m)
	return sum
}

// keyedHash is the form a content hash is stored in when a key is
// configured: an HMAC under the log's salt (sealed with the key), apart
// from the lane hashes by its prefix.
func (l *Log) keyedHash(h [32]byte) [32]byte {
	return l.saltMAC(contentHashPrefix, h[:])
}

var contentHashPrefix = []byte("ehrbridge content hash\x00")

// recoverInflight returns records left in progress by a crash to retrying,
// ready now.
func (l *Log) recoverInflight() (int, error) {
	n := 0
	err := l.db.Update(func(tx *bolt.Tx) error {
		var ids []uint64
		_ = tx.Bucket(bInflight).ForEach(func(k, _ []byte) error {
			ids = append(ids, btoi(k))
			return nil
		})
		now := l.opts.Now()
		for _, id := range ids {
			r, payload, err := getRecord(tx, id)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bInflight).Delete(itob(id)); err != nil {
				return err
			}
			if r.State != InProgress {
				continue
			}
			// A restart is not an answer from the CRM: the attempt count
			// (and with it the backoff) stays, and the record is retried
			// at once. After a crash loop, a record that met one brief
			// CRM error is not parked for the longest backoff.
			r.State, r.ReadyAt, r.Updated = Retrying, now, now
			r.Reason = "interrupted by a restart"
			if err := putRecord(tx, r, payload); err != nil {
				return err
			}
			if err := tx.Bucket(bReady).Put(timeKey(r.ReadyAt, id), nil); err != nil {
				return err
			}
			if err := addHistory(tx, id, Event{At: now, Kind: EventInterrupted, State: Retrying, Reason: r.Reason}); err != nil {
				return err
			}
			if err := addCount(tx, InProgress, -1); err != nil {
				return err
			}
			if err := addCount(tx, Retrying, 1); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// Close stops accepting appends, lets those already queued commit, and
// closes the file. It is safe to call more than once.
func (l *Log) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.wmu.Lock()
		l.stopping = true
		l.wmu.Unlock()
		l.inflight.Wait()
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		// Every opening ran under mu (read) or inside an append that
		// Close waited for: db is settled.
		if l.db != nil {
			err = l.db.Close()
		}
	})
	return err
}

// view and update run fn unless the log is closed.
func (l *Log) view(fn func(tx *bolt.Tx) error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	if !l.opened.Load() {
		return l.unopened()
	}
	return l.db.View(fn)
}

func (l *Log) update(fn func(tx *bolt.Tx) error) error {
	if l.opts.ReadOnly {
		return errors.New("checkpoint: log is open read-only")
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	if err := l.finishOpening(); err != nil {
		return err
	}
	if err := l.payOwed(); err != nil {
		return err
	}
	err := asStorage("a state change", l.db.Update(fn))
	l.storage.note(err)
	return err
}

func getRecord(tx *bolt.Tx, id uint64) (*Record, []byte, error) {
	v := tx.Bucket(bRecords).Get(itob(id))
	if v == nil {
		return nil, nil, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	return decodeRecord(id, v)
}

func putRecord(tx *bolt.Tx, r *Record, payload []byte) error {
	v, err := encodeRecord(r, payload)
	if err != nil {
		return err
	}
	return tx.Bucket(bRecords).Put(itob(r.ID), v)
}

func countKey(s State) []byte { return []byte("count/" + s.String()) }

var countConflicts = []byte("count/conflicts")

// metaSweepSkipped is the payload sweep's cursor for skipped records.
var metaSweepSkipped = []byte("sweep_payload_cursor_skipped")

func addCount(tx *bolt.Tx, s State, delta int64) error {
	return addCounter(tx, countKey(s), delta)
}

func addCounter(tx *bolt.Tx, key []byte, delta int64) error {
	meta := tx.Bucket(bMeta)
	var n int64
	if v := meta.Get(key); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	return meta.Put(key, itob(uint64(n+delta)))
}

func counter(tx *bolt.Tx, key []byte) int64 {
	if v := tx.Bucket(bMeta).Get(key); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

// Package checkpoint is ehrbridge's durable log: every inbound message is
// appended here, fsynced, before its sender is acknowledged, and is worked
// off from here.
//
// # Records and keys
//
// A record is identified twice: by a sequential ID (its position in the
// log) and by its key, the sender's identity for the message (for HL7:
// source | MSH-3 | MSH-4 | MSH-10). Append looks the key up first: the same
// key with the same content hash is a retransmit, answered with the ACK
// bytes stored with the original; the same key with different content is
// a conflict, recorded for an admin and not queued. An entry may name a
// LegacyKey, the key an earlier release gave the same message: a record
// under it with the same hash is a retransmit too (and one with another
// hash is not a conflict), so that a change of key form does not turn
// retransmits across an upgrade into new records.
//
// # Durability and group commit
//
// Append returns only after the bbolt transaction holding the record has
// been committed and fsynced. Concurrent appenders share one transaction:
// the appender that finds no commit running commits everything queued, its
// own record included, answers the others and hands the lead to whoever
// queued meanwhile. With one sender that is one commit per record and no
// hand-off between goroutines; with many it shares the fsync. bbolt's own
// Batch is not used: called from one goroutine it waits out its batch delay
// on every call. Records are encoded (compressed and sealed) before they
// are queued, and the pending and lane indexes are written later by Claim
// (a record after the lane cursor is pending by its position), so the
// commit a sender waits on only looks up its key and appends.
//
// # States and lanes
//
// received → in_progress → done | skipped | retrying → in_progress ... |
// dead. Skipped is for a record nothing was to be done with (no mapping
// accepts its message): acknowledged and stored, not applied, kept apart
// from done so that "synced" and "ignored" can be told apart. A done
// record may carry warnings (fields its mapping left out) as its reason
// (Record.Warned); they are not counted in the log, so that no counter can
// drift from the records. Each record carries a lane (the patient's identity)
// and only the oldest unfinished record of a lane is ever offered by
// Claim, so one patient's events apply in arrival order while different
// patients proceed in parallel. Done, skipped and dead records leave their
// lane in the same transaction that records the outcome; an admin may put
// dead and skipped ones back (Requeue). Records in progress when the
// process stopped are returned to retrying when the log is next opened.
//
// The skipped state (6) and its index came without a schema change: an
// older ehrbridge of schema 3 opens such a log, shows skipped records as
// "state(6)", counts them nowhere and never sweeps them (their keys stay
// for dedupe); its log check passes. Once the newer ehrbridge is back, it
// sweeps them again.
//
// # What is stored, and what is protected
//
// A record is stored in binary (record version 2, log schema 3): its
// metadata, the ACK bytes, then the payload, compressed with S2 when that
// saves a sixteenth or more, then sealed. Logs of schema 1 and 2 held JSON
// metadata (record version 1); such records are read as they are and take
// the binary form when they next change. Smaller records mean fewer pages
// per commit, so less to write and fsync while a sender waits.
//
// Payloads are sealed with AES-256-GCM when a Keyring is given, bound to
// their record key; a new active key can be added while older keys stay
// readable. Lane keys are patient identifiers, so the log stores only an
// HMAC of them under a per-log salt, which is itself sealed when a Keyring
// is given. With a Keyring, conflict payloads, source state values
// (sources.go), records' details (the CRM's messages, details.go) are
// sealed too, and content hashes are stored keyed with the salt
// (Record.Hash; bare hashes of older records still dedupe). Record keys
// and ACK bytes hold sender and control ids, not patient data, and are
// stored in clear. Reseal brings what was stored before a key was
// configured, or under an older key, under the active key, and compacts
// the file so that freed pages keep no clear copy; SealStats counts what
// it would change.
//
// # A full disk
//
// A write the file system refuses for want of room (ENOSPC), quota
// (EDQUOT), because it is read-only (EROFS) or because the file may not
// grow (EFBIG) is a StorageError (errors.Is ErrStorage); bbolt formats
// some of these causes into text, so StorageKindOf also reads the errno's
// text. The log stays open: the append is refused (the source answers AE)
// and StorageProblem says why until a write succeeds. Open does not fail
// on such a disk either, after a crash too: what the opening writes (its
// bookkeeping, the free list of a log from before issue 27, the return of
// records left in progress to retrying) is written before the next write
// that succeeds, so nothing is claimed before those records are back, and
// Resume retries it. A refused Settle is kept in memory and written the
// same way, so that a batch sent while the disk was full does not stay in
// progress until a restart. A log that must be created or migrated, or a
// file the process cannot open for writing at all (a data directory
// mounted read-only before the start), cannot be opened without writing:
// with Options.DeferStorageErrors (the daemon) Open returns it not open
// yet, every call answering the StorageError, and Resume or the next
// Append retries the whole opening (create, migrate, return records in
// progress); without it (the offline commands) Open returns the error.
//
// # Finding records, their history, admin actions
//
// Schema 4 indexes every record by its lane (the patient's keyed hash),
// whatever its state, in the append's transaction (patients.go), and keeps
// each record's history: every settlement (the CRM's code, the op and
// object it concerns, ids returned, next retry) and every admin action
// with its actor, the newest MaxHistory (history.go). Find selects records
// by state, type, source, arrival, control id and lanes, newest first,
// paged, from metadata only and with a bound on the records one call reads
// (find.go); PatientLanes hashes the lane keys a patient may have. The
// admin actions (actions.go) record their actor: RequeueBy,
// RequeueSelection, CloseRecord (a dead record becomes skipped, "closed
// by" the admin, the admin's words sealed as its detail), Release (a
// retrying record ready now) and ResolveConflict (keep the stored message,
// or accept the conflicting one and requeue the record). An ehrbridge of
// schema 3 refuses a schema 4 log; this one migrates a schema 3 log at
// its first writable open, building the index from the records.
//
// # Retention
//
// Sweep drops the payloads of done and skipped records after
// PayloadRetention (their metadata, patient index entry and history stay)
// and deletes them, keys, index entries and history included, after
// DedupeWindow;
// unfinished and dead records are never removed. bbolt files do not shrink: Compact
// rewrites a log that is not open elsewhere.
package checkpoint

// Package storage keeps every message durably until its recipient
// acknowledges it: per-recipient mailboxes, the sequence high-water mark,
// duplicate detection and group membership, behind the Store interface.
//
// Open returns the Badger store; NewMemory an in-memory one for tests that
// follows the same rules (it shares the engine, only the bytes live in
// maps). storage/storagetest holds the conformance suite both pass.
//
// # The path of a write
//
//	worker ──Append(e, done)──▶ commit queue (Config.QueueLen, blocks when full)
//	                               │
//	                               ▼  committer goroutine (one)
//	             take every queued op, up to Config.MaxBatch / MaxBatchBytes
//	             apply each to one Badger transaction: check seq, retries
//	             for duplicates, limits;
//	             write entries, dedupe records, then the metas that are due
//	                               │
//	                               ▼  txn.Commit with SyncWrites: one fsync,
//	                                  meanwhile the next retries' dedupe lookups
//	             call done for every op of the batch, in queue order
//
// # Durability and ordering, method by method
//
//   - Append: done(nil) is called only after the transaction holding the
//     entry, its dedupe record and the recipient's new high-water mark is
//     fsynced. A kill -9 after done(nil) loses nothing; before it, the entry
//     is either wholly there or wholly absent. done(err) means the entry is
//     not stored, except after ErrCommit, where it may or may not be (a
//     retry is then caught as a duplicate). Appends are applied in queue
//     order, so one worker's appends for a recipient commit in seq order, and
//     their callbacks run in that order too.
//   - Ack: the deletions and the new floor commit atomically; done runs
//     after the fsync, with receipts for exactly the message entries that
//     this ack deleted (each entry yields at most one receipt, ever).
//     Expired entries are deleted without a receipt. An ack larger than
//     Config.MaxBatch entries commits in several transactions; each is a
//     valid cumulative state, and done runs after the last.
//   - LastSeq, Read, Lookup, Members, Role, Groups: read committed data
//     only, from a consistent snapshot, on the caller's goroutine. They do
//     not queue behind the committer, but a Badger read waits for the
//     commit in progress, if any (about one fsync), and then sees it.
//   - CreateGroup, AddMember, RemoveMember, DeleteGroup: committed and
//     fsynced through the same group commit before they return.
//   - Close: commits everything queued, runs its callbacks, then closes
//     Badger, which flushes its memtables.
//
// A failed commit fails every op in it with ErrCommit, and the store then
// refuses every write with the same error: after a failed fsync nothing is
// known about the disk until the store is reopened, and Badger replays its
// log. Nothing is ever acknowledged that was not committed.
//
// # Sequences
//
// The recipient's worker assigns seqs (LastSeq()+1, +2, ...). The store
// rejects a seq at or below the high-water mark (ErrSeqOrder). The mark is
// durable in the same transaction as every append: the entry's key holds the
// seq, and the recipient's meta record ('h' key) is rewritten on the first
// append, an append to an empty mailbox, every 16th append, and every ack
// or expiry, so the mark is max(meta hw, last entry key) and survives
// drains and restarts. (Rewriting the meta on every append would cost a
// third of the keys a batch writes.) Gaps are allowed (a refused append
// leaves one); readers must not expect seqs to be contiguous. Reads seek
// straight to the recipient's floor (the last deleted seq) and never walk
// the tombstones below it.
//
// # Callbacks
//
// done callbacks run on the committer goroutine (or, for an op refused
// before queueing, on the caller's). They must not block and must not call
// the Store's write methods or Close: hand the result to your own goroutine.
//
// # Housekeeping
//
// Every Config.HousekeepingInterval, a timer runs Badger's value-log GC and,
// when the store was quiet since the last round (fewer than 16 commits) and
// the data folder holds more garbage than live data (and at least 16 MiB of
// it), flushes the memtables and flattens the LSM tree so the space of
// drained mailboxes comes back. Under traffic Badger's own compaction does
// it: a flatten stops writes and takes a core for seconds. Up to 720 times per MessageTTL it also
// deletes the expired heads of mailboxes (counted in Stats.ExpiredDeleted).
// Dedupe records expire through Badger's TTL (the memory store prunes them).
package storage

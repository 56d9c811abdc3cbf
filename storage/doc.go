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
//	             every queued op, urgent (message, group event, group
//	             change) or relaxed (ack, receipt, expiry), up to
//	             Config.MaxBatch / MaxBatchBytes, goes into one batch; while
//	             urgent ops come more often than one per Config.SyncDelay,
//	             it waits for as many more as that rate puts within
//	             SyncDelay of its oldest being queued:
//	             check seq, retries for duplicates, limits, the
//	             free-space floor; write entries, dedupe records, pending
//	             receipts, then the metas that are due
//	                               │
//	                               ▼  commit: the batch is one record of the
//	                                  in-flight log (pwrite: survives a crash
//	                                  of the process), then applied to the
//	                                  in-flight tier in memory (tier.go)
//	                               ▼  sync (fdatasync of the log), only if the
//	                                  batch holds an urgent op, or relaxed
//	                                  appends have waited RelaxedDelay: one
//	                                  sync per batch of sends
//	             call done for every op of the batch, in queue order; a relaxed
//	             append's done waits for the sync that covers it
//	                               │
//	                               ▼  tidy: what is still in the tier
//	                                  Config.SpillAfter after its write (and
//	                                  dedupe records once 64 wait) is written
//	                                  into Badger; log segments nothing needs
//	                                  any more are deleted
//
// # The in-flight tier: Badger only for what waits
//
// Most of what a message round writes lives for milliseconds: the entry
// until the recipient's ack, the pending receipt until the receipt entry
// settles it, the receipt entry until the sender's ack, and the metas and
// totals until the next batch rewrites them. Written into Badger, each was
// a memtable insert and a write to its log, and each deletion a tombstone
// that lived on through flushes and compactions: under the phone regime,
// a third of the server's CPU. The Badger store therefore keeps recent
// writes in an in-flight tier (tier.go): a copy-on-write B-tree in memory,
// made durable by its own sequential log (tierlog.go) of one record per
// batch, written with pwrite into segments whose blocks were written
// before (zeroed, or recycled from a retired segment) and synced with
// fdatasync. A key written and deleted within Config.SpillAfter (5 s)
// never reaches Badger. What is still there after that (an entry whose
// recipient is offline) is spilled into Badger, and so is the oldest while
// the tier holds more than twice Config.MemTableSize. Reads see the tier
// over Badger. Recovery is replay, then serve: at open, every record of
// the log is applied to Badger before anything else. tier.go says why
// nothing committed is lost.
//
// The memory store has no tier: its maps are the tier.
//
// # Syncs: what must be on disk before whom is told
//
// A sync costs about 0.1-0.4 ms here, and a message round makes four
// writes: the send's append, the recipient's ack (a delete), the receipt's
// append in the sender's mailbox, and the sender's ack of the receipt. Only
// the first is promised to anyone before it happens (the ACCEPT), so only
// batches holding such urgent writes sync before they call back. The rest
// commit unsynced and ride on the next sync:
//
//   - A lost ack (a crash of the machine before a later sync) only causes a
//     redelivery, which clients drop by msg id.
//   - The ack's receipts are recorded as pending receipts (PendingReceipt)
//     in the batch that deletes the entries, so the deletion and the debt
//     of a receipt live or die together: if the ack is lost, the entries
//     come back and the next ack makes the receipts again; if it is kept,
//     so is the debt, which delivery pays at start (PendingReceipts).
//   - The receipt entry settles its pending receipt in its own batch
//     (Entry.Settles), so the entry and the end of the debt also live or
//     die together. Its done still waits for a sync, so that no client is
//     ever sent a seq that a crash of the machine could take back.
//
// A crash of the process (kill -9) loses nothing committed: the log's
// records are in the page cache, which the kernel keeps, and a batch is one
// record with a checksum, replayed whole or not at all. A crash of the
// machine loses at most the unsynced tail of the log: acks, receipts and
// expiry since the last sync, all of which are redone. Badger only ever
// receives, by spilling, what the log had synced, and a segment of the log
// is deleted only once Badger holds its writes durably (synced, and every
// memtable that held them flushed), so Badger's own unsynced memtable
// switch leaves no window either.
//
// # Durability and ordering, method by method
//
//   - Append: for an urgent entry, done(nil) is called only after the
//     batch holding the entry, its dedupe record and the recipient's new
//     high-water mark is synced. A kill -9 after done(nil) loses
//     nothing; before it, the entry is either wholly there or wholly absent.
//     A receipt entry's done(nil) also follows a sync, up to twice
//     RelaxedDelay later. done(err) means the entry is not stored, except
//     after ErrCommit, where it may or may not be (a retry is then caught as
//     a duplicate). Appends are applied in queue order, so one worker's
//     appends for a recipient commit in seq order, and their callbacks run
//     in that order too.
//   - Ack: the deletions, the pending receipts and the new floor commit
//     atomically; done runs after the commit (not a sync), with receipts
//     for exactly the message entries that this ack deleted (each entry
//     yields at most one receipt, ever). Expired entries are deleted
//     without a delivered receipt: see Expiry. An ack larger than Config.MaxBatch entries commits
//     in several transactions; each is a valid cumulative state, and done
//     runs after the last.
//   - LastSeq, Read, Lookup, Members, Role, Groups, PendingReceipts,
//     PendingGroupEvents: read
//     committed data only, from a consistent snapshot, on the caller's
//     goroutine. They do not queue behind the committer, but a Badger read
//     waits for the commit in progress, if any, and then sees it.
//   - ChangeGroup, DeleteGroup: committed and synced through the same
//     group commit before they return. A group change is one transaction:
//     every membership it makes or ends, the group's record, its dedupe
//     record (Actor, MsgID) and its pending GroupEvent, or nothing when a
//     rule refuses it (groupchange.go). Its event stays pending until
//     SettleGroupEvent (relaxed, like an ack), so whoever announces it can
//     do so again after a crash; group event entries are deduplicated per
//     recipient like messages, so announcing again stores only what is
//     missing.
//   - Close: commits everything queued, syncs and runs the callbacks,
//     spills the tier into Badger, closes Badger (which flushes its
//     memtables) and deletes the log.
//
// # Failures
//
// A failed commit or sync fails every op in it, and every committed op
// still waiting for a sync, with ErrCommit, whatever apply had decided for
// each (a retry found as a duplicate of an op in the same batch was not
// stored either). Nothing is ever acknowledged that was not committed. The
// committer then drops the tier, closes and reopens Badger and replays the
// in-flight log into it, so that what it serves is what is on disk,
// reloads its totals and drops its caches, and takes writes again
// (Stats.Recoveries). A spill into Badger, or a deletion of a retired log
// segment, that fails is handled the same way, whether it ran after a
// batch, in housekeeping or before a backup. Until then writes are refused
// with ErrRecovering; reopening is tried at once, then with a backoff that
// doubles from 100 ms to 5 s.
//
// A panic on the committer is contained (contain.go): one while a batch is
// built, committed or synced fails that batch like a failed commit, and
// the database is reopened; one in a caller's callback stays there. Each is
// counted (Stats.Panics); after five within a minute the store refuses
// writes for good (Stats.Down) so that the process is replaced.
//
// A full disk would kill the process (Badger writes through mappings of
// sparse files: SIGBUS). Below Config.MinFreeBytes of free space the store
// refuses urgent writes with ErrDiskFull, while acks, receipts and reads go
// on, and takes them again once space returns; see diskspace.go for the
// reserve file that lets it start on a disk something else filled.
//
// Each sender's message entries waiting in other users' mailboxes are
// counted (Config.MaxSenderPendingMessages, MaxSenderPendingBytes;
// ErrSenderQuota past either) in the transactions that store and delete
// them, and the counts are kept on disk (quota.go).
//
// Appends that must expire entries to fit a full mailbox count each
// deletion against the batch's budget, and continue in the next batch when
// it runs out, so no batch outgrows Badger's transaction.
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
// # Expiry
//
// An entry older than Config.MessageTTL is expired: Read skips it, and the
// first of the TTL sweep (Housekeeping), an append that needs room in its
// full mailbox, or an ack that covers it deletes it. Whichever deletes an
// expired message entry (KindMessage, KindGroupMessage) records, in the same
// transaction, an expired receipt for its sender (PendingReceipt.Expired, one
// per run of consecutive msg ids of one sender, Acker the recipient), so the
// deletion and the debt live or die together as for delivered receipts. An
// entry that expired between its push and its ack (seconds at the end of the
// TTL) is reported expired although the recipient may have it: the store
// does not know what was pushed. Expiry has no caller waiting for its
// receipts, not even an ack (AckResult lists delivered receipts only):
// Stats.ExpiredReceipts counts them once their transaction commits, and
// delivery reads PendingReceipts when it sees that counter grow.
//
// # Callbacks
//
// done callbacks run on the committer goroutine (or, for an op refused
// before queueing, on the caller's). They must not block and must not call
// the Store's write methods or Close: hand the result to your own goroutine.
//
// # Backup and restore
//
// Backup (on the Badger store) writes every key of one Badger snapshot
// while the store serves: commits go on, and the backup holds exactly
// what was committed when it began (what was synced, and what was
// committed and not yet synced). It reads with two goroutines, runs one
// at a time, and stops when the store closes or reopens its database.
// Restore loads a backup into an empty folder, offline, and refuses a
// folder that holds anything; the frame around Badger's stream
// (backup.go) lets it refuse a backup that was cut short or changed, and
// then it leaves the folder empty again. It raises every mailbox's
// high-water mark by a gap (DefaultRestoreSeqGap), so that no seq a client
// saw after the backup is given to another entry: the mark stays a mark
// of every seq ever handed out, across a restore too.
//
// # Moving ids between stores
//
// When a cluster's node list changes, ids change homes, and their keys
// must move between the nodes' stores, with every server stopped
// (move.go; the move command). OpenFolder opens a folder offline and
// refuses one a server holds (ErrInUse, from Badger's lock). Holdings
// lists the ids a folder holds; Move copies every key of some ids into
// another folder, commits and syncs the copy, and only then deletes them
// from the source; Recount rebuilds the totals and per-sender counts. A
// marker in the destination makes a rerun after a crash finish the move
// without copying anything twice. Seqs are kept, unless the destination
// holds a mark of the id already: then they are raised above it, for the
// reason Restore raises marks. Pending receipts follow the acker, not
// the sender: they live beside the deletion that made them.
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

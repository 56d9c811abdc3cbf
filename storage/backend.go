package storage

// The engine (engine.go) holds every rule of the Store: sequence order,
// limits, dedupe, TTL, receipts, membership. A backend only keeps bytes:
// memBackend in maps, badgerBackend in Badger. That is why one conformance
// suite tests both: the rules are written once.

// meta is a recipient's mailbox metadata, stored under 'h' recipient.
type meta struct {
	hw    uint64 // highest seq ever committed; never goes backwards
	floor uint64 // every seq <= floor is deleted; reads start at floor+1
	count int64  // entries waiting
	bytes int64  // value bytes waiting
}

// totals are the sums over all mailboxes, for MaxTotalBytes and the gauges.
type totals struct {
	count int64
	bytes int64
}

// dedupeID is the dedupe key: the same message id from the same sender to
// the same recipient. The recipient is part of it so that a group message's
// copies, one per member, are each deduplicated on their own.
type dedupeID struct{ sender, msgID, r uint64 }

// groupInfo is a group's record.
type groupInfo struct {
	owner   uint64
	created int64 // unix ms
	members int
}

// reader is a consistent view of committed data (or, inside a writer, of
// committed data plus the writer's own changes).
type reader interface {
	// meta returns the recipient's metadata; the zero meta if none.
	meta(r uint64) (meta, error)
	// scan calls fn with the recipient's entries with seq >= from in seq
	// order until fn returns false. e and e.Value are valid only during fn.
	scan(r, from uint64, fn func(e *Entry) bool) error
	// dedupe returns the committed dedupe record, if any (ignoring the
	// window, which the engine checks).
	dedupe(sender, msgID, r uint64) (Dup, bool, error)
	// group returns the group's record.
	group(g uint64) (groupInfo, bool, error)
	// members calls fn for each member of g in member order.
	members(g uint64, fn func(Member) bool) error
	// role returns member's role in g.
	role(g, m uint64) (Role, bool, error)
	// groupsOf calls fn for each group m is in, in group order.
	groupsOf(m uint64, fn func(g uint64) bool) error
	// totals returns the stored totals.
	totals() (totals, error)
	// senderUse returns what sender has waiting in mailboxes; zero if none.
	senderUse(sender uint64) (senderUse, error)
	// pending calls fn with each pending receipt in key order until fn
	// returns false.
	pending(fn func(PendingReceipt) bool) error
	// groupEvent returns the pending event of (actor, msgID).
	groupEvent(actor, msgID uint64) (GroupEvent, bool, error)
	// groupEvents calls fn with each pending group event in (actor, msgID)
	// order until fn returns false.
	groupEvents(fn func(GroupEvent) bool) error
	// heads calls fn for each recipient with waiting entries, with its meta
	// and the time of its first waiting entry, until fn returns false.
	heads(fn func(r uint64, m meta, headTime int64) bool) error
}

// writer is one batch's transaction. It is used by the committer goroutine
// only, one at a time. Writes are not visible to views until commit returns
// nil. A writer whose commit fails must not be used again.
type writer interface {
	reader
	putMeta(r uint64, m meta) error
	putEntry(e *Entry) error // e.Value is copied before putEntry returns
	delEntry(r, seq uint64) error
	putDedupe(sender, msgID uint64, d Dup, ttlSeconds int64) error
	putTotals(t totals) error
	putSenderUse(sender uint64, u senderUse) error // a zero use deletes the record
	putPending(p *PendingReceipt) error
	delPending(sender uint64, key ReceiptKey) error
	putGroup(g uint64, gi groupInfo) error
	delGroup(g uint64) error
	putMember(g, m uint64, role Role) error
	delMember(g, m uint64) error
	putGroupEvent(ev *GroupEvent) error
	delGroupEvent(actor, msgID uint64) error
	// commit makes every write visible to views and durable against a
	// crash of the process (the in-flight log is in the page cache), or reports
	// why not; then the writer is finished. Only backend.sync makes it
	// durable against a crash of the machine.
	commit() error
	// discard abandons the batch after a database error; the store is
	// poisoned afterwards, so the memory backend need not roll back.
	discard()
}

// backend is where the bytes live.
type backend interface {
	// begin starts the next batch. Committer goroutine only.
	begin() writer
	// view runs fn on a consistent view of committed data. Any goroutine.
	view(fn func(reader) error) error
	// snapshot returns a view of committed data to use from one other
	// goroutine until release is called, or ok false if the backend has
	// no use for one (prefetch.go). Committer goroutine only.
	snapshot() (rd reader, release func(), ok bool)
	// reclaim gives disk space back (compaction, value-log GC) and reports
	// what it did in c. Housekeeping goroutine only; it may run while the
	// committer commits, and uses e.exclusive for what must not.
	reclaim(live int64, quiet bool, c *counters, e *engine) error
	// sync makes every committed write durable against a crash of the
	// machine (an fdatasync of the in-flight log, for Badger). Committer
	// goroutine only.
	sync() error
	// tidy runs between batches, after their callbacks: the Badger
	// backend spills from its in-flight tier what is due (tier.go).
	// Committer goroutine only.
	tidy() error
	// fill adds the backend's own figures to st (the in-flight tier's,
	// for Badger). Any goroutine.
	fill(st *Stats)
	// reopen closes and opens the database again after a failed commit, so
	// that what is on disk is what its log replays. Views wait for it.
	// Committer goroutine only.
	reopen() error
	// close releases the backend after the committer has stopped.
	close() error
}

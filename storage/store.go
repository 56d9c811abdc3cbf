package storage

// Store is what delivery needs from durable storage: per-recipient mailboxes
// (append, read, cumulative ack), the high-water mark that keeps sequences
// from going backwards, duplicate detection for retried sends, and group
// membership. Both implementations, NewMemory and Open (Badger), pass the
// conformance suite in storage/storagetest.
//
// Every method may be called from any goroutine. Write methods (Append, Ack,
// and the group mutations) go through one committer goroutine that packs many
// of them into one transaction; see the package comment for the durability
// promise of each method.
type Store interface {
	// LastSeq returns the recipient's durable high-water mark: the highest
	// seq ever committed for it, 0 if none. It never goes backwards, also
	// after the mailbox was drained and the store reopened. It reflects
	// committed appends only, so the owning worker calls it on first touch,
	// before it has appends in flight for the recipient.
	LastSeq(recipient uint64) (uint64, error)

	// Newest returns the seq of the newest unexpired entry waiting for
	// recipient above after and at or below upto, or after when none
	// waits there: what a login announces as WELCOME.last, so that a
	// client resumed from after knows when it has everything. The high-water
	// mark can be above every entry (acked, expired or refused entries, a
	// restore's seq gap). Newest reads the entry at upto, and when that is
	// not there reads at most NewestScan entries up from after; past them
	// it returns upto.
	Newest(recipient, after, upto uint64) (uint64, error)

	// Append queues e for the next group commit and returns without waiting
	// for the disk. done is called exactly once: with nil after the commit
	// holding e is synced to disk, or with an error (never both). A
	// KindReceipt entry is relaxed: it is committed as soon as the committer
	// gets to it, and then waits up to Config.RelaxedDelay for a batch
	// that syncs anyway (or its own sync) before done; every other entry is
	// committed and synced as soon as the committer gets to it. done runs on the
	// committer goroutine and must not block; it may also run before Append
	// returns, on the caller's goroutine, when e is refused without reaching
	// the committer (ErrClosed, ErrInvalidEntry). Append blocks only while the
	// commit queue (Config.QueueLen) is full.
	//
	// e.Seq must be greater than the recipient's high-water mark, including
	// appends queued before it (ErrSeqOrder otherwise); gaps are allowed.
	// A message or group event entry (KindMessage, KindGroupMessage,
	// KindGroupEvent) with e.Retry set fails
	// with a *DuplicateError if the same (Sender, MsgID, Recipient) was
	// appended within the dedupe window, committed or queued before it.
	// Without e.Retry nothing is looked up, so a first transmission costs no
	// read; its dedupe record is still written for a later retry to find.
	//
	// Appends are applied in the order they were queued. e.Value is not
	// retained after done is called. A zero e.Time is replaced by the store's
	// clock.
	Append(e Entry, done func(error))

	// Ack deletes, through the group commit, every entry of recipient with
	// seq <= upto, and calls done after the deletion is committed with the
	// delivered receipts for the deleted message entries that had not
	// expired, in seq order, also recorded as PendingReceipts in the same
	// transaction (expired ones owe an expired receipt instead, recorded
	// there too; see PendingReceipts). An ack is relaxed (like a
	// receipt, see Append) and is not synced on its own: a crash may lose
	// it, with its pending receipts, which costs only a redelivery of the
	// entries; it is on disk once any later write's done(nil) ran. done has
	// the same rules as for Append. Acks at or below the floor (already deleted)
	// succeed with an empty result; upto above the high-water mark fails with
	// ErrAckAhead and deletes nothing.
	Ack(recipient, upto uint64, done func(AckResult, error))

	// Read appends to dst the recipient's committed entries with seq >= from,
	// in seq order: at most maxEntries (a value below 1 means 1) and, when
	// maxBytes > 0, no more value bytes than maxBytes, except that one entry
	// is always returned if any is available. Expired entries are skipped
	// and counted. next is the from to pass to read the following page. The
	// Value of each returned entry points into one buffer allocated by this
	// call, which the caller owns. Like every read, it may wait for the
	// group commit in progress (about one fsync) and then sees it.
	Read(recipient, from uint64, maxEntries, maxBytes int, dst []Entry) (entries []Entry, next uint64, err error)

	// PendingReceipts calls fn with every receipt owed and not yet settled
	// by an Append (Entry.Settles), in (sender, acker, seq) order, until fn
	// returns false: the delivered receipts an Ack recorded, and the
	// expired ones (PendingReceipt.Expired) that any deletion of expired
	// message entries recorded (an Ack, the TTL sweep, an Append that made
	// room in a full mailbox). Delivery calls it on start to hand on the
	// receipts that a stop or crash left owed, and again when
	// Stats.ExpiredReceipts grows: expiry has no caller to hand its
	// receipts to. Each one is redone until the receipt entry that settles
	// it commits.
	PendingReceipts(fn func(PendingReceipt) bool) error

	// Lookup reports whether a message entry from sender with msgID was
	// committed for recipient within the dedupe window, and returns where it
	// went so a retried send can be acknowledged again. It sees committed
	// appends only; Append itself refuses an in-flight duplicate.
	Lookup(sender, msgID, recipient uint64) (Dup, bool, error)

	// ChangeGroup applies c as one durable change, synced before it
	// returns: every member it adds, removes or changes, the group's
	// record, a dedupe record for (c.Actor, c.MsgID), and the event that
	// announces it (nil when c changed nothing). The rules it checks and
	// the order it checks them in are in groupchange.go (applyChange). A
	// refused change writes nothing and fails with ErrGroupExists,
	// ErrNoGroup, ErrNotMember, ErrForbidden, ErrGroupFull or
	// ErrInvalidEntry. A change that (c.Actor, c.MsgID) already made
	// returns dup true and changes nothing again; its event is returned if
	// it is still pending, so the caller can finish its fan-out.
	ChangeGroup(c GroupChange) (event *GroupEvent, dup bool, err error)
	// SettleGroupEvent deletes the pending event of (actor, msgID), once
	// every audience member's copy is stored. It is relaxed, like an ack:
	// a crash that loses it only makes the fan-out run again, and the
	// copies are deduplicated. done (may be nil) is called as for Append.
	SettleGroupEvent(actor, msgID uint64, done func(error))
	// SettleReceipt deletes sender's pending receipt key without storing a
	// receipt entry: the entry went to the sender's mailbox in another
	// node's store (a cluster). It is relaxed, like an ack: a crash that
	// loses it only makes the receipt go again, and receipts may repeat.
	// done (may be nil) is called as for Append.
	SettleReceipt(sender uint64, key ReceiptKey, done func(error))
	// PendingGroupEvents calls fn with every group event not yet settled,
	// in (actor, msgID) order, until fn returns false. Delivery calls it on
	// start to finish the fan-outs that a stop or crash cut short.
	PendingGroupEvents(fn func(GroupEvent) bool) error
	// DeleteGroup durably removes group and all its memberships. It fails
	// with ErrNoGroup.
	DeleteGroup(group uint64) error
	// Members returns the committed members of group in member order.
	Members(group uint64) ([]Member, error)
	// Role returns member's committed role in group, or ErrNotMember.
	Role(group, member uint64) (Role, error)
	// Groups returns the groups member belongs to, in group order.
	Groups(member uint64) ([]uint64, error)

	// Stats returns a snapshot of the counters.
	Stats() Stats

	// Close stops accepting writes, commits everything already queued and
	// calls its callbacks, stops housekeeping and closes the database.
	// Later calls to write methods fail with ErrClosed. Close is idempotent.
	Close() error
}

// Kind says what an entry holds. The store does not interpret it except
// that message entries (KindMessage, KindGroupMessage) are deduplicated and
// produce receipts on ack, and group events are deduplicated.
type Kind uint8

// Entry kinds. Delivery may define more values; the store treats any value
// other than the message kinds like KindReceipt.
const (
	KindMessage    Kind = 1 // a message from Sender; deduplicated, acked with a receipt
	KindReceipt    Kind = 2 // a "delivered" receipt for the recipient
	KindGroupEvent Kind = 3 // a membership change of a group the recipient is in; deduplicated
	// KindGroupMessage is a member's copy of a message sent to a group:
	// deduplicated and acked with a receipt, like KindMessage.
	KindGroupMessage Kind = 4
)

// message reports whether entries of kind k are messages: deduplicated, and
// acked with a receipt.
func (k Kind) message() bool { return k == KindMessage || k == KindGroupMessage }

// deduped reports whether entries of kind k are deduplicated by (Sender,
// MsgID, Recipient): messages, and group events, whose fan-out is redone
// after a crash (GroupEvent).
func (k Kind) deduped() bool { return k.message() || k == KindGroupEvent }

// Entry is one item in a recipient's mailbox.
type Entry struct {
	Recipient uint64
	Seq       uint64 // assigned by the recipient's worker; > high-water mark
	Kind      Kind
	Sender    uint64
	MsgID     uint64 // sender-chosen id; with Sender and Recipient, the dedupe key
	Time      int64  // server time, unix milliseconds; 0 means "now"
	Value     []byte // the encoded record; opaque to the store
	// Retry says the sender may have sent this message before (the SEND's
	// retry flag): only then does Append look for a duplicate. The dedupe
	// record of a message is written either way.
	Retry bool
	// Settles names the pending receipt (PendingReceipt.Key) that this
	// entry, the receipt itself, settles: it is deleted in the same
	// transaction. Zero for every other entry.
	Settles ReceiptKey
}

// ReceiptKey names one PendingReceipt of the entry's recipient (the sender
// of the acknowledged messages): the recipient who acknowledged them and
// the seq of the first one in that recipient's mailbox. The zero key names
// none.
type ReceiptKey struct {
	Acker uint64
	Seq   uint64
}

// PendingReceipt is a receipt owed to Sender: Sender's message entries
// with ids MsgID through MsgID+More (consecutive in Acker's mailbox, the
// first at Seq) were deleted, either by Acker's acknowledgement (a
// "delivered" receipt) or, when Expired is set, because they outlived
// Config.MessageTTL unfetched (an "expired" receipt: Acker is the
// recipient whose mailbox they expired from, and the messages are gone).
// It is recorded in the transaction that deletes the entries, so a crash
// loses both or neither; it stays until the receipt entry that settles it
// (Entry.Settles) commits.
type PendingReceipt struct {
	Sender  uint64
	Acker   uint64
	Seq     uint64
	MsgID   uint64
	More    uint64
	Group   bool // the entries were KindGroupMessage copies
	Expired bool // the entries expired; Acker never fetched them
}

// Key returns the name that settles p.
func (p PendingReceipt) Key() ReceiptKey { return ReceiptKey{Acker: p.Acker, Seq: p.Seq} }

// Receipt names one deleted message entry so that delivery can tell its
// sender it was delivered.
type Receipt struct {
	Sender uint64
	MsgID  uint64
	Seq    uint64
	Group  bool // the entry was a KindGroupMessage
}

// AckResult is what a committed Ack deleted.
type AckResult struct {
	Deleted  int       // entries deleted, of every kind
	Floor    uint64    // every seq <= Floor is now deleted
	Receipts []Receipt // one per deleted message entry, in seq order; owned by the callee
	// Pending are the same receipts as runs of consecutive msg ids of one
	// sender (and kind), in seq order, each recorded durably with the
	// deletion until an Append settles it; owned by the callee. The
	// expired receipts of expired entries the ack deleted are recorded in
	// the same transaction but not listed here: like every expired
	// receipt, they reach delivery through PendingReceipts.
	Pending []PendingReceipt
}

// Dup is where a message entry went when it was first committed.
type Dup struct {
	Recipient uint64
	Seq       uint64
	Time      int64 // unix milliseconds, as committed
}

// Role is a member's role in a group.
type Role uint8

// Group roles, in increasing order of rights.
const (
	RoleMember Role = 1
	RoleAdmin  Role = 2
	RoleOwner  Role = 3
)

// Member is one membership of a group.
type Member struct {
	ID   uint64
	Role Role
}

// AppendWait appends e and waits for its commit. It is the blocking
// convenience wrapper over Store.Append, for tests and tools; a worker with
// many appends in flight should use Append.
func AppendWait(s Store, e Entry) error {
	ch := make(chan error, 1) // one send by done
	s.Append(e, func(err error) { ch <- err })
	return <-ch
}

// AckWait acks and waits for the commit; see Store.Ack.
func AckWait(s Store, recipient, upto uint64) (AckResult, error) {
	type result struct {
		res AckResult
		err error
	}
	ch := make(chan result, 1) // one send by done
	s.Ack(recipient, upto, func(res AckResult, err error) { ch <- result{res, err} })
	r := <-ch
	return r.res, r.err
}

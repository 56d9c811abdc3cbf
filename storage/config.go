package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config configures a Store. The zero value of every field means "use the
// default"; a negative value is invalid unless a field says otherwise. Pass it
// by value to Open or NewMemory, which fill the defaults and report every
// invalid field at once.
type Config struct {
	// Dir is the Badger data folder. Required by Open; ignored by NewMemory.
	Dir string

	// Logger receives the store's and Badger's logs (Badger's Info becomes
	// Debug: it logs every compaction). Nil discards them.
	Logger *slog.Logger

	// Now is the clock for entry times, TTL and the dedupe window. Nil means
	// time.Now. Tests inject a fake clock here.
	Now func() time.Time

	// MessageTTL is how long an entry waits for its recipient. Zero means
	// DefaultMessageTTL. An expired entry is never returned by Read and is
	// deleted by housekeeping, an append into its full mailbox or an ack
	// (counted in Stats.ExpiredDeleted); a message entry's sender is then
	// owed an expired receipt (PendingReceipt.Expired).
	MessageTTL time.Duration

	// DedupeWindow is how long a committed message's (sender, msg id,
	// recipient) is remembered. Zero means DefaultDedupeWindow.
	DedupeWindow time.Duration

	// MaxMailboxMessages caps the entries waiting for one recipient. Zero
	// means DefaultMaxMailboxMessages.
	MaxMailboxMessages int64
	// MaxMailboxBytes caps the value bytes waiting for one recipient. Zero
	// means DefaultMaxMailboxBytes.
	MaxMailboxBytes int64
	// MaxTotalBytes caps the value bytes waiting in all mailboxes together.
	// Zero means DefaultMaxTotalBytes. On disk, add LSM overhead (about 60
	// bytes per entry) and up to 2x space amplification before compaction.
	MaxTotalBytes int64
	// MaxValueBytes caps one entry's value. Zero means DefaultMaxValueBytes.
	MaxValueBytes int

	// MaxSenderPendingMessages caps the message entries one sender has
	// waiting in other users' mailboxes (a group message counts once per
	// member it is stored for); over it an append gets ErrSenderQuota.
	// Zero means DefaultMaxSenderPendingMessages.
	MaxSenderPendingMessages int64
	// MaxSenderPendingBytes caps the value bytes of those entries (as
	// stored: a compressed upload counts decompressed). Zero means
	// DefaultMaxSenderPendingBytes.
	MaxSenderPendingBytes int64

	// MaxGroupMembers caps one group. Zero means DefaultMaxGroupMembers.
	MaxGroupMembers int

	// QueueLen bounds the commit queue, shared by all writers. A writer
	// blocks while it is full. Zero means DefaultQueueLen.
	QueueLen int
	// MaxBatch caps the work in one group commit, counted as appends plus
	// deleted entries plus group changes. Zero means DefaultMaxBatch.
	MaxBatch int
	// MaxBatchBytes caps the value bytes in one group commit (one entry
	// larger than this still commits, alone). Zero means
	// DefaultMaxBatchBytes. With MaxBatch, MaxValueBytes and
	// MaxGroupMembers it must fit in Badger's transaction cap (15% of
	// MemTableSize); Validate checks the estimate.
	MaxBatchBytes int

	// MetaCacheEntries bounds the committer's cache of per-recipient
	// metadata (high-water, floor, count, bytes). Zero means
	// DefaultMetaCacheEntries.
	MetaCacheEntries int

	// HousekeepingInterval is the period of the TTL sweep and, for Badger,
	// of compaction and value-log GC. Zero means DefaultHousekeepingInterval;
	// negative disables the timer (tests call housekeeping directly).
	HousekeepingInterval time.Duration

	// MinFreeBytes is the floor of free disk space under Dir: below it the
	// store refuses messages and group changes with ErrDiskFull (acks and
	// receipts go on) until space returns (see diskspace.go). Zero means
	// DefaultMinFreeBytes; negative disables the floor. Ignored by
	// NewMemory.
	MinFreeBytes int64

	// RelaxedDelay is how long a committed relaxed append (a receipt entry;
	// see Store.Append) may wait for a batch that syncs anyway before it
	// is synced on its own. Relaxed writes are committed as soon as the
	// committer gets to them; an ack or expiry needs no sync. Zero means
	// DefaultRelaxedDelay; negative means no wait (each relaxed write is
	// committed and synced at once, as an urgent one is; tests that ack in
	// a loop use it).
	RelaxedDelay time.Duration

	// SyncDelay is how long an urgent write (a message, a group change)
	// may wait, from when it was queued, for others to share its sync.
	// The committer waits only while urgent writes have been arriving
	// more often than one per SyncDelay, and only for as many as that
	// rate puts inside it; see engine.awaitCompany. Zero means
	// DefaultSyncDelay; negative means no wait.
	SyncDelay time.Duration

	// MemTableSize is Badger's memtable size, in bytes; Badger keeps up to
	// two of them in memory. Zero means DefaultMemTableSize.
	MemTableSize int64

	// SpillAfter is how long a write stays in the in-flight tier, in
	// memory and in its log, before it is written into Badger (tier.go):
	// what is overwritten or deleted sooner never reaches Badger. The tier
	// holds at most twice MemTableSize; beyond that the oldest writes spill
	// sooner. Zero means DefaultSpillAfter; negative means at the end of
	// the next batch (Badger then holds everything within milliseconds, as
	// before the tier; tests of Badger's own behaviour use it).
	SpillAfter time.Duration
}

// Defaults, each with the reason for its value.
const (
	// DefaultMessageTTL: a phone that is off for a month has its backlog
	// waiting; older than that, the sender's copy is what counts.
	DefaultMessageTTL = 30 * 24 * time.Hour
	// DefaultDedupeWindow: clients retry within minutes; two days covers a
	// phone that lost the ACK on Friday evening and retries on Sunday, for
	// about 50 bytes of disk per message.
	DefaultDedupeWindow = 48 * time.Hour
	// DefaultMaxMailboxMessages: a month offline in busy groups stays under
	// this; beyond it, something is wrong with the recipient.
	DefaultMaxMailboxMessages = 100_000
	// DefaultMaxMailboxBytes: 100,000 text messages of ~600 bytes; one
	// recipient cannot take more than this of the disk.
	DefaultMaxMailboxBytes = 64 << 20
	// DefaultMaxTotalBytes: a quarter of a 64 GiB data volume, leaving room
	// for key overhead and space amplification before compaction.
	DefaultMaxTotalBytes = 16 << 30
	// DefaultMaxValueBytes: well above the protocol's largest frame, well
	// below Badger's 1 MiB value threshold, so values stay in the LSM.
	DefaultMaxValueBytes = 256 << 10
	// DefaultMaxSenderPendingMessages: one full mailbox's worth; about a
	// hundred messages waiting for a 1,000-member group that is wholly
	// offline, far more than a person writes before members come back.
	DefaultMaxSenderPendingMessages = 100_000
	// DefaultMaxSenderPendingBytes: 1/64 of DefaultMaxTotalBytes, so it
	// takes 64 senders at their cap to fill the store; four 64 KiB
	// messages to a full group, or 400 text messages of 600 bytes.
	DefaultMaxSenderPendingBytes = 256 << 20
	// DefaultMaxGroupMembers: WhatsApp's group cap.
	DefaultMaxGroupMembers = 1024
	// DefaultQueueLen: four full batches; enough for 256 producers and a few
	// workers with hundreds in flight, ~1 MiB of queued op headers.
	DefaultQueueLen = 4096
	// DefaultMaxBatch: 1024 appends of 200 bytes are ~300 KiB, one fsync; a
	// bigger batch only makes the first caller in it wait longer.
	DefaultMaxBatch = 1024
	// DefaultMaxBatchBytes: 512 KiB is ~2,500 messages of 200 bytes, more
	// than one batch of MaxBatch, so it only binds for large values.
	DefaultMaxBatchBytes = 512 << 10
	// DefaultMetaCacheEntries: ~100 bytes each, ~6 MiB; covers the active
	// recipients of a host between two visits.
	DefaultMetaCacheEntries = 1 << 16
	// DefaultHousekeepingInterval: disk space comes back within minutes of
	// a drain, and an idle store does no work in between.
	DefaultHousekeepingInterval = time.Minute
	// DefaultMinFreeBytes: what Badger may still write after the last
	// accepted message without asking: up to two memtables' logs (48 MiB
	// at the default size) and the tables a flush and a compaction write
	// before they delete their inputs, with room to spare.
	DefaultMinFreeBytes = 256 << 20
	// DefaultRelaxedDelay: at a few hundred messages a second a send (whose
	// batch syncs) comes every few milliseconds, so receipts almost always
	// ride on one; a receipt reaches its sender at most 10 ms later than it
	// could, which no one sees.
	DefaultRelaxedDelay = 10 * time.Millisecond
	// DefaultSyncDelay: a little more than the time between sends at
	// 5,000 a second (200 µs), where the syncs had taken 30% of a CPU
	// profile's samples; a send waits at most this long. At 5,000 sends a
	// second it cut the syncs per message from 0.8 to 0.5 and the CPU per
	// message by about a tenth, for 0.1 ms more at the median
	// (docs/BENCHMARKS.md); below about 4,000 sends a second it never
	// waits.
	DefaultSyncDelay = 250 * time.Microsecond
	// DefaultMemTableSize: 24 MiB. 16 MiB is the smallest memtable whose
	// 15% transaction cap holds a full default batch (see txnEstimate);
	// 24 MiB flushes a third less often, which cost 4-8% less CPU per
	// message under chat load (docs/BENCHMARKS.md) for ~20 MiB more RAM
	// under load (two arenas of ~31 MiB; their untouched pages cost no
	// RSS at rest). Badger's default of 64 MiB times five memtables would
	// cost ~400 MiB.
	DefaultMemTableSize = 24 << 20
	// DefaultSpillAfter: most messages are acknowledged within a second of
	// their send, so they, their receipts and the acks of both never
	// reach Badger; a recipient who is offline for longer has its entries
	// written into Badger a few seconds later, where they wait for as long
	// as they must. Longer would keep more in memory and replay more at a
	// start after a crash, for little.
	DefaultSpillAfter = 5 * time.Second
	// minMemTable is the smallest memtable Badger opens with our value
	// threshold (valueThreshold): 15% of it must hold the threshold.
	minMemTable = (valueThreshold*100 + 14) / 15
)

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	setDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setI64 := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	setInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setDur(&c.MessageTTL, DefaultMessageTTL)
	setDur(&c.DedupeWindow, DefaultDedupeWindow)
	setDur(&c.HousekeepingInterval, DefaultHousekeepingInterval)
	setDur(&c.RelaxedDelay, DefaultRelaxedDelay)
	setDur(&c.SyncDelay, DefaultSyncDelay)
	setDur(&c.SpillAfter, DefaultSpillAfter)
	setI64(&c.MaxMailboxMessages, DefaultMaxMailboxMessages)
	setI64(&c.MaxMailboxBytes, DefaultMaxMailboxBytes)
	setI64(&c.MaxTotalBytes, DefaultMaxTotalBytes)
	setI64(&c.MaxSenderPendingMessages, DefaultMaxSenderPendingMessages)
	setI64(&c.MaxSenderPendingBytes, DefaultMaxSenderPendingBytes)
	setI64(&c.MemTableSize, DefaultMemTableSize)
	setI64(&c.MinFreeBytes, DefaultMinFreeBytes)
	setInt(&c.MaxValueBytes, DefaultMaxValueBytes)
	setInt(&c.MaxGroupMembers, DefaultMaxGroupMembers)
	setInt(&c.QueueLen, DefaultQueueLen)
	setInt(&c.MaxBatch, DefaultMaxBatch)
	setInt(&c.MaxBatchBytes, DefaultMaxBatchBytes)
	setInt(&c.MetaCacheEntries, DefaultMetaCacheEntries)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every invalid field of c, after defaults are applied,
// joined in one error that wraps ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.MessageTTL < time.Second {
		bad("MessageTTL %v is below one second", c.MessageTTL)
	}
	if c.RelaxedDelay > time.Second {
		bad("RelaxedDelay %v is over 1s", c.RelaxedDelay)
	}
	if c.SyncDelay > 10*time.Millisecond {
		bad("SyncDelay %v is over 10ms", c.SyncDelay)
	}
	if c.DedupeWindow < time.Second {
		bad("DedupeWindow %v is below one second", c.DedupeWindow)
	}
	if c.MaxMailboxMessages < 0 {
		bad("MaxMailboxMessages %d is negative", c.MaxMailboxMessages)
	}
	if c.MaxMailboxBytes < 0 {
		bad("MaxMailboxBytes %d is negative", c.MaxMailboxBytes)
	}
	if c.MaxTotalBytes < 0 {
		bad("MaxTotalBytes %d is negative", c.MaxTotalBytes)
	}
	if c.MaxSenderPendingMessages < 0 {
		bad("MaxSenderPendingMessages %d is negative", c.MaxSenderPendingMessages)
	}
	if c.MaxSenderPendingBytes < 0 {
		bad("MaxSenderPendingBytes %d is negative", c.MaxSenderPendingBytes)
	}
	if c.MaxValueBytes < 0 || c.MaxValueBytes > 512<<10 {
		bad("MaxValueBytes %d is outside 1..512 KiB", c.MaxValueBytes)
	}
	if c.MaxGroupMembers < 0 {
		bad("MaxGroupMembers %d is negative", c.MaxGroupMembers)
	}
	if c.QueueLen < 0 {
		bad("QueueLen %d is negative", c.QueueLen)
	}
	if c.MaxBatch < 0 || c.MaxBatch > 8192 {
		bad("MaxBatch %d is outside 1..8192", c.MaxBatch)
	}
	if c.MetaCacheEntries < 0 {
		bad("MetaCacheEntries %d is negative", c.MetaCacheEntries)
	}
	if c.MemTableSize < minMemTable {
		bad("MemTableSize %d is below %d (7 MiB): Badger's batch cap, 15%% of a memtable, must hold its value threshold of 1 MiB (values stay in the LSM tree), or it refuses to open", c.MemTableSize, minMemTable)
	}
	if c.MaxBatchBytes < 0 {
		bad("MaxBatchBytes %d is negative", c.MaxBatchBytes)
	}
	// Badger refuses a transaction over 15% of a memtable, counting about
	// 100 bytes of skiplist node per key; txnEstimate is our worst batch.
	if est, limit := c.txnEstimate(), c.MemTableSize*15/100; est > limit {
		bad("a full batch (~%d bytes: MaxBatch %d, MaxBatchBytes %d, MaxValueBytes %d, MaxGroupMembers %d) exceeds Badger's transaction cap of 15%% of MemTableSize (%d)",
			est, c.MaxBatch, c.MaxBatchBytes, c.MaxValueBytes, c.MaxGroupMembers, limit)
	}
	return errors.Join(errs...)
}

// txnEstimate is the largest transaction a batch can make, in Badger's
// accounting: every op writes at most four keys (entry, dedupe record,
// meta, its sender's use; a deleted entry one of the last two), a group
// deletion two keys per member, and each key costs its bytes plus a
// ~100-byte skiplist node.
func (c Config) txnEstimate() int64 {
	keys := int64(4*c.MaxBatch + 2*c.MaxGroupMembers + 8)
	return int64(c.MaxBatchBytes) + int64(c.MaxValueBytes) + keys*(100+64)
}

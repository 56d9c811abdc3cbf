package storage

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a store's counters, for metrics. Counters only
// grow; gauges are marked.
type Stats struct {
	Appends          uint64        // entries committed
	AppendedBytes    uint64        // value bytes committed
	Commits          uint64        // group commits that succeeded
	CommitErrors     uint64        // group commits (or their syncs) that failed
	Syncs            uint64        // syncs (fdatasync of the in-flight log; counted, and a no-op, for the memory store): one per batch with an urgent write, plus one per due group of relaxed appends
	Recoveries       uint64        // times the database was reopened after a failed commit
	Panics           uint64        // panics contained on the committer (contain.go)
	Down             uint64        // gauge: 1 once the committer panicked too often and writes are refused for good
	BatchedOps       uint64        // ops in successful commits; BatchedOps/Commits is the mean batch
	MaxBatchOps      uint64        // gauge: the largest batch so far
	Acks             uint64        // acks committed (including no-op ones)
	Deleted          uint64        // entries deleted by acks
	Receipts         uint64        // receipts handed back by acks
	ReadEntries      uint64        // entries returned by Read
	ExpiredSkipped   uint64        // expired entries skipped by Read; one entry may count more than once
	ExpiredDeleted   uint64        // expired entries deleted by housekeeping, a full mailbox or an ack; each once
	ExpiredReceipts  uint64        // expired receipts owed to senders (PendingReceipt.Expired, one per run of msg ids), counted once committed (or once a failed commit may have kept them)
	Duplicates       uint64        // appends refused with ErrDuplicate
	RefusedFull      uint64        // appends refused with ErrMailboxFull
	RefusedStoreFull uint64        // appends refused with ErrStoreFull
	RefusedDiskFull  uint64        // appends and group changes refused with ErrDiskFull
	RefusedQuota     uint64        // appends refused with ErrSenderQuota
	DiskLow          uint64        // gauge: 1 while the free disk space is below Config.MinFreeBytes
	RefusedSeqOrder  uint64        // appends refused with ErrSeqOrder
	Housekeeps       uint64        // housekeeping rounds completed
	GCRewrites       uint64        // Badger value-log files rewritten by GC
	Flattens         uint64        // Badger LSM flattens run to drop tombstones
	BuildTime        time.Duration // committer time spent lingering and applying ops to transactions
	CommitTime       time.Duration // committer time spent in the database commit, sync included (SyncTime)
	SyncTime         time.Duration // committer time spent in syncs
	SyncWaits        uint64        // batches whose sync waited for more sends to share it (Config.SyncDelay)
	SyncWaitTime     time.Duration // committer time spent in those waits (part of BuildTime)
	CallbackTime     time.Duration // committer time spent in done callbacks
	StoredMessages   uint64        // gauge: entries waiting in all mailboxes
	StoredBytes      uint64        // gauge: value bytes waiting in all mailboxes
	Queued           uint64        // gauge: write ops waiting in the commit queue for the committer (at most Config.QueueLen)
	Spilled          uint64        // writes the in-flight tier wrote into Badger (tier.go); the rest were overwritten or deleted first
	TierBytes        uint64        // gauge: bytes the in-flight tier holds in memory (keys, values and overhead)
	LogSegments      uint64        // gauge: segment files of the in-flight log that hold records (tierSegmentBytes each)
	SpillTime        time.Duration // committer time spent writing the in-flight tier's spills into Badger and deleting log segments
}

// counters backs Stats. Atomic; written by the committer and housekeeping,
// read by Stats from any goroutine.
type counters struct {
	appends, appendedBytes, commits, commitErrors, batchedOps, maxBatchOps atomic.Uint64
	acks, deleted, receipts, readEntries, expiredSkipped, expiredDeleted   atomic.Uint64
	duplicates, refusedFull, refusedStoreFull, refusedSeqOrder             atomic.Uint64
	housekeeps, gcRewrites, flattens, storedMessages, storedBytes          atomic.Uint64
	buildNanos, commitNanos, callbackNanos, syncs, recoveries              atomic.Uint64
	refusedDiskFull, diskLow, syncNanos, refusedQuota, panics, down        atomic.Uint64
	expiredReceipts, syncWaits, syncWaitNanos                              atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Appends:          c.appends.Load(),
		AppendedBytes:    c.appendedBytes.Load(),
		Commits:          c.commits.Load(),
		CommitErrors:     c.commitErrors.Load(),
		Syncs:            c.syncs.Load(),
		Recoveries:       c.recoveries.Load(),
		Panics:           c.panics.Load(),
		Down:             c.down.Load(),
		BatchedOps:       c.batchedOps.Load(),
		MaxBatchOps:      c.maxBatchOps.Load(),
		Acks:             c.acks.Load(),
		Deleted:          c.deleted.Load(),
		Receipts:         c.receipts.Load(),
		ReadEntries:      c.readEntries.Load(),
		ExpiredSkipped:   c.expiredSkipped.Load(),
		ExpiredDeleted:   c.expiredDeleted.Load(),
		ExpiredReceipts:  c.expiredReceipts.Load(),
		Duplicates:       c.duplicates.Load(),
		RefusedFull:      c.refusedFull.Load(),
		RefusedStoreFull: c.refusedStoreFull.Load(),
		RefusedDiskFull:  c.refusedDiskFull.Load(),
		RefusedQuota:     c.refusedQuota.Load(),
		DiskLow:          c.diskLow.Load(),
		RefusedSeqOrder:  c.refusedSeqOrder.Load(),
		Housekeeps:       c.housekeeps.Load(),
		GCRewrites:       c.gcRewrites.Load(),
		Flattens:         c.flattens.Load(),
		BuildTime:        time.Duration(c.buildNanos.Load()),
		CommitTime:       time.Duration(c.commitNanos.Load()),
		SyncTime:         time.Duration(c.syncNanos.Load()),
		SyncWaits:        c.syncWaits.Load(),
		SyncWaitTime:     time.Duration(c.syncWaitNanos.Load()),
		CallbackTime:     time.Duration(c.callbackNanos.Load()),
		StoredMessages:   c.storedMessages.Load(),
		StoredBytes:      c.storedBytes.Load(),
	}
}

package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// engine implements Store over a backend: the commit queue, the committer
// goroutine that packs queued writes into one transaction, the read methods
// and the housekeeping timer.
type engine struct {
	// Immutable after construction.
	cfg      Config
	be       backend
	log      *slog.Logger
	ttlMs    int64
	dedupeMs int64
	epoch    time.Time // op.queued counts from here, on the monotonic clock
	// panicHook, when set (tests only), is called before each op is
	// applied, on the committer, to inject a panic.
	panicHook atomic.Pointer[func(*op)]
	// panicTimes are the committer's last panics, at most panicLimit
	// (contain.go). Committer goroutine only.
	panicTimes []time.Time

	// q carries write ops to the committer. Senders: the write methods and
	// housekeeping, each holding mu.RLock so that Close can close q safely.
	// Receiver: the committer. Bound: cfg.QueueLen; a sender blocks while
	// it is full, which is the backpressure on delivery workers.
	q chan op

	// Guarded by mu. Readers hold mu.RLock for the whole call, so Close
	// (mu.Lock) never closes the database under them.
	mu     sync.RWMutex
	closed bool

	// Atomic; shared by every goroutine.
	stats  counters
	failed atomic.Pointer[error] // why writes are refused until the database is reopened; nil: healthy

	// hkMu is held by housekeeping for a whole round and tried by the
	// committer before it reopens the database, so that a reopen never
	// pulls Badger from under a round (see recover).
	hkMu sync.Mutex

	// Owned by the committer goroutine.
	cache       map[uint64]*cachedMeta // bounded by cfg.MetaCacheEntries after each commit
	dirty       []*cachedMeta          // entries of cache changed in the open batch
	tot         totals                 // committed totals plus the open batch
	totDirt     bool                   // tot changed in the open batch
	quota       quotaBook              // per-sender use; see quota.go
	batch       []op                   // the ops of the open batch
	pending     opDeque                // ops for the next batch, in order: an unfinished ack, held back, or prefetched
	prefetched  []op                   // the prefetch helper's buffer, kept for the next batch; see prefetch.go
	concurrency int                    // urgent ops recently in flight at once (batch plus queue), decaying
	urgentGap   int64                  // mean time between urgent ops queued, in ns, decaying; see awaitCompany
	lastUrgent  int64                  // when the last urgent op committed was queued (op.queued)
	dead        []deadEntry            // scratch for acks and expiry
	owed        []owedReceipt          // scratch for acks and expiry: the receipts their deletions owe
	expiredOwed int                    // expired receipts recorded by the open batch; see recordPending
	tailEntries int                    // entries in all tails of cache; at most tailBudget
	tailMax     int                    // defaultTailMax; tests change it before the first op
	tailBudget  int                    // defaultTailBudget; likewise
	tailHits    int                    // collects served from a tail, for tests
	batchNo     uint64                 // number of the open batch; see prefetch.go
	retryBatch  uint64                 // the last batch that held a retried append (Entry.Retry); see prefetch.go
	batchKeys   map[dedupeID]Dup       // dedupe records written by the open batch
	prevKeys    map[dedupeID]Dup       // dedupe records written by the batch before
	timer       *time.Timer            // the committer's one timer: syncDue, retryAt
	// unsynced are relaxed appends committed by batches that did not sync,
	// waiting for the next sync to call done; at most cfg.MaxBatch (a
	// fuller list is synced at once).
	unsynced []op
	syncDue  time.Time     // when unsynced must be synced, if no batch synced before
	disk     diskGuard     // the free-space floor; see diskspace.go
	retryAt  time.Time     // while failed: when to try reopening the database
	backoff  time.Duration // while failed: the wait after the next failed reopen

	// backup is the running backup (backup.go); nil when none runs.
	backup atomic.Pointer[runningBackup]
	// backupWaitHook, when set (tests only), is called when a backup
	// begins to wait for an ending one.
	backupWaitHook atomic.Pointer[func()]

	// Owned by the housekeeping goroutine (or a test calling housekeep).
	lastSweep time.Time // Config.Now of the last TTL sweep
	hkCommits uint64    // stats.commits at the last round

	// Lifecycle.
	committerDone chan struct{} // closed when the committer returns
	hkStop        chan struct{} // closed by Close to stop housekeeping
	hkDone        chan struct{} // closed when housekeeping returns
	closeOnce     sync.Once
	closeErr      error
}

// cachedMeta is the committer's copy of a recipient's meta.
type cachedMeta struct {
	r         uint64
	m         meta
	persisted uint64 // the hw in the meta record on disk
	dirty     bool   // the meta record is written by the open batch
	tail      tail   // the waiting entries, when known; see tail.go
}

// deadEntry is an entry about to be deleted by an ack or by expiry.
type deadEntry struct {
	seq, sender, msgID uint64
	time               int64
	size               int64
	kind               Kind
}

type opKind uint8

const (
	opAppend opKind = iota + 1
	opAck
	opExpire
	opGroupChange
	opSettleEvent
	opSettleReceipt
	opDeleteGroup
	opExclusive
)

// op is one queued write. It travels by value through q.
type op struct {
	kind   opKind
	e      Entry        // opAppend
	r      uint64       // opAck, opExpire: the recipient; opSettleReceipt: the sender
	upto   uint64       // opAck
	group  uint64       // opDeleteGroup
	change *changeOp    // opGroupChange, opSettleEvent
	fn     func() error // opExclusive

	queued int64 // when submit queued it, in nanoseconds since engine.epoch

	done    func(error)            // every kind but opAck; may be nil for opExpire
	ackDone func(AckResult, error) // opAck

	// Owned by the committer while the op is in a batch.
	err        error      // why this op alone was refused
	dupBatch   uint64     // opAppend: the batch dupFound and dup are valid for; 0 if not looked up
	dupFound   bool       // the prefetch snapshot held a dedupe record for the entry
	dup        Dup        // that record
	ack        *AckResult // opAck: what was deleted so far
	unfinished bool       // opAck, opAppend: continues in the next batch
}

// urgent reports whether o's caller waits for it to be synced as soon as
// possible: a message, a group event or a group change, whose ACCEPT a
// client is waiting for. The rest (acks, receipts, expiry) are relaxed:
// they ride on the next batch that syncs anyway, or wait a little for
// one (Config.RelaxedDelay), because a crash that loses them loses
// nothing the server acknowledged: a lost ack is a redelivery, and a lost
// receipt entry leaves its PendingReceipt in place.
func (o *op) urgent() bool {
	switch o.kind {
	case opAppend:
		return o.e.Kind != KindReceipt
	case opAck, opExpire, opSettleEvent, opSettleReceipt:
		return false
	}
	return true
}

// changeOp is a group change in the queue, and what the committer found.
type changeOp struct {
	GroupChange
	event *GroupEvent // the change's event: just recorded, or still pending from the first try
	dup   bool        // the change was made before, by the same (Actor, MsgID)
}

func newEngine(cfg Config, be backend) (*engine, error) {
	s := &engine{
		cfg:           cfg,
		be:            be,
		log:           cfg.Logger,
		ttlMs:         cfg.MessageTTL.Milliseconds(),
		dedupeMs:      cfg.DedupeWindow.Milliseconds(),
		epoch:         time.Now(),
		q:             make(chan op, cfg.QueueLen),
		cache:         make(map[uint64]*cachedMeta),
		batchKeys:     make(map[dedupeID]Dup),
		prevKeys:      make(map[dedupeID]Dup),
		tailMax:       defaultTailMax,
		tailBudget:    defaultTailBudget,
		timer:         time.NewTimer(time.Hour),
		disk:          newDiskGuard(cfg),
		committerDone: make(chan struct{}),
		hkStop:        make(chan struct{}),
		hkDone:        make(chan struct{}),
	}
	err := be.view(func(rd reader) error {
		var err error
		s.tot, err = rd.totals()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: load totals: %w", err)
	}
	s.stats.storedMessages.Store(uint64(s.tot.count))
	s.stats.storedBytes.Store(uint64(s.tot.bytes))
	s.timer.Stop()
	s.urgentGap = 4 * int64(cfg.SyncDelay) // no wait until sends come often
	// The verdict on the free space from the start: a store opened below
	// the floor is not ready before its first write says so.
	s.checkDisk()
	go s.run()
	go s.housekeepLoop()
	return s, nil
}

// submit queues o for the committer; false if the store is closed.
func (s *engine) submit(o op) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	o.queued = int64(time.Since(s.epoch))
	s.q <- o
	return true
}

// Append implements Store.
func (s *engine) Append(e Entry, done func(error)) {
	switch {
	case e.Seq == 0:
		done(fmt.Errorf("%w: seq 0 for recipient %d", ErrInvalidEntry, e.Recipient))
		return
	case len(e.Value) > s.cfg.MaxValueBytes:
		done(fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, len(e.Value), s.cfg.MaxValueBytes))
		return
	}
	if !s.submit(op{kind: opAppend, e: e, done: done}) {
		done(ErrClosed)
	}
}

// Ack implements Store.
func (s *engine) Ack(recipient, upto uint64, done func(AckResult, error)) {
	if !s.submit(op{kind: opAck, r: recipient, upto: upto, ackDone: done}) {
		done(AckResult{}, ErrClosed)
	}
}

// wait submits o and waits for its commit; for the blocking group methods.
func (s *engine) wait(o op) error {
	ch := make(chan error, 1) // one send by done
	o.done = func(err error) { ch <- err }
	if !s.submit(o) {
		return ErrClosed
	}
	return <-ch
}

// exclusive runs fn on the committer goroutine while no transaction is
// open, and returns its error. Backends use it to stop writes briefly.
func (s *engine) exclusive(fn func() error) error {
	return s.wait(op{kind: opExclusive, fn: fn})
}

// exclusiveTidy runs fn like exclusive. fn is a backend's work on what
// commits rely on (the tier's spill into Badger, the deletion of its log's
// segments); if it fails, the store fails as after a failed commit, as
// when the tidy after a batch fails (commitBatch): a failed spill leaves
// items in the tier that nothing will spill, a failed deletion leaves old
// segments that later deletions must not outrun, so the tier is dropped
// and the database reopened from what is on disk.
func (s *engine) exclusiveTidy(fn func() error) error {
	return s.exclusive(func() error {
		err := s.contained("tidy", fn)
		if err != nil {
			s.fail(err)
		}
		return err
	})
}

// ChangeGroup implements Store.
func (s *engine) ChangeGroup(c GroupChange) (*GroupEvent, bool, error) {
	if err := checkChange(&c, s.cfg.MaxGroupMembers); err != nil {
		return nil, false, err
	}
	o := &changeOp{GroupChange: c}
	if err := s.wait(op{kind: opGroupChange, change: o}); err != nil {
		return nil, false, err
	}
	return o.event, o.dup, nil
}

// SettleGroupEvent implements Store.
func (s *engine) SettleGroupEvent(actor, msgID uint64, done func(error)) {
	if !s.submit(op{kind: opSettleEvent, change: &changeOp{GroupChange: GroupChange{Actor: actor, MsgID: msgID}}, done: done}) && done != nil {
		done(ErrClosed)
	}
}

// SettleReceipt implements Store.
func (s *engine) SettleReceipt(sender uint64, key ReceiptKey, done func(error)) {
	if !s.submit(op{kind: opSettleReceipt, r: sender, e: Entry{Settles: key}, done: done}) && done != nil {
		done(ErrClosed)
	}
}

// PendingGroupEvents implements Store.
func (s *engine) PendingGroupEvents(fn func(GroupEvent) bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.be.view(func(rd reader) error { return rd.groupEvents(fn) })
}

// DeleteGroup implements Store.
func (s *engine) DeleteGroup(group uint64) error {
	return s.wait(op{kind: opDeleteGroup, group: group})
}

// PendingReceipts implements Store.
func (s *engine) PendingReceipts(fn func(PendingReceipt) bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.be.view(func(rd reader) error { return rd.pending(fn) })
}

// Stats implements Store.
func (s *engine) Stats() Stats {
	st := s.stats.snapshot()
	st.Queued = uint64(len(s.q))
	s.be.fill(&st)
	return st
}

// Close implements Store.
func (s *engine) Close() error {
	s.closeOnce.Do(func() {
		close(s.hkStop)
		s.abortBackup()
		<-s.hkDone
		s.mu.Lock()
		s.closed = true
		close(s.q)
		s.mu.Unlock()
		<-s.committerDone
		s.closeErr = s.be.close()
	})
	return s.closeErr
}

// run is the committer goroutine: it takes the first queued op, adds every
// op already waiting (up to the batch limits), commits them in one
// transaction, syncs it if any of them is urgent, and then calls their
// callbacks in queue order. A relaxed op does not wait for company: a
// commit without a sync is one pwrite, cheaper than the timer and the
// wake-up of waiting for an urgent op (docs/DESIGN.md); a relaxed append
// then waits for a sync (commitBatch).
func (s *engine) run() {
	defer close(s.committerDone)
	for {
		first, ok := s.nextWait()
		if !ok {
			// Closed and drained: what is held gets its sync before Close
			// closes the database.
			if len(s.unsynced) > 0 && s.failure() == nil {
				s.syncHeld()
			}
			return
		}
		if err := s.failure(); err != nil {
			s.finish(first, err)
			continue
		}
		if first.kind == opExclusive {
			first.done(first.fn())
			continue
		}
		s.commitBatch(first)
	}
}

// nextWait returns the next op: an unfinished op or one held back from the
// last batch first, then q, waiting for it. Meanwhile it syncs the held
// relaxed appends when they are due, retries reopening a failed database,
// and, while free space is below the floor, reads it again every
// diskCheckEvery, so that a server nobody sends to takes messages (and is
// ready) again once space returns. It reports false once q is closed and
// drained.
func (s *engine) nextWait() (op, bool) {
	for {
		if o, ok := s.pending.popFront(); ok {
			return o, true
		}
		due, ok := s.wakeAt()
		if !ok {
			o, ok := <-s.q
			return o, ok
		}
		if d := time.Until(due); d > 0 {
			s.timer.Reset(d)
			select {
			case o, ok := <-s.q:
				s.timer.Stop()
				return o, ok
			case <-s.timer.C:
			}
		}
		now := time.Now()
		if s.disk.low && !now.Before(s.disk.checked.Add(diskCheckEvery)) {
			s.diskLow()
		}
		switch {
		case s.failure() != nil:
			if !now.Before(s.retryAt) {
				s.recover()
			}
		case len(s.unsynced) > 0:
			if !now.Before(s.syncDue) {
				s.syncHeld()
			}
		}
	}
}

// wakeAt returns when the committer has work with no op queued: reopening
// a failed database, syncing held appends, or reading the free space again
// while it is below the floor. It reports false when there is none.
func (s *engine) wakeAt() (time.Time, bool) {
	var due time.Time
	ok := true
	switch {
	case s.failure() != nil:
		due = s.retryAt
	case len(s.unsynced) > 0:
		due = s.syncDue
	default:
		ok = false
	}
	if s.disk.low {
		if at := s.disk.checked.Add(diskCheckEvery); !ok || at.Before(due) {
			due, ok = at, true
		}
	}
	return due, ok
}

// next returns the next op: an unfinished ack or an op held back from the
// last batch first, then q without waiting; false when there is none.
func (s *engine) next() (op, bool) {
	if o, ok := s.pending.popFront(); ok {
		return o, true
	}
	select {
	case o, ok := <-s.q:
		return o, ok
	default:
		return op{}, false
	}
}

// maxLinger bounds how long the committer waits for more ops before it
// commits: a fraction of one fsync (~0.5-1 ms here), so that producers woken
// by the previous commit make it into this one instead of the next.
const maxLinger = 150 * time.Microsecond

// nextLinger is next, except that while the batch (have ops) is smaller
// than the concurrency seen recently, it yields the processor to let woken
// producers queue again, until the deadline.
func (s *engine) nextLinger(have int, deadline time.Time) (op, bool) {
	for {
		if o, ok := s.next(); ok {
			return o, true
		}
		if have >= s.concurrency || !time.Now().Before(deadline) {
			return op{}, false
		}
		runtime.Gosched()
	}
}

// arrived notes that an urgent op queued at the given time (op.queued) is
// in the batch, for awaitCompany's estimate of the rate: urgentGap, the
// mean time between urgent ops, moves an eighth of the way to each new
// gap. A gap counts at most four sync delays, so a quiet spell stops the
// waits within two sends and a burst after it starts them again within a
// few.
func (s *engine) arrived(queued int64) {
	d := int64(s.cfg.SyncDelay)
	if d <= 0 || queued <= s.lastUrgent { // an op back from an earlier batch counted there
		return
	}
	gap := min(queued-s.lastUrgent, 4*d)
	s.lastUrgent = queued
	s.urgentGap += (gap - s.urgentGap) / 8
}

// awaitCompany waits for the next op when the batch holds urgent ops and
// nothing else is queued, if sends arrive often enough that more are due
// within Config.SyncDelay of the oldest (queued at oldest): it waits for
// as many as the recent rate puts there, and never past that time. Those
// sends then share one sync instead of each paying its own: at 5,000
// sends a second over 1,000 pairs, one in flight each, a sync came every
// 1.2 sends without the wait (docs/BENCHMARKS.md). Below about one send
// per SyncDelay nothing waits, and a batch already as large as the rate
// predicts does not wait either (a closed loop's batches fill while the
// previous one syncs). It returns false when the wait ended with none.
func (s *engine) awaitCompany(urgentOps int, oldest int64) (op, bool) {
	wait := companyWait(int64(s.cfg.SyncDelay), s.urgentGap, urgentOps, oldest, int64(time.Since(s.epoch)))
	if wait <= 0 {
		return op{}, false
	}
	s.stats.syncWaits.Add(1)
	start := time.Now()
	s.timer.Reset(wait)
	var o op
	ok := false
	select {
	case o, ok = <-s.q:
		s.timer.Stop()
	case <-s.timer.C:
	}
	s.stats.syncWaitNanos.Add(uint64(time.Since(start)))
	return o, ok
}

// companyWait is awaitCompany's rule, in nanoseconds: how long a batch
// holding urgentOps urgent ops, the oldest queued at oldest, waits at now
// for another, when urgent ops have been coming gap apart and may wait d
// (Config.SyncDelay): while that many ops at that rate span less than d,
// until d after the oldest. 0 means commit now.
func companyWait(d, gap int64, urgentOps int, oldest, now int64) time.Duration {
	if d <= 0 || urgentOps == 0 || int64(urgentOps)*gap >= d {
		return 0
	}
	return time.Duration(max(oldest+d-now, 0))
}

// failure returns the error for a write refused while the database is
// being reopened, or nil when the store is healthy.
func (s *engine) failure() error {
	if p := s.failed.Load(); p != nil {
		return fmt.Errorf("%w (%w)", ErrRecovering, *p)
	}
	return nil
}

// commitBatch applies first and every op waiting behind it to one
// transaction, commits it, syncs it if it holds an urgent op (or too many
// relaxed appends wait for a sync), and calls back.
func (s *engine) commitBatch(first op) {
	s.batchNo++
	now := s.cfg.Now().UnixMilli()
	lingerUntil := time.Now().Add(maxLinger)
	w := s.be.begin()
	s.batch = s.batch[:0]
	units, bytes := 0, 0
	urgent, urgentOps, relaxedAppends := false, 0, 0
	var oldest int64 // when the batch's first urgent op was queued
	var fatal error
	o := first
	for {
		var u, b int
		err := s.contained("apply", func() (err error) {
			if h := s.panicHook.Load(); h != nil {
				(*h)(&o)
			}
			u, b, err = s.apply(w, &o, now, max(1, s.cfg.MaxBatch-units))
			return err
		})
		units, bytes = units+u, bytes+b
		if o.kind == opAppend && o.e.Retry {
			s.retryBatch = s.batchNo
		}
		s.batch = append(s.batch, o)
		if err != nil {
			fatal = err
			break
		}
		if o.urgent() {
			if !urgent {
				oldest = o.queued
			}
			urgent = true
			urgentOps++
			s.arrived(o.queued)
		} else if o.kind == opAppend {
			relaxedAppends++
		}
		if o.unfinished || units >= s.cfg.MaxBatch || bytes >= s.cfg.MaxBatchBytes {
			break
		}
		var ok bool
		if o, ok = s.nextLinger(len(s.batch), lingerUntil); !ok {
			if o, ok = s.awaitCompany(urgentOps, oldest); !ok {
				break
			}
		}
		if o.kind == opExclusive {
			s.pending.pushFront(o) // it stays next
			break
		}
	}
	// What was waiting when the batch closed also wanted in: producers
	// that block on their commit come back once it is done. Only urgent
	// ops count: nobody waits on a relaxed one to send the next, and
	// counting them (a batch of acks) made the next, lone
	// batches spin for company that was not coming (a tenth of the
	// server's CPU at 300 msg/s).
	s.concurrency = max(urgentOps+len(s.q), s.concurrency*7/8)
	if fatal == nil {
		fatal = s.contained("flush", func() error { return s.flush(w) })
	}
	built := time.Now()
	s.stats.buildNanos.Add(uint64(built.Sub(lingerUntil.Add(-maxLinger))))
	sync := urgent || len(s.unsynced)+relaxedAppends >= s.cfg.MaxBatch
	if fatal == nil {
		stop := s.prefetch()
		fatal = s.contained("commit", func() error {
			err := w.commit()
			if err == nil && sync {
				err = s.timedSync()
			}
			return err
		})
		stop()
	} else {
		w.discard()
	}
	s.stats.commitNanos.Add(uint64(time.Since(built)))
	if fatal != nil {
		s.fail(fatal)
		return
	}
	s.committed(len(s.batch))
	s.prevKeys, s.batchKeys = s.batchKeys, s.prevKeys
	clear(s.batchKeys)
	called := time.Now()
	if sync {
		s.finishUnsynced()
	}
	for i := range s.batch {
		o := &s.batch[i]
		switch {
		case o.unfinished:
			o.unfinished = false
			s.pending.pushFront(*o)
		case sync || o.kind != opAppend || (o.err != nil && len(s.unsynced) == 0):
			// Acks and expiry need no sync, nor does a refusal (which
			// still waits behind held appends, to keep callbacks in
			// queue order).
			s.finish(*o, nil)
		default:
			if len(s.unsynced) == 0 {
				s.syncDue = time.Now().Add(s.cfg.RelaxedDelay)
			}
			s.unsynced = append(s.unsynced, *o)
		}
	}
	clear(s.batch)
	s.batch = s.batch[:0]
	s.stats.callbackNanos.Add(uint64(time.Since(called)))
	// The callbacks made goroutines runnable (routers taking ACCEPTs and
	// DELIVERs to the event loops). Yielding lets them run before this
	// goroutine builds and syncs the next batch, whose fdatasync would
	// hold the processor they wait for until the runtime's monitor takes
	// it back (DESIGN.md, "Measured pitfalls"). At 5,000 msg/s, with
	// the tier's dedupe records spilled in chunks, the p99 from SEND to
	// ACCEPT fell to 0.90× and the p50 to 0.82×; yielding only when more
	// ops were queued, or just before the sync, did not help.
	runtime.Gosched()
	if err := s.contained("tidy", s.be.tidy); err != nil {
		s.fail(err)
	}
}

// syncHeld syncs the committed relaxed appends that wait for a sync, and
// calls their callbacks.
func (s *engine) syncHeld() {
	if err := s.timedSync(); err != nil {
		s.fail(err)
		return
	}
	s.finishUnsynced()
}

// timedSync syncs, counting the sync and its time.
func (s *engine) timedSync() error {
	start := time.Now()
	err := s.be.sync()
	s.stats.syncs.Add(1)
	s.stats.syncNanos.Add(uint64(time.Since(start)))
	return err
}

// finishUnsynced calls back the held relaxed appends after a sync.
func (s *engine) finishUnsynced() {
	for i := range s.unsynced {
		s.finish(s.unsynced[i], nil)
	}
	clear(s.unsynced)
	s.unsynced = s.unsynced[:0]
}

// fail fails every op of the open batch and every held append with
// ErrCommit, whatever each was told by apply (a retry found as a
// duplicate of an op in the same batch was not stored either), and
// refuses every write until recover has reopened the database.
func (s *engine) fail(cause error) {
	err := fmt.Errorf("%w: %w", ErrCommit, cause)
	s.failed.Store(&err)
	s.stats.commitErrors.Add(1)
	// A failed sync follows a commit that may have kept the expired
	// receipts of the batch: count them, so delivery looks (a look that
	// finds nothing costs one scan of the pending receipts).
	s.stats.expiredReceipts.Add(uint64(s.expiredOwed))
	s.expiredOwed = 0
	s.log.Error("storage: commit failed; refusing writes until the database is reopened", "err", cause, "ops", len(s.batch)+len(s.unsynced))
	for _, held := range [][]op{s.unsynced, s.batch} {
		for i := range held {
			held[i].unfinished = false
			held[i].err = nil
			s.finish(held[i], err)
		}
	}
	clear(s.batch)
	s.batch = s.batch[:0]
	clear(s.unsynced)
	s.unsynced = s.unsynced[:0]
	s.retryAt, s.backoff = time.Now(), recoverFirstBackoff
}

// recoverFirstBackoff and recoverMaxBackoff space the attempts to reopen a
// failed database: at once, then after 100 ms, doubling up to 5 s, so a
// disk that comes back is used within seconds, and one that does not is
// not hammered.
const (
	recoverFirstBackoff = 100 * time.Millisecond
	recoverMaxBackoff   = 5 * time.Second
)

// recover reopens the database after a failed commit and, if that works,
// starts over from what is on disk: the committer's cache and totals are
// reloaded, and writes are taken again. Ops that arrived meanwhile were
// refused with ErrRecovering. Committer goroutine only.
func (s *engine) recover() {
	if s.stats.down.Load() == 1 {
		s.retryAt = time.Now().Add(time.Hour) // given up: contain.go
		return
	}
	if !s.hkMu.TryLock() {
		s.retryAt = time.Now().Add(recoverFirstBackoff) // a housekeeping round is running
		return
	}
	s.abortBackup() // it holds the database; reopen waits for it to return
	err := s.be.reopen()
	if err == nil {
		err = s.be.view(func(rd reader) error {
			var err error
			s.tot, err = rd.totals()
			return err
		})
	}
	s.hkMu.Unlock()
	if err != nil {
		s.log.Error("storage: reopening the database failed; will retry", "err", err, "in", s.backoff)
		s.retryAt = time.Now().Add(s.backoff)
		s.backoff = min(2*s.backoff, recoverMaxBackoff)
		return
	}
	for _, c := range s.cache {
		s.tailDrop(c)
	}
	clear(s.cache)
	s.quotaReset()
	s.dirty = s.dirty[:0]
	s.totDirt = false
	clear(s.batchKeys)
	clear(s.prevKeys)
	s.stats.storedMessages.Store(uint64(max(0, s.tot.count)))
	s.stats.storedBytes.Store(uint64(max(0, s.tot.bytes)))
	s.stats.recoveries.Add(1)
	s.failed.Store(nil)
	s.log.Warn("storage: database reopened after a failed commit; taking writes again")
}

// flush writes the batch's changed metas and totals into w.
func (s *engine) flush(w writer) error {
	for _, c := range s.dirty {
		if err := w.putMeta(c.r, c.m); err != nil {
			return err
		}
	}
	if err := s.flushQuota(w); err != nil {
		return err
	}
	if s.totDirt {
		return w.putTotals(s.tot)
	}
	return nil
}

// committed updates the counters and the cache after a successful commit.
func (s *engine) committed(ops int) {
	for _, c := range s.dirty {
		c.dirty = false
		c.persisted = c.m.hw
	}
	s.dirty = s.dirty[:0]
	s.totDirt = false
	s.quotaCommitted()
	// Counted only now that they are committed: delivery reads them when
	// it sees the counter grow.
	s.stats.expiredReceipts.Add(uint64(s.expiredOwed))
	s.expiredOwed = 0
	s.stats.commits.Add(1)
	s.stats.batchedOps.Add(uint64(ops))
	if uint64(ops) > s.stats.maxBatchOps.Load() {
		s.stats.maxBatchOps.Store(uint64(ops))
	}
	s.stats.storedMessages.Store(uint64(max(0, s.tot.count)))
	s.stats.storedBytes.Store(uint64(max(0, s.tot.bytes)))
	if len(s.cache) > s.cfg.MetaCacheEntries {
		keep := s.cfg.MetaCacheEntries * 7 / 8 // evict in bulk, not per commit
		for r, c := range s.cache {
			s.tailDrop(c)
			delete(s.cache, r)
			if len(s.cache) <= keep {
				break
			}
		}
	}
}

// finish calls o's callback with its result: err when not nil, else what
// apply decided.
func (s *engine) finish(o op, err error) {
	if err == nil {
		err = o.err
	}
	if o.kind == opAck {
		var res AckResult
		if err == nil && o.ack != nil {
			res = *o.ack
			s.stats.acks.Add(1)
			s.stats.deleted.Add(uint64(res.Deleted))
			s.stats.receipts.Add(uint64(len(res.Receipts)))
		}
		s.call(func() { o.ackDone(res, err) })
		return
	}
	if o.kind == opAppend && err == nil {
		s.stats.appends.Add(1)
		s.stats.appendedBytes.Add(uint64(len(o.e.Value)))
	}
	if o.done != nil {
		s.call(func() { o.done(err) })
	}
}

// getMeta returns the committer's meta for r, loading it on a cache miss.
func (s *engine) getMeta(w writer, r uint64) (*cachedMeta, error) {
	if c, ok := s.cache[r]; ok {
		return c, nil
	}
	m, persisted, err := loadMeta(w, r)
	if err != nil {
		return nil, err
	}
	c := &cachedMeta{r: r, m: m, persisted: persisted}
	s.tailReset(c)
	s.cache[r] = c
	return c, nil
}

// metaEvery is how many appends to one recipient may pass before its meta
// record is rewritten. The high-water mark needs no meta write to be
// durable: the entry key itself holds the seq, in the same transaction.
// Skipping the meta write saves one of three keys per append; the price is
// that loading a recipient scans the entries above the stored hw, at most
// metaEvery-1 of them. The first append, acks and expiry always write the
// meta.
const metaEvery = 16

// loadMeta reads r's meta and folds in the entries appended since it was
// last written. persisted is the hw stored in the meta record.
func loadMeta(rd reader, r uint64) (m meta, persisted uint64, err error) {
	if m, err = rd.meta(r); err != nil {
		return m, 0, err
	}
	persisted = m.hw
	err = rd.scan(r, m.hw+1, func(e *Entry) bool {
		m.hw = e.Seq
		m.count++
		m.bytes += int64(len(e.Value))
		return true
	})
	return m, persisted, err
}

// touch marks c changed in the open batch.
func (s *engine) touch(c *cachedMeta) {
	if !c.dirty {
		c.dirty = true
		s.dirty = append(s.dirty, c)
	}
}

// expired reports whether an entry stored at t (unix ms) is past its TTL.
func (s *engine) expired(t, now int64) bool { return t+s.ttlMs <= now }

// housekeepLoop runs housekeeping every cfg.HousekeepingInterval.
func (s *engine) housekeepLoop() {
	defer close(s.hkDone)
	if s.cfg.HousekeepingInterval < 0 {
		<-s.hkStop
		return
	}
	t := time.NewTicker(s.cfg.HousekeepingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.hkStop:
			return
		case <-t.C:
			if err := s.housekeep(); err != nil && !errors.Is(err, ErrClosed) {
				s.log.Warn("storage: housekeeping", "err", err)
			}
		}
	}
}

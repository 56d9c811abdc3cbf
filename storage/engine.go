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
	failed atomic.Pointer[error] // the first failed commit; poisons every later write

	// Owned by the committer goroutine.
	cache       map[uint64]*cachedMeta // bounded by cfg.MetaCacheEntries after each commit
	dirty       []*cachedMeta          // entries of cache changed in the open batch
	tot         totals                 // committed totals plus the open batch
	totDirt     bool                   // tot changed in the open batch
	batch       []op                   // the ops of the open batch
	pending     opDeque                // ops for the next batch, in order: an unfinished ack, held back, or prefetched
	prefetched  []op                   // the prefetch helper's buffer, kept for the next batch; see prefetch.go
	concurrency int                    // ops recently in flight at once: batch plus queue, decaying
	dead        []deadEntry            // scratch for acks and expiry
	tailEntries int                    // entries in all tails of cache; at most tailBudget
	tailMax     int                    // defaultTailMax; tests change it before the first op
	tailBudget  int                    // defaultTailBudget; likewise
	tailHits    int                    // collects served from a tail, for tests
	batchNo     uint64                 // number of the open batch; see prefetch.go
	batchKeys   map[dedupeID]Dup       // dedupe records written by the open batch
	prevKeys    map[dedupeID]Dup       // dedupe records written by the batch before

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
	opCreateGroup
	opAddMember
	opRemoveMember
	opDeleteGroup
	opExclusive
)

// op is one queued write. It travels by value through q.
type op struct {
	kind   opKind
	e      Entry  // opAppend
	r      uint64 // opAck, opExpire: the recipient
	upto   uint64 // opAck
	group  uint64 // group ops
	member uint64 // group ops; the owner for opCreateGroup
	role   Role
	fn     func() error // opExclusive

	done    func(error)            // every kind but opAck; may be nil for opExpire
	ackDone func(AckResult, error) // opAck

	// Owned by the committer while the op is in a batch.
	err        error      // why this op alone was refused
	dupBatch   uint64     // opAppend: the batch dupFound and dup are valid for; 0 if not looked up
	dupFound   bool       // the prefetch snapshot held a dedupe record for the entry
	dup        Dup        // that record
	ack        *AckResult // opAck: what was deleted so far
	unfinished bool       // opAck: continues in the next batch
}

func newEngine(cfg Config, be backend) (*engine, error) {
	s := &engine{
		cfg:           cfg,
		be:            be,
		log:           cfg.Logger,
		ttlMs:         cfg.MessageTTL.Milliseconds(),
		dedupeMs:      cfg.DedupeWindow.Milliseconds(),
		q:             make(chan op, cfg.QueueLen),
		cache:         make(map[uint64]*cachedMeta),
		batchKeys:     make(map[dedupeID]Dup),
		prevKeys:      make(map[dedupeID]Dup),
		tailMax:       defaultTailMax,
		tailBudget:    defaultTailBudget,
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

// CreateGroup implements Store.
func (s *engine) CreateGroup(group, owner uint64) error {
	return s.wait(op{kind: opCreateGroup, group: group, member: owner})
}

// AddMember implements Store.
func (s *engine) AddMember(group, member uint64, role Role) error {
	if role < RoleMember || role > RoleOwner {
		return fmt.Errorf("%w: role %d", ErrInvalidEntry, role)
	}
	return s.wait(op{kind: opAddMember, group: group, member: member, role: role})
}

// RemoveMember implements Store.
func (s *engine) RemoveMember(group, member uint64) error {
	return s.wait(op{kind: opRemoveMember, group: group, member: member})
}

// DeleteGroup implements Store.
func (s *engine) DeleteGroup(group uint64) error {
	return s.wait(op{kind: opDeleteGroup, group: group})
}

// Stats implements Store.
func (s *engine) Stats() Stats { return s.stats.snapshot() }

// Close implements Store.
func (s *engine) Close() error {
	s.closeOnce.Do(func() {
		close(s.hkStop)
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
// transaction and then calls their callbacks in queue order.
func (s *engine) run() {
	defer close(s.committerDone)
	for {
		first, ok := s.next(true)
		if !ok {
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

// next returns the next op: an unfinished ack or an op held back from the
// last batch first, then q. With block, it waits for q; it reports false
// when there is nothing (q empty, or closed and drained).
func (s *engine) next(block bool) (op, bool) {
	if o, ok := s.pending.popFront(); ok {
		return o, true
	}
	if block {
		o, ok := <-s.q
		return o, ok
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

// nextLinger is next(false), except that while the batch (have ops) is
// smaller than the concurrency seen recently, it yields the processor to let
// woken producers queue again, until the deadline.
func (s *engine) nextLinger(have int, deadline time.Time) (op, bool) {
	for {
		if o, ok := s.next(false); ok {
			return o, true
		}
		if have >= s.concurrency || !time.Now().Before(deadline) {
			return op{}, false
		}
		runtime.Gosched()
	}
}

func (s *engine) failure() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// commitBatch applies first and every op waiting behind it to one
// transaction, commits it and calls back.
func (s *engine) commitBatch(first op) {
	s.batchNo++
	now := s.cfg.Now().UnixMilli()
	lingerUntil := time.Now().Add(maxLinger)
	w := s.be.begin()
	s.batch = s.batch[:0]
	units, bytes := 0, 0
	var fatal error
	o := first
	for {
		u, b, err := s.apply(w, &o, now, max(1, s.cfg.MaxBatch-units))
		units, bytes = units+u, bytes+b
		s.batch = append(s.batch, o)
		if err != nil {
			fatal = err
			break
		}
		if o.unfinished || units >= s.cfg.MaxBatch || bytes >= s.cfg.MaxBatchBytes {
			break
		}
		var ok bool
		if o, ok = s.nextLinger(len(s.batch), lingerUntil); !ok {
			break
		}
		if o.kind == opExclusive {
			s.pending.pushFront(o) // it stays next
			break
		}
	}
	// What was waiting when the batch closed also wanted in: producers
	// that block on their commit come back once it is done.
	s.concurrency = max(len(s.batch)+len(s.q), s.concurrency*7/8)
	if fatal == nil {
		fatal = s.flush(w)
	}
	built := time.Now()
	s.stats.buildNanos.Add(uint64(built.Sub(lingerUntil.Add(-maxLinger))))
	if fatal == nil {
		stop := s.prefetch()
		fatal = w.commit()
		stop()
	} else {
		w.discard()
	}
	s.stats.commitNanos.Add(uint64(time.Since(built)))
	if fatal != nil {
		err := fmt.Errorf("%w: %w", ErrCommit, fatal)
		s.failed.CompareAndSwap(nil, &err)
		s.stats.commitErrors.Add(1)
		s.log.Error("storage: commit failed; refusing writes until reopened", "err", fatal, "ops", len(s.batch))
		for i := range s.batch {
			s.batch[i].unfinished = false
			s.finish(s.batch[i], err)
		}
		return
	}
	s.committed(len(s.batch))
	s.prevKeys, s.batchKeys = s.batchKeys, s.prevKeys
	clear(s.batchKeys)
	called := time.Now()
	for i := range s.batch {
		if s.batch[i].unfinished {
			s.batch[i].unfinished = false
			s.pending.pushFront(s.batch[i])
			continue
		}
		s.finish(s.batch[i], nil)
	}
	s.stats.callbackNanos.Add(uint64(time.Since(called)))
}

// flush writes the batch's changed metas and totals into w.
func (s *engine) flush(w writer) error {
	for _, c := range s.dirty {
		if err := w.putMeta(c.r, c.m); err != nil {
			return err
		}
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

// finish calls o's callback with its result; commitErr overrides success.
func (s *engine) finish(o op, commitErr error) {
	err := o.err
	if err == nil {
		err = commitErr
	}
	if o.kind == opAck {
		var res AckResult
		if err == nil && o.ack != nil {
			res = *o.ack
			s.stats.acks.Add(1)
			s.stats.deleted.Add(uint64(res.Deleted))
			s.stats.receipts.Add(uint64(len(res.Receipts)))
		}
		o.ackDone(res, err)
		return
	}
	if o.kind == opAppend && err == nil {
		s.stats.appends.Add(1)
		s.stats.appendedBytes.Add(uint64(len(o.e.Value)))
	}
	if o.done != nil {
		o.done(err)
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

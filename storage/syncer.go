package storage

import (
	"fmt"
	"sync"
	"time"
)

// The syncer overlaps the sync of one batch with the building and commit
// of the next. A sync takes most of a millisecond here, a commit a fraction
// of that: with the committer waiting for each sync, it was the committer
// that limited a busy store. Now the committer commits a batch and hands its
// ops to the syncer, which syncs (covering every commit made before the
// sync started) and then calls them back. An op is never called back before
// a sync that started after its commit, so the durability promise of each
// method is unchanged.

// syncer is the goroutine that syncs committed batches and calls back their
// ops.
type syncer struct {
	mu   sync.Mutex
	cond *sync.Cond // signalled when ops arrive, when a round ends, and on stop

	// Guarded by mu.
	queue   []op // committed ops waiting for the next sync, in queue order; at most what the commit queue and a few batches hold
	spare   []op // the other buffer, reused
	running bool // a round (sync and callbacks) is in progress
	stop    bool // no more ops will come: drain and return

	done chan struct{} // closed when the goroutine returns
}

func (s *engine) startSyncer() {
	s.sy.cond = sync.NewCond(&s.sy.mu)
	s.sy.done = make(chan struct{})
	go s.syncLoop()
}

// toSyncer hands committed ops to the syncer, in order. Committer only.
func (s *engine) toSyncer(ops []op) {
	if len(ops) == 0 {
		return
	}
	y := &s.sy
	y.mu.Lock()
	y.queue = append(y.queue, ops...)
	y.cond.Broadcast()
	y.mu.Unlock()
}

// syncIdle waits until the syncer has called back everything handed to it.
// Committer only (before a reopen, an exclusive op, or stopping).
func (s *engine) syncIdle() {
	y := &s.sy
	y.mu.Lock()
	for len(y.queue) > 0 || y.running {
		y.cond.Wait()
	}
	y.mu.Unlock()
}

// stopSyncer lets the syncer finish what it holds and waits for it.
func (s *engine) stopSyncer() {
	y := &s.sy
	y.mu.Lock()
	y.stop = true
	y.cond.Broadcast()
	y.mu.Unlock()
	<-y.done
}

func (s *engine) syncLoop() {
	y := &s.sy
	defer close(y.done)
	for {
		y.mu.Lock()
		for len(y.queue) == 0 && !y.stop {
			y.cond.Wait()
		}
		if len(y.queue) == 0 {
			y.mu.Unlock()
			return
		}
		ops := y.queue
		y.queue, y.spare = y.spare[:0], nil
		y.running = true
		y.mu.Unlock()

		var failed error
		if p := s.failed.Load(); p != nil {
			failed = *p // committed before a failure: what a reopen replays is unknown
		} else if err := s.timedSync(); err != nil {
			failed = fmt.Errorf("%w: %w", ErrCommit, err)
			s.failed.CompareAndSwap(nil, &failed)
			s.stats.commitErrors.Add(1)
			s.log.Error("storage: sync failed; refusing writes until the database is reopened", "err", err, "ops", len(ops))
		}
		s.stats.syncs.Add(1)
		for i := range ops {
			if failed != nil {
				ops[i].err = nil
			}
			s.finish(ops[i], failed)
		}
		clear(ops)

		y.mu.Lock()
		y.spare = ops[:0]
		y.running = false
		y.cond.Broadcast()
		y.mu.Unlock()
	}
}

// timedSync syncs and adds the time it took to Stats.SyncTime.
func (s *engine) timedSync() error {
	start := time.Now()
	err := s.be.sync()
	s.stats.syncNanos.Add(uint64(time.Since(start)))
	return err
}

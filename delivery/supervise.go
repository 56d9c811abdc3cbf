package delivery

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"switchboard/protocol"
	"switchboard/storage"
)

// Let it crash, but only the part that failed. A panic in a shard or a
// group worker is caught by the router, which owns them: it is counted
// (Stats.Crashes) and logged once with its stack, the worker's in-memory
// state is dropped and rebuilt from storage, and the worker runs again.
//
// What a shard holds in memory is a cache of storage plus its sessions'
// flow state (what was pushed and acknowledged), which the panic may have
// left half-updated. So recoverCrash:
//
//   - closes the sessions of the shard's users with INTERNAL: their clients
//     reconnect and resume from their last ACK, as after any close, and
//     their entries are safe in storage;
//   - answers the request or completion in hand, and every request queued,
//     with a retryable refusal (REFUSE RETRY_LATER; a group send's fan-out
//     fails with RETRY_LATER; a login is closed): nothing was acknowledged
//     that is not durable, and a retried send that was in fact stored is
//     caught as a duplicate and accepted;
//   - waits (up to crashDrain) for the appends and acks it handed to
//     storage, answering their senders (ACCEPT for what was stored), so
//     that seqs are read back from storage only once nothing is in flight;
//     those that complete after it gave up are answered as they come, and
//     counted no more among the shard's operations in flight;
//   - drops its users, idle users and held receipts (these are pending in
//     storage: a rescan offers them again). Users reload on first touch.
//
// A group worker's state is its membership cache: it is dropped, and the
// request in hand and those queued are refused with RETRY_LATER.
//
// A worker that crashes crashLimit times within crashWindow is not
// restarted: its queue fills and the gateway refuses its users' requests
// at the edge (RETRY_LATER), and Ready reports it, so that an operator or
// orchestrator replaces the process rather than the router looping.
const (
	crashLimit  = 5
	crashWindow = time.Minute
	// crashDrain bounds the wait for a crashed shard's storage operations:
	// commits take milliseconds; a count the panic left wrong must not
	// keep the shard down.
	crashDrain = 5 * time.Second
	// crashRetry is the retry_after, in milliseconds, of a request refused
	// because its worker crashed: about a restart's time.
	crashRetry = 100
	// reasonCrashed is the refusal reason of those requests.
	reasonCrashed = "routing worker crashed and restarted: retry"
)

// errCrashed fails the fan-out a crashed worker was part of; senders are
// told RETRY_LATER, as for a busy shard.
var errCrashed = fmt.Errorf("%w: delivery: routing worker crashed", errBusy)

// ErrWorkerDown is what Ready returns once a worker crashed too often to be
// restarted.
var ErrWorkerDown = errors.New("delivery: routing worker down")

// Ready reports whether every shard and group worker is running: an error
// wrapping ErrWorkerDown once one crashed crashLimit times within
// crashWindow and was left down. Safe for concurrent use.
func (r *Router) Ready() error {
	r.downMu.Lock()
	defer r.downMu.Unlock()
	if r.down != "" {
		return fmt.Errorf("%w: %s", ErrWorkerDown, r.down)
	}
	return nil
}

// supervise runs a worker's loop until it returns, restarting it after
// each panic with its state rebuilt by recoverCrash, until it crashes too
// often. It runs on the worker's goroutine.
func (r *Router) supervise(name string, run, recoverCrash func()) {
	var crashes []time.Time // the last crashLimit, bounded
	for {
		if !r.runCaught(name, run) {
			return // stopped
		}
		now := time.Now()
		crashes = append(crashes, now)
		if len(crashes) > crashLimit {
			crashes = crashes[1:]
		}
		recoverCrash()
		if len(crashes) == crashLimit && now.Sub(crashes[0]) < crashWindow {
			r.downMu.Lock()
			r.down = fmt.Sprintf("%s crashed %d times within %v", name, crashLimit, crashWindow)
			r.downMu.Unlock()
			r.cfg.Logger.Error("delivery: worker crashes repeatedly; left down, the router is not ready", "worker", name)
			return
		}
	}
}

// runCaught runs run and reports whether it panicked; the panic is counted
// and logged with its stack.
func (r *Router) runCaught(name string, run func()) (crashed bool) {
	defer func() {
		if p := recover(); p != nil {
			r.stats.Crashes.Add(1)
			r.cfg.Logger.Error("delivery: worker panicked; restarting it with its state reloaded from storage",
				"worker", name, "panic", p, "stack", string(debug.Stack()))
			crashed = true
		}
	}()
	run()
	return false
}

// inHand is what a shard must answer if it panics while handling a request
// or a completion: the sender's connection or the fan-out, and the id.
type inHand struct {
	sess  Session
	fan   *fanout
	msgID uint64
	login bool // conn is logging in: close it
}

func requestInHand(q *request) inHand {
	switch q.kind {
	case reqSend, reqFanout:
		return inHand{sess: q.sess, fan: q.fan, msgID: q.msgID}
	case reqLogin, reqResume:
		return inHand{sess: q.sess, login: true}
	case reqReceipt:
		return inHand{} // pending in storage; the rescan after a crash offers it again
	}
	return inHand{}
}

func completionInHand(c *completion) inHand {
	if c.kind == doneAppend {
		return inHand{sess: c.sess, fan: c.fan, msgID: c.msgID}
	}
	return inHand{}
}

// refuse answers h with a retryable refusal.
func (h inHand) refuse(r *Router) {
	switch {
	case h.fan != nil:
		h.fan.done(errCrashed)
	case h.login && h.sess.Valid():
		r.close(h.sess, protocol.CodeInternal)
	case h.sess.Valid():
		r.push(h.sess, Outbound{Kind: OutRefuse, MsgID: h.msgID, Code: protocol.CodeRetryLater, RetryAfter: crashRetry, Reason: reasonCrashed})
	}
}

// recoverCrash rebuilds a shard after a panic (see above). It runs on the
// shard's goroutine, before run starts again.
func (s *shard) recoverCrash() {
	s.cur.refuse(s.r)
	s.cur = inHand{}
	for _, u := range s.users {
		if u.sess.Valid() {
			s.r.close(u.sess, protocol.CodeInternal)
		}
	}
	for _, iu := range s.idle {
		s.r.close(iu.sess, protocol.CodeInternal)
	}
	for range cap(s.in) {
		select {
		case q := <-s.in:
			requestInHand(&q).refuse(s.r)
			continue
		default:
		}
		break
	}
	deadline := time.NewTimer(s.r.crashDrain)
	defer deadline.Stop()
	for s.inflight > 0 {
		select {
		case c := <-s.done:
			if c.gen == s.gen {
				s.inflight--
			}
			s.answer(c)
			continue
		case <-deadline.C:
			s.r.cfg.Logger.Error("delivery: a crashed shard's storage operations did not all complete", "missing", s.inflight)
		}
		break
	}
	if s.inflight != 0 {
		// Those still missing complete after this: a new generation
		// tells them apart, so that they are answered without being
		// counted against the operations started from now on.
		s.gen++
		s.inflight = 0
	}
	s.users = make(map[uint64]*user)
	s.idle = make(map[uint64]idleUser)
	clear(s.held)
	s.held = s.held[:0]
	s.publishHeld()
	s.r.rescan.Store(true) // held receipts, and receipts of acks completed above
}

// answer tells the sender of a completion whose user's state is gone how
// its append ended. Acks need no answer: their receipts are pending in
// storage (the rescan offers them), and a failed one is acked again by the
// client after it reconnects.
func (s *shard) answer(c completion) {
	if c.kind != doneAppend {
		s.r.rescan.Store(true)
		return
	}
	var dup *storage.DuplicateError
	switch {
	case c.fan != nil:
		c.fan.done(c.err)
	case !c.sess.Valid():
		// A receipt entry: still pending if it failed, here or, for one
		// from another node, in that node's store.
		switch {
		case c.settler == 0:
			s.r.rescan.Store(true)
		case c.err == nil:
			s.r.settleRemote(c.settler, c.user, c.settles)
		default:
			s.r.askRescan(c.settler)
		}
	case c.err == nil || errors.As(c.err, &dup):
		s.r.stats.Accepted.Add(1)
		s.r.timeAccept(c)
		s.r.push(c.sess, Outbound{Kind: OutAccept, MsgID: c.msgID})
	default:
		code, retry := s.r.refusal(c.err)
		s.r.push(c.sess, Outbound{Kind: OutRefuse, MsgID: c.msgID, Code: code, RetryAfter: retry, Reason: refusalReason(c.err)})
	}
}

// recoverCrash rebuilds a group worker after a panic: its cache is
// dropped, and the request in hand and those queued are refused.
func (w *groupWorker) recoverCrash() {
	refuse := func(q groupReq) {
		if q.sess.Valid() && !q.signal {
			w.r.push(q.sess, Outbound{Kind: OutRefuse, MsgID: q.msgID, Code: protocol.CodeRetryLater, RetryAfter: crashRetry, Reason: reasonCrashed})
		}
	}
	refuse(w.cur)
	w.cur = groupReq{}
	for range cap(w.in) {
		select {
		case q := <-w.in:
			refuse(q)
			continue
		default:
		}
		break
	}
	w.cache = map[uint64]map[uint64]storage.Role{}
}

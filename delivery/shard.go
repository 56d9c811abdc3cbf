package delivery

import (
	"errors"
	"sync/atomic"
	"time"

	"switchboard/protocol"
	"switchboard/storage"
)

type reqKind uint8

const (
	reqLogin    reqKind = iota + 1 // conn logs in as user; seq: its LOGIN ack
	reqLogout                      // conn is gone
	reqSend                        // from sends record (msgID) to user
	reqAck                         // user acks through seq on conn
	reqReceipt                     // a receipt for user's messages msgID..msgID+more; from: by; settles: its pending receipt
	reqSignal                      // from signals user, or the users in list (one shard's part of a group); msgID: kind; more: group
	reqFanout                      // one member's copy of a group message or event: record, entry kind, fan
	reqHoldRead                    // a read receipt (as reqReceipt) whose sender's shard was busy: held by the reader's shard and offered again
	reqResume                      // a connection handed over from another process carries on as user's session: seq acked, more the highest seq written (no WELCOME)
)

// request is one unit of work for a shard.
type request struct {
	kind    reqKind
	read    bool // reqReceipt: a read receipt
	expired bool // reqReceipt: an expired receipt (neither: delivered)
	sess    Session
	user    uint64 // the user the shard owns that this request is about
	from    uint64
	msgID   uint64
	more    uint64
	seq     uint64
	retry   bool // reqSend, reqFanout: storage.Entry.Retry
	record  []byte
	entry   storage.Kind       // reqFanout
	fan     *fanout            // reqFanout: told the outcome
	settles storage.ReceiptKey // reqReceipt of a delivered receipt: the pending receipt it settles
	list    []uint64           // reqSignal to a group: the members this shard owns; shared, read-only
	at      time.Duration      // reqSend: when Send took it (Router.stamp), for Router.AcceptLatency
	settler uint32             // reqReceipt from another node: the node whose store holds the pending receipt settles (peers.go)
}

type doneKind uint8

const (
	doneAppend doneKind = iota + 1
	doneAck
)

// completion reports a storage operation back to the shard that started it.
type completion struct {
	kind   doneKind
	user   uint64
	seq    uint64  // doneAppend: the entry's seq
	sess   Session // doneAppend: the sender's session, told ACCEPT or REFUSE
	fan    *fanout // doneAppend of a group copy: told the outcome instead of conn
	msgID  uint64  // doneAppend of a message: the sender's id
	record []byte
	at     time.Duration // doneAppend of a 1:1 send: when Send took it (Router.stamp); zero: not timed
	// settler and settles: a receipt from another node, whose pending
	// receipt that node settles once this entry is stored (peers.go).
	settler uint32
	settles storage.ReceiptKey
	err     error
	ack     storage.AckResult
	// gen is the shard's generation when the operation was handed to
	// storage: one of an earlier generation is no longer counted in flight
	// (recoverCrash gave up waiting for it).
	gen uint32
}

// user is a shard's state of one user: loaded on first touch, dropped when
// the user is offline with nothing in flight.
type user struct {
	id        uint64
	last      uint64  // highest seq assigned
	committed uint64  // highest seq whose append completed (stored or failed)
	sent      uint64  // every seq <= sent was pushed to conn, or does not exist
	acked     uint64  // highest seq conn acknowledged
	sess      Session // zero: offline
	stuck     int64   // unix nanoseconds the window became full; 0: not full
	inflight  int32   // appends and acks handed to storage, not completed
	pending   uint32  // bytes pushed since conn last acked all it was sent (WindowBytes)
	// ackAgain says the commit of the last ack failed: its entries are
	// still stored and its receipts not made, so the next tick offers the
	// ack (through acked) to storage again.
	ackAgain bool
}

// shard owns the users that hash to it. Everything but the channels is
// owned by its run goroutine.
type shard struct {
	r *Router

	// in carries requests from the gateway and other shards; bounded by
	// Config.QueueLen; senders never block (submit refuses when full).
	in chan request
	// done carries completions from the storage committer; its capacity is
	// Config.MaxInFlight and the shard never has more in flight, so a send
	// on it never blocks the committer.
	done chan completion
	stop chan struct{}
	// tickNow runs the once-a-second work at once and closes the channel
	// it carries (Router.Tick, for tests).
	tickNow chan chan struct{}

	users map[uint64]*user
	// idle holds the online users with nothing outstanding: all they need
	// is their connection and last seq, a third of a user's state, which
	// matters when most of a host's connections are idle.
	idle     map[uint64]idleUser
	inflight int
	// gen counts the crash recoveries that gave up waiting for the
	// shard's storage operations; see completion.gen.
	gen     uint32
	scratch []storage.Entry
	// held are receipts (delivered ones this shard's acks made, read ones
	// its users sent) whose sender's shard queue was full, in the order
	// they were made; offered again after heldRetry and with the next
	// receipts. Bounded by Config.QueueLen: past it a receipt is dropped
	// (counted; a delivered one stays pending in storage). Like queued requests, they are lost if the router stops.
	held  []request
	retry *time.Timer // armed while held is not empty
	// heldLen is len(held), for Gauges. Atomic; written by the run goroutine.
	heldLen atomic.Int64
	// cur is the request or completion being handled, answered with a
	// retryable refusal if handling it panics (supervise.go).
	cur inHand
}

func newShard(r *Router, _ int) *shard {
	return &shard{
		r:       r,
		in:      make(chan request, r.cfg.QueueLen),
		done:    make(chan completion, r.cfg.MaxInFlight),
		stop:    make(chan struct{}),
		tickNow: make(chan chan struct{}),
		users:   make(map[uint64]*user),
		idle:    make(map[uint64]idleUser),
	}
}

func (s *shard) run() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	s.retry = time.NewTimer(heldRetry)
	s.retry.Stop()
	defer s.retry.Stop()
	stopping, stop := false, s.stop // a restart after a crash sees a closed stop again
	for {
		// Finishing (Router.Finish), a stopping shard still takes what is
		// queued; otherwise it drops it.
		dropping := stopping && !s.r.finishing.Load()
		if stopping && s.inflight == 0 && (dropping || len(s.in) == 0) {
			return
		}
		if s.drain(dropping) {
			continue
		}
		in := s.in
		if s.inflight >= s.r.cfg.MaxInFlight || dropping {
			in = nil // completions first; requests wait in the queue
		}
		select {
		case q := <-in:
			s.cur = requestInHand(&q)
			s.handle(q)
		case c := <-s.done:
			s.took(c)
		case <-tick.C:
			s.tick()
		case ack := <-s.tickNow:
			s.tick()
			close(ack)
		case <-s.retry.C:
			s.offerHeld()
		case <-stop:
			stopping, stop = true, nil
		}
	}
}

// tick is the shard's once-a-second work: slow consumers, acks to retry,
// and (on the first shard) pending receipts to offer again.
func (s *shard) tick() {
	s.checkSlow()
	s.ackAgain()
	if s == s.r.shards[0] {
		s.r.offerOwed()
		s.r.expireForwarded()
	}
}

// drainBurst bounds the work drain does between two full selects, so the
// ticker and the retry timer are served under load too.
const drainBurst = 64

// drain takes completions and requests that are already waiting, a
// completion first each round, with one-channel receives that do not block:
// much cheaper than a select over every channel, which under load costs as
// much as the work it hands out. It reports whether it took anything.
func (s *shard) drain(stopping bool) bool {
	took := false
	for range drainBurst {
		completed := false
		select {
		case c := <-s.done:
			s.took(c)
			took, completed = true, true
		default:
		}
		if stopping || s.inflight >= s.r.cfg.MaxInFlight {
			if !completed {
				return took // requests wait for completions
			}
			continue
		}
		select {
		case q := <-s.in:
			s.cur = requestInHand(&q)
			s.handle(q)
			took = true
		default:
			if !completed {
				return took
			}
		}
	}
	return took
}

// load returns user id's state, reading its high-water mark on first touch.
func (s *shard) load(id uint64) (*user, error) {
	if u, ok := s.users[id]; ok {
		return u, nil
	}
	if iu, ok := s.idle[id]; ok {
		delete(s.idle, id)
		u := &user{id: id, last: iu.last, committed: iu.last, sent: iu.last, acked: iu.last, sess: iu.sess}
		s.users[id] = u
		return u, nil
	}
	last, err := s.r.store.LastSeq(id)
	if err != nil {
		s.r.stats.StorageErrors.Add(1)
		return nil, err
	}
	u := &user{id: id, last: last, committed: last}
	s.users[id] = u
	return u, nil
}

// idleUser is what an online user with nothing outstanding keeps.
type idleUser struct {
	sess Session
	last uint64 // every seq up to it was committed, pushed and acknowledged (or is a gap)
}

// forget drops u's state when nothing needs it, and shrinks it to an
// idleUser when u is online with nothing in flight, unsent or unacked.
func (s *shard) forget(u *user) {
	switch {
	case u.inflight != 0:
	case !u.sess.Valid():
		delete(s.users, u.id)
	case u.committed == u.last && u.sent == u.last && u.acked == u.last && u.pending == 0 && u.stuck == 0 && !u.ackAgain:
		s.idle[u.id] = idleUser{sess: u.sess, last: u.last}
		delete(s.users, u.id)
	}
}

func (s *shard) handle(q request) {
	if h := s.r.panicHook; h != nil {
		h("shard", q.user)
	}
	switch q.kind {
	case reqSignal:
		s.signal(q) // signal.go: no user state, no storage
		return
	case reqHoldRead:
		q.kind = reqReceipt // for q.user's shard, which is not this one
		s.hold(q)
		s.offerHeld()
		return
	}
	u, err := s.load(q.user)
	if err != nil {
		s.r.cfg.Logger.Error("delivery: loading user", "user", q.user, "err", err)
		switch q.kind {
		case reqSend:
			s.r.push(q.sess, Outbound{Kind: OutRefuse, MsgID: q.msgID, Code: protocol.CodeStorage, RetryAfter: 1000, Reason: "storage failed loading the recipient's mailbox"})
		case reqLogin:
			s.r.close(q.sess, protocol.CodeInternal)
		}
		return
	}
	switch q.kind {
	case reqLogin:
		s.login(u, q)
	case reqResume:
		s.resume(u, q)
	case reqLogout:
		if u.sess == q.sess {
			u.sess, u.stuck = Session{}, 0
		}
	case reqSend:
		s.append(u, storage.Entry{Kind: storage.KindMessage, Sender: q.from, MsgID: q.msgID, Retry: q.retry, Value: q.record}, q.sess, nil, q.at)
	case reqFanout:
		s.append(u, storage.Entry{Kind: q.entry, Sender: q.from, MsgID: q.msgID, Retry: q.retry, Value: q.record}, Session{}, q.fan, 0)
	case reqAck:
		// An ACK may pass what this connection was sent, up to what it was
		// told waits (WELCOME.last; the gateway refuses more): the client
		// gives up on the rest, which is deleted, not sent (PROTOCOL.md
		// 8.3). Ignored, it left the window waiting for ACKs of entries
		// the client would drop.
		if u.sess == q.sess && q.seq > u.acked && q.seq <= u.committed {
			s.ack(u, q.seq)
			s.skipTo(u, q.seq)
			s.pump(u)
		}
	case reqReceipt:
		x := protocol.Receipt{MsgID: q.msgID, More: q.more, Read: q.read, By: q.from, Expired: q.expired}
		e := storage.Entry{Kind: storage.KindReceipt, Sender: q.from, MsgID: q.msgID, Value: x.AppendRecord(nil), Settles: q.settles}
		if q.settler != 0 {
			e.Settles = storage.ReceiptKey{} // pending in the settler's store, not here
		}
		s.appendReceipt(u, e, q.settler, q.settles)
		s.r.stats.Receipts.Add(1)
	}
	s.forget(u)
}

func (s *shard) login(u *user, q request) {
	if !s.takeSession(u, q, q.seq) {
		return
	}
	// WELCOME.last is the newest entry waiting: with the high-water mark,
	// a client resumed past every entry (acked, expired, a restore's gap)
	// would wait for seqs that never come. Entries whose commit is under
	// way come after it, as live ones.
	last, err := s.r.store.Newest(u.id, q.seq, u.committed)
	if err != nil {
		s.r.stats.StorageErrors.Add(1)
		s.r.cfg.Logger.Error("delivery: reading the newest entry", "user", u.id, "err", err)
		last = u.committed
	}
	if !s.r.push(u.sess, Outbound{Kind: OutWelcome, Seq: last}) {
		u.sess = Session{}
		return
	}
	if q.seq > 0 {
		s.ack(u, q.seq)
	}
	s.pump(u)
}

// takeSession makes q.sess u's session, replacing (and closing) any other,
// acknowledged through q.seq and pushed everything through sent. A resume
// point beyond what is stored cannot be: that session is closed with
// BAD_ACK, and takeSession reports false.
func (s *shard) takeSession(u *user, q request, sent uint64) bool {
	if u.sess.Valid() && u.sess != q.sess {
		s.r.stats.Replaced.Add(1)
		s.r.close(u.sess, protocol.CodeReplaced)
	}
	if q.seq > u.committed {
		// Only committed entries can have reached a client.
		u.sess = Session{}
		s.r.close(q.sess, protocol.CodeBadAck)
		return false
	}
	u.sess, u.stuck, u.pending = q.sess, 0, 0
	u.acked, u.sent = q.seq, sent
	return true
}

// resume makes q.sess, a connection another process handed over, u's
// session where that process left it: everything through q.more was
// written to it (so it is not pushed again) and it acked through q.seq. It
// gets no WELCOME: the client had one.
func (s *shard) resume(u *user, q request) {
	if !s.takeSession(u, q, min(max(q.more, q.seq), u.committed)) {
		return
	}
	if q.seq > 0 {
		s.ack(u, q.seq)
	}
	s.pump(u)
}

// append hands e, one entry of u's mailbox, to storage with the next seq.
// at is when Send took a 1:1 message (zero for anything else).
func (s *shard) append(u *user, e storage.Entry, sender Session, fan *fanout, at time.Duration) {
	u.last++
	u.inflight++
	s.inflight++
	e.Recipient, e.Seq = u.id, u.last
	c := completion{kind: doneAppend, user: u.id, seq: u.last, sess: sender, fan: fan, msgID: e.MsgID, record: e.Value, at: at, gen: s.gen}
	s.r.store.Append(e, func(err error) {
		c.err = err
		s.done <- c
	})
}

// appendReceipt appends receipt entry e; when settler is not 0, that node
// settles its pending receipt settles once e is stored.
func (s *shard) appendReceipt(u *user, e storage.Entry, settler uint32, settles storage.ReceiptKey) {
	u.last++
	u.inflight++
	s.inflight++
	e.Recipient, e.Seq = u.id, u.last
	c := completion{kind: doneAppend, user: u.id, seq: u.last, msgID: e.MsgID, record: e.Value, settler: settler, settles: settles, gen: s.gen}
	s.r.store.Append(e, func(err error) {
		c.err = err
		s.done <- c
	})
}

// ack hands a cumulative acknowledgement of u's mailbox to storage.
func (s *shard) ack(u *user, seq uint64) {
	u.acked, u.stuck = seq, 0
	if seq >= u.sent {
		u.pending = 0 // everything pushed has arrived
	}
	u.inflight++
	s.inflight++
	s.r.stats.Acks.Add(1)
	id, gen := u.id, s.gen
	s.r.store.Ack(id, seq, func(res storage.AckResult, err error) {
		s.done <- completion{kind: doneAck, user: id, ack: res, err: err, gen: gen}
	})
}

// took handles completion c. One of an earlier generation was started
// before a crash whose recovery gave up waiting for it: it is not counted
// in flight any more, and its user's state was dropped (the user may have
// been loaded again since, from storage), so its sender is answered and
// nothing else is touched.
func (s *shard) took(c completion) {
	s.cur = completionInHand(&c)
	if c.gen != s.gen {
		s.answer(c)
		return
	}
	s.inflight--
	s.complete(c)
}

func (s *shard) complete(c completion) {
	u := s.users[c.user] // present: inflight > 0 keeps it
	if u == nil {
		s.answer(c) // defensive: a count a panic left wrong
		return
	}
	u.inflight--
	switch c.kind {
	case doneAppend:
		s.appended(u, c)
	case doneAck:
		if c.err != nil {
			s.r.stats.StorageErrors.Add(1)
			s.r.cfg.Logger.Error("delivery: ack failed; offering it again within a second", "user", u.id, "err", c.err)
			u.ackAgain = true
		} else {
			s.receipts(c.ack.Pending)
		}
	}
	s.forget(u)
}

func (s *shard) appended(u *user, c completion) {
	// Completions arrive in seq order, except a refusal the store makes
	// before the append reaches its committer (ErrValueTooLarge, ErrClosed),
	// which can overtake earlier appends still in flight. Such a refusal
	// must not mark those earlier seqs committed: pump would skip them as
	// gaps, and the client's next ACK would delete them unseen.
	if c.err == nil || c.seq == u.committed+1 {
		u.committed = max(u.committed, c.seq)
	}
	var dup *storage.DuplicateError
	switch {
	case c.fan != nil:
		c.fan.done(c.err)
	case c.err == nil:
		if c.settler != 0 {
			s.r.settleRemote(c.settler, u.id, c.settles)
		}
		if c.sess.Valid() {
			s.r.stats.Accepted.Add(1)
			s.r.timeAccept(c)
			s.r.push(c.sess, Outbound{Kind: OutAccept, MsgID: c.msgID})
		}
	case errors.As(c.err, &dup):
		s.r.stats.Duplicates.Add(1)
		if c.sess.Valid() {
			s.r.timeAccept(c)
			s.r.push(c.sess, Outbound{Kind: OutAccept, MsgID: c.msgID})
		}
	case !c.sess.Valid():
		// A receipt entry the store refused (the sender's mailbox is
		// full, or storage is recovering). A delivered receipt is still
		// pending in storage: the next rescan offers it again.
		s.r.stats.ReceiptsRefused.Add(1)
		s.r.rescan.Store(true)
		if c.settler != 0 {
			s.r.askRescan(c.settler) // pending there, not here
		}
		if !capacity(c.err) {
			s.r.stats.StorageErrors.Add(1)
		}
	default:
		s.r.stats.Refused.Add(1)
		code, retry := s.r.refusal(c.err)
		if !capacity(c.err) {
			s.r.stats.StorageErrors.Add(1)
		}
		s.r.push(c.sess, Outbound{Kind: OutRefuse, MsgID: c.msgID, Code: code, RetryAfter: retry, Reason: refusalReason(c.err)})
	}
	if !u.sess.Valid() {
		return
	}
	if u.sent+1 != c.seq || s.windowFull(u) {
		s.pump(u)
		return
	}
	if c.err != nil {
		s.skipTo(u, c.seq) // nothing stored under this seq
		return
	}
	if s.push(u, c.seq, c.record) {
		s.r.stats.DeliveredLive.Add(1)
		s.markStuck(u)
	}
}

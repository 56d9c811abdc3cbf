package delivery

import (
	"errors"
	"iter"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"switchboard/protocol"
	"switchboard/storage"
)

// Groups are served by their own workers, by hash of the group id: a group
// operation waits for its membership change to be durable, and that wait
// must not hold up the user shards. A group worker owns its groups'
// membership cache; it fans a group's messages and events out to the
// members' shards, which assign each member's seq as for a 1:1 message.

// groupCacheMax bounds each group worker's membership cache; at the bound
// the cache is emptied and refills from storage. 4096 groups of a few dozen
// members is a few MB.
const groupCacheMax = 4096

// groupIDBase and groupIDSpan: group ids are derived from the creator and
// the request's msg id, in [2^28, 2^35): five varint bytes, rarely colliding.
const (
	groupIDBase = 1 << 28
	groupIDSpan = 1<<35 - 1<<28
)

type groupReq struct {
	send   bool    // a message (record) to the group; else an operation
	retry  bool    // send: the sender may have sent it before (storage.Entry.Retry)
	sess   Session // the requester, told ACCEPT or REFUSE
	from   uint64  // sender or actor
	msgID  uint64
	group  uint64
	record []byte // send: the DELIVER record, with Group set
	op     protocol.GroupOp
	list   []uint64            // op: the members it names
	signal bool                // an ephemeral signal (kind in msgID), fanned out to online members
	redo   *storage.GroupEvent // a pending event to announce again (no requester)
}

// groupWorker serves the groups that hash to it. Its cache is owned by its
// run goroutine.
type groupWorker struct {
	r *Router
	// in carries requests from the gateway; bounded by Config.QueueLen;
	// senders never block.
	in    chan groupReq
	stop  chan struct{}
	cache map[uint64]map[uint64]storage.Role
	cur   groupReq // the request being handled: refused if handling it panics (supervise.go)
}

func newGroupWorker(r *Router) *groupWorker {
	return &groupWorker{r: r, in: make(chan groupReq, r.cfg.QueueLen), stop: make(chan struct{}), cache: map[uint64]map[uint64]storage.Role{}}
}

func (w *groupWorker) run() {
	for {
		select {
		case q := <-w.in:
			w.cur = q
			if h := w.r.panicHook; h != nil {
				h("group", q.from)
			}
			w.handle(q)
			w.cur = groupReq{}
		case <-w.stop:
			if w.r.finishing.Load() {
				w.finish()
			}
			return
		}
	}
}

// halt is what ends a wait for room in a shard's queue: the worker's
// stop, or nothing while it finishes (the shards stop only after it).
func (w *groupWorker) halt() <-chan struct{} {
	if w.r.finishing.Load() {
		return nil
	}
	return w.stop
}

// finish handles every request already queued (Router.Finish).
func (w *groupWorker) finish() {
	for {
		select {
		case q := <-w.in:
			w.cur = q
			w.handle(q)
			w.cur = groupReq{}
		default:
			return
		}
	}
}

// members returns group's members from the cache or storage.
func (w *groupWorker) members(group uint64) (map[uint64]storage.Role, error) {
	if m, ok := w.cache[group]; ok {
		return m, nil
	}
	list, err := w.r.store.Members(group)
	if err != nil {
		return nil, err
	}
	m := make(map[uint64]storage.Role, len(list))
	for _, x := range list {
		m[x.ID] = x.Role
	}
	if len(w.cache) >= groupCacheMax {
		clear(w.cache)
	}
	w.cache[group] = m
	return m, nil
}

// groupRefusals names the check behind each code a group worker refuses
// with, for Outbound.Reason.
var groupRefusals = map[protocol.Code]string{
	protocol.CodeStorage:      "storage failed on the group",
	protocol.CodeBadRecipient: "no such group",
	protocol.CodeNotMember:    "sender not a member of the group",
	protocol.CodeForbidden:    "not allowed: add, remove, promote and demote need an admin, and nobody removes or demotes the owner",
	protocol.CodeGroupFull:    "group at its member limit",
	protocol.CodeRetryLater:   "group id taken by another creator: retry with a new msg id",
}

func (w *groupWorker) refuse(q groupReq, code protocol.Code, retry uint32) {
	if q.sess.Valid() {
		w.r.push(q.sess, Outbound{Kind: OutRefuse, MsgID: q.msgID, Code: code, RetryAfter: retry, Reason: groupRefusals[code]})
	}
}

func (w *groupWorker) handle(q groupReq) {
	switch {
	case q.redo != nil:
		w.announce(Session{}, *q.redo, true)
		return
	case !q.send && !q.signal:
		w.change(q)
		return
	}
	members, err := w.members(q.group)
	switch {
	case errors.Is(err, storage.ErrNoGroup):
		if !q.signal {
			w.refuse(q, protocol.CodeBadRecipient, 0)
		}
		return
	case err != nil:
		w.r.stats.StorageErrors.Add(1)
		w.refuse(q, protocol.CodeStorage, 1000)
		return
	}
	_, isMember := members[q.from]
	switch {
	case q.signal:
		w.signalGroup(q, members) // signal.go
		return
	case !isMember:
		w.refuse(q, protocol.CodeNotMember, 0)
	default:
		f := &fanout{sess: q.sess, msgID: q.msgID, r: w.r}
		e := storage.Entry{Kind: storage.KindGroupMessage, Sender: q.from, MsgID: q.msgID, Retry: q.retry, Value: q.record}
		w.fanOut(f, e, q.from, maps.Keys(members))
	}
}

// change applies a GROUP request as one durable change (storage.ChangeGroup
// holds the rules), then announces it. A retry of a change already made is
// accepted again; if its announcement was cut short, it is finished first.
func (w *groupWorker) change(q groupReq) {
	ev, dup, err := w.r.store.ChangeGroup(storage.GroupChange{Group: q.group, Actor: q.from, MsgID: q.msgID, Op: storage.GroupOp(q.op), Members: q.list})
	delete(w.cache, q.group) // reload what storage committed
	switch {
	case err != nil:
		w.refuseStore(q, err)
	case ev == nil: // nothing changed, or announced already
		if q.sess.Valid() {
			w.r.stats.Accepted.Add(1)
			w.r.push(q.sess, Outbound{Kind: OutAccept, MsgID: q.msgID, Ref: q.group})
		}
	default:
		w.announce(q.sess, *ev, dup)
	}
}

// announce stores ev's GROUP_EVENT in the mailbox of everyone in its
// audience, settles the pending event once every copy is durable, and then
// tells sess (if any) ACCEPT, with the group as Ref. again says the event
// may have been announced in part before, so copies are deduplicated.
func (w *groupWorker) announce(sess Session, ev storage.GroupEvent, again bool) {
	rec := protocol.GroupEvent{Group: ev.Group, Actor: ev.Actor, Op: protocol.GroupOp(ev.Op), Time: protocol.Stamp(time.UnixMilli(ev.Time)), Members: ev.Members}
	f := &fanout{sess: sess, msgID: ev.MsgID, ref: ev.Group, r: w.r, settle: func() {
		w.r.store.SettleGroupEvent(ev.Actor, ev.MsgID, nil)
	}}
	e := storage.Entry{Kind: storage.KindGroupEvent, Sender: ev.Actor, MsgID: ev.MsgID, Retry: again, Value: rec.AppendRecord(nil)}
	w.fanOut(f, e, 0, slices.Values(ev.Audience))
	if again {
		w.r.stats.GroupEventsRedone.Add(1)
	}
}

func (w *groupWorker) refuseStore(q groupReq, err error) {
	switch {
	case errors.Is(err, storage.ErrGroupFull):
		w.refuse(q, protocol.CodeGroupFull, 0)
	case errors.Is(err, storage.ErrNoGroup):
		w.refuse(q, protocol.CodeBadRecipient, 0)
	case errors.Is(err, storage.ErrNotMember):
		w.refuse(q, protocol.CodeNotMember, 0)
	case errors.Is(err, storage.ErrForbidden):
		w.refuse(q, protocol.CodeForbidden, 0)
	case errors.Is(err, storage.ErrGroupExists):
		w.refuse(q, protocol.CodeRetryLater, 0) // another creator's id: retry with a new msg id
	default:
		w.r.stats.StorageErrors.Add(1)
		code, retry := w.r.refusal(err)
		w.refuse(q, code, retry)
	}
}

// fanOut appends e to the mailbox of every member of to but skip (0:
// nobody), and has f tell its requester ACCEPT once all are durable, or
// REFUSE if any failed (a retry with the same msg id then stores only the
// missing copies: storage deduplicates per recipient). Members homed on
// other nodes of a cluster get their copies through one payload per node
// (peergroups.go).
func (w *groupWorker) fanOut(f *fanout, e storage.Entry, skip uint64, to iter.Seq[uint64]) {
	f.pending.Store(1) // held until every request is handed out
	var remote map[uint32][]uint64
	for m := range to {
		if m == skip {
			continue
		}
		if node := w.r.remote(m); node != 0 {
			if remote == nil {
				remote = map[uint32][]uint64{}
			}
			remote[node] = append(remote[node], m)
			continue
		}
		f.pending.Add(1)
		// Wait for room rather than fail one copy of many: a refusal after a
		// partial fan-out makes the sender retry all of it, which under load
		// turns into a retry storm. Blocking here is safe: shards never wait
		// on group workers, and a waiting group worker lets its own queue
		// fill, so the gateway refuses new group sends (RETRY_LATER) at the
		// edge instead.
		_, o := w.r.own.owner(m)
		if !o.offerWait(request{kind: reqFanout, user: m, from: e.Sender, msgID: e.MsgID, retry: e.Retry, record: e.Value, fan: f, entry: e.Kind}, w.halt()) {
			f.done(errBusy)
		}
	}
	for node, members := range remote {
		f.pending.Add(1)
		w.r.fanRemote(node, f, e, members)
	}
	f.done(nil)
}

var errBusy = errors.New("delivery: a member's shard is busy")

// fanout counts the member copies of one group message or event still to
// be made durable. Shared by the member shards that complete them.
type fanout struct {
	sess    Session
	msgID   uint64
	ref     uint64
	r       *Router
	settle  func()          // called once every copy is durable, before the ACCEPT; may be nil
	then    func(err error) // if set, told the outcome (nil: all durable) instead of sess
	pending atomic.Int32
	failed  atomic.Pointer[error]
}

// done records one copy's outcome; the last one answers the requester.
func (f *fanout) done(err error) {
	var dup *storage.DuplicateError
	if err != nil && !errors.As(err, &dup) {
		f.failed.CompareAndSwap(nil, &err)
	}
	if f.pending.Add(-1) != 0 {
		return
	}
	p := f.failed.Load()
	if p == nil && f.settle != nil {
		f.settle()
	}
	if f.then != nil {
		var err error
		if p != nil {
			err = *p
		}
		f.then(err)
		return
	}
	if !f.sess.Valid() {
		return
	}
	if p != nil {
		code, retry := f.r.refusal(*p)
		f.r.stats.Refused.Add(1)
		f.r.push(f.sess, Outbound{Kind: OutRefuse, MsgID: f.msgID, Code: code, RetryAfter: retry, Reason: refusalReason(*p)})
		return
	}
	f.r.stats.Accepted.Add(1)
	f.r.push(f.sess, Outbound{Kind: OutAccept, MsgID: f.msgID, Ref: f.ref})
}

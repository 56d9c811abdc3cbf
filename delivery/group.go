package delivery

import (
	"errors"
	"sync/atomic"

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
	send   bool   // a message (record) to the group; else an operation
	retry  bool   // send: the sender may have sent it before (storage.Entry.Retry)
	conn   Conn   // the requester, told ACCEPT or REFUSE
	from   uint64 // sender or actor
	msgID  uint64
	group  uint64
	record []byte // send: the DELIVER record, with Group set
	op     protocol.GroupOp
	list   []uint64 // op: the members it names
	signal bool     // an ephemeral signal (kind in msgID), fanned out to online members
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
	protocol.CodeForbidden:    "group operation needs an admin",
	protocol.CodeGroupFull:    "group at its member limit",
	protocol.CodeRetryLater:   "group id taken by another creator: retry with a new msg id",
}

func (w *groupWorker) refuse(q groupReq, code protocol.Code, retry uint32) {
	if q.conn != nil {
		q.conn.Push(Outbound{Kind: OutRefuse, MsgID: q.msgID, Code: code, RetryAfter: retry, Reason: groupRefusals[code]})
	}
}

func (w *groupWorker) handle(q groupReq) {
	if q.op == protocol.GroupCreate {
		w.create(q)
		return
	}
	members, err := w.members(q.group)
	if err != nil {
		w.r.stats.StorageErrors.Add(1)
		w.refuse(q, protocol.CodeStorage, 1000)
		return
	}
	if len(members) == 0 {
		if !q.signal {
			w.refuse(q, protocol.CodeBadRecipient, 0)
		}
		return
	}
	role, isMember := members[q.from]
	switch {
	case q.signal:
		if isMember {
			for m := range members {
				if m != q.from && !w.r.submit(m, request{kind: reqSignal, user: m, from: q.from, msgID: q.msgID, more: q.group}) {
					w.r.stats.SignalsDropped.Add(1)
				}
			}
		}
		return
	case !isMember:
		w.refuse(q, protocol.CodeNotMember, 0)
		return
	case q.send:
		w.fanOut(q, members, storage.KindGroupMessage, q.record, 0)
		return
	}
	admin := role >= storage.RoleAdmin
	var changed []uint64
	switch q.op {
	case protocol.GroupLeave:
		err = w.r.store.RemoveMember(q.group, q.from)
		changed = []uint64{q.from}
	case protocol.GroupAdd, protocol.GroupPromote, protocol.GroupDemote:
		if !admin {
			w.refuse(q, protocol.CodeForbidden, 0)
			return
		}
		newRole := storage.RoleMember
		if q.op == protocol.GroupPromote {
			newRole = storage.RoleAdmin
		}
		for _, m := range q.list {
			if q.op != protocol.GroupAdd {
				if _, ok := members[m]; !ok {
					continue
				}
			}
			if members[m] == storage.RoleOwner && q.op != protocol.GroupAdd {
				continue // the owner stays the owner
			}
			if err = w.r.store.AddMember(q.group, m, newRole); err != nil {
				break
			}
			changed = append(changed, m)
		}
	case protocol.GroupRemove:
		if !admin {
			w.refuse(q, protocol.CodeForbidden, 0)
			return
		}
		for _, m := range q.list {
			if _, ok := members[m]; !ok || members[m] == storage.RoleOwner {
				continue
			}
			if err = w.r.store.RemoveMember(q.group, m); err != nil {
				break
			}
			changed = append(changed, m)
		}
	}
	delete(w.cache, q.group) // reload what storage committed
	if err != nil && !errors.Is(err, storage.ErrNotMember) {
		w.refuseStore(q, err)
		return
	}
	// Everyone who was or now is a member hears of the change.
	audience, _ := w.members(q.group)
	for _, m := range changed {
		if _, ok := audience[m]; !ok {
			audience = cloneWith(audience, m)
		}
	}
	w.event(q, audience, changed)
}

func cloneWith(m map[uint64]storage.Role, id uint64) map[uint64]storage.Role {
	c := make(map[uint64]storage.Role, len(m)+1)
	for k, v := range m {
		c[k] = v
	}
	c[id] = storage.RoleMember
	return c
}

func (w *groupWorker) refuseStore(q groupReq, err error) {
	switch {
	case errors.Is(err, storage.ErrGroupFull):
		w.refuse(q, protocol.CodeGroupFull, 0)
	case errors.Is(err, storage.ErrNoGroup):
		w.refuse(q, protocol.CodeBadRecipient, 0)
	default:
		w.r.stats.StorageErrors.Add(1)
		w.refuse(q, protocol.CodeStorage, 1000)
	}
}

// create makes a group whose id is derived from the creator and the
// request's msg id, so a retried create finds the group it made.
func (w *groupWorker) create(q groupReq) {
	id := q.group
	err := w.r.store.CreateGroup(id, q.from)
	if errors.Is(err, storage.ErrGroupExists) {
		if role, rerr := w.r.store.Role(id, q.from); rerr == nil && role == storage.RoleOwner {
			if q.conn != nil {
				q.conn.Push(Outbound{Kind: OutAccept, MsgID: q.msgID, Ref: id}) // a retry
			}
			return
		}
		w.refuse(q, protocol.CodeRetryLater, 0) // another creator's id: retry with a new msg id
		return
	}
	changed := []uint64{q.from}
	for _, m := range q.list {
		if err != nil {
			break
		}
		if m != q.from {
			err = w.r.store.AddMember(id, m, storage.RoleMember)
			changed = append(changed, m)
		}
	}
	delete(w.cache, id)
	if err != nil {
		w.refuseStore(q, err)
		return
	}
	members, err := w.members(id)
	if err != nil {
		w.refuseStore(q, err)
		return
	}
	q.group = id
	w.event(q, members, changed)
}

// event stores a GROUP_EVENT in every audience member's mailbox, then
// accepts the request.
func (w *groupWorker) event(q groupReq, audience map[uint64]storage.Role, changed []uint64) {
	ev := protocol.GroupEvent{Group: q.group, Actor: q.from, Op: q.op, Time: protocol.Stamp(w.r.cfg.Now()), Members: changed}
	q.from = 0 // the actor hears of it too
	w.fanOut(q, audience, storage.KindGroupEvent, ev.AppendRecord(nil), q.group)
}

// fanOut appends record to the mailbox of every member but q.from, and
// tells q.conn ACCEPT once all are durable, or REFUSE if any failed (a
// retry with the same msg id then stores only the missing copies: storage
// deduplicates per recipient). ref is the ACCEPT's Ref.
func (w *groupWorker) fanOut(q groupReq, members map[uint64]storage.Role, kind storage.Kind, record []byte, ref uint64) {
	f := &fanout{conn: q.conn, msgID: q.msgID, ref: ref, stats: &w.r.stats}
	f.pending.Store(1) // held until every request is handed out
	for m := range members {
		if m == q.from {
			continue
		}
		f.pending.Add(1)
		// Wait for room rather than fail one copy of many: a refusal after a
		// partial fan-out makes the sender retry all of it, which under load
		// turns into a retry storm. Blocking here is safe: shards never wait
		// on group workers, and a waiting group worker lets its own queue
		// fill, so the gateway refuses new group sends (RETRY_LATER) at the
		// edge instead.
		select {
		case w.r.shardFor(m).in <- request{kind: reqFanout, user: m, from: q.from, msgID: q.msgID, retry: q.retry, record: record, fan: f, entry: kind}:
		case <-w.stop:
			f.done(errBusy)
		}
	}
	f.done(nil)
}

var errBusy = errors.New("delivery: a member's shard is busy")

// fanout counts the member copies of one group message or event still to
// be made durable. Shared by the member shards that complete them.
type fanout struct {
	conn    Conn
	msgID   uint64
	ref     uint64
	stats   *Stats
	pending atomic.Int32
	failed  atomic.Pointer[error]
}

// done records one copy's outcome; the last one answers the requester.
func (f *fanout) done(err error) {
	var dup *storage.DuplicateError
	if err != nil && !errors.As(err, &dup) {
		f.failed.CompareAndSwap(nil, &err)
	}
	if f.pending.Add(-1) != 0 || f.conn == nil {
		return
	}
	if p := f.failed.Load(); p != nil {
		code, retry := refusal(*p)
		if errors.Is(*p, errBusy) {
			code, retry = protocol.CodeRetryLater, 100
		}
		f.stats.Refused.Add(1)
		f.conn.Push(Outbound{Kind: OutRefuse, MsgID: f.msgID, Code: code, RetryAfter: retry, Reason: refusalReason(*p)})
		return
	}
	f.stats.Accepted.Add(1)
	f.conn.Push(Outbound{Kind: OutAccept, MsgID: f.msgID, Ref: f.ref})
}

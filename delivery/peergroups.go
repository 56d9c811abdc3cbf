package delivery

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"switchboard/protocol"
	"switchboard/storage"
)

// Groups across the nodes of a cluster. A group's membership lives only on
// its home node (Peers.Home of the group id), whose group worker alone
// checks, changes and fans out the group, as on one host:
//
//   - A group request (a message, a change or a signal) from a session on
//     another node is forwarded to the group's home as one peerGroup
//     payload, tracked and timed out like a forwarded 1:1 SEND; the ACCEPT
//     or REFUSE comes back as a peerAnswer.
//   - The home fans a message or an event out to its members by node: one
//     peerFanout payload per other node homing members, naming them all,
//     which that node appends to each member's mailbox and answers with
//     one peerFanned once every copy is durable (or one failed). The
//     requester's ACCEPT waits for every node's answer, so nothing is
//     accepted that is not durable in every member's home store.
//   - A node that is down, or does not answer within the peer timeout,
//     fails the fan-out with RETRY_LATER. The resend (flag B) stores only
//     the copies still missing: storage deduplicates per recipient. A
//     group event's copies are finished by its pending event, as on one
//     host.
//   - Signals go from the home to the other nodes' members in one payload
//     per node (remoteOwner.offer), as 1:1 signals do.

// Payload kinds of groups across nodes (peers.go has the others).
const (
	peerGroup  byte = 7 // instance, sess, from, msgID, group, flags, op, n, members…, record
	peerFanout byte = 8 // instance, fan, entry kind, sender, msgID, retry, n, members…, record
	peerFanned byte = 9 // fan, code (0: all durable), retryAfter, reason
)

// peerGroup flags.
const (
	groupFlagSend   = 1 << iota // a message (record); else an operation
	groupFlagRetry              // the sender may have sent it before
	groupFlagSignal             // an ephemeral signal (kind in msgID)
)

// Refusals of a fan-out across nodes, as REFUSE reasons.
const (
	reasonMemberHomeDown      = "a member's home node is unreachable"
	reasonMemberHomeTimeout   = "a member's home node did not answer"
	reasonMemberHomeRestarted = "a member's home node restarted"
	reasonMemberHomeLeaving   = "a member's home node is handing over to a new process"
)

// peerRefusal is a member copy that failed on another node, or whose node
// failed: what the requester is told.
type peerRefusal struct {
	code       protocol.Code
	retryAfter uint32
	reason     string
}

func (e *peerRefusal) Error() string {
	return fmt.Sprintf("delivery: refused by a member's home node: %s (code %d)", e.reason, e.code)
}

func memberHomeRefusal(reason string) error {
	return &peerRefusal{code: protocol.CodeRetryLater, retryAfter: peerRetry(reason), reason: reason}
}

// remoteFan is a fan-out's part on another node, waiting for its peerFanned.
type remoteFan struct {
	f        *fanout
	node     uint32
	instance uint64
	deadline time.Time
}

// groupRemote forwards group request q to node home, which homes its
// group. A signal is sent and forgotten; a message or a change is tracked
// like a forwarded 1:1 SEND. It returns false only when too many forwarded
// requests wait for answers.
func (r *Router) groupRemote(home uint32, q groupReq) bool {
	payload := func(inst uint64) []byte { return groupPayload(q, inst) }
	if q.signal {
		if !r.peer.peers.Send(home, payload(r.peer.peers.Instance(home))) {
			r.stats.SignalsDropped.Add(1)
		}
		return true
	}
	return r.forwardOrRefuse(home, q.sess, q.msgID, payload)
}

func groupPayload(q groupReq, inst uint64) []byte {
	var flags byte
	if q.send {
		flags |= groupFlagSend
	}
	if q.retry {
		flags |= groupFlagRetry
	}
	if q.signal {
		flags |= groupFlagSignal
	}
	b := make([]byte, 0, 2+(7+len(q.list))*binary.MaxVarintLen64+len(q.record))
	b = append(b, peerGroup)
	b = binary.AppendUvarint(b, inst)
	b = binary.AppendUvarint(b, q.sess.ID)
	b = binary.AppendUvarint(b, q.from)
	b = binary.AppendUvarint(b, q.msgID)
	b = binary.AppendUvarint(b, q.group)
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(q.op))
	b = appendIDs(b, q.list)
	return append(b, q.record...)
}

// appendIDs appends a count, then the ids.
func appendIDs(b []byte, ids []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, id)
	}
	return b
}

// ids reads what appendIDs wrote: at most one per byte left, so a payload
// never makes it allocate more than eight times its length.
func (f *fields) ids() []uint64 {
	n := f.uvarint()
	if f.err != nil || n > uint64(len(f.b)) {
		f.err = errPeerPayload
		return nil
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = f.uvarint()
	}
	return ids
}

// fromPeerGroup takes a group request forwarded by node from for a group
// homed here, to this node's group worker.
func (r *Router) fromPeerGroup(from uint32, f *fields) error {
	inst, sess, user, msgID, group, flags := f.uvarint(), f.uvarint(), f.uvarint(), f.uvarint(), f.uvarint(), f.byte()
	op := protocol.GroupOp(f.uvarint())
	list := f.ids()
	if f.err != nil || user == 0 || (flags&groupFlagSignal == 0 && sess == 0) {
		return fmt.Errorf("%w: group request", errPeerPayload)
	}
	q := groupReq{
		send: flags&groupFlagSend != 0, retry: flags&groupFlagRetry != 0, signal: flags&groupFlagSignal != 0,
		from: user, msgID: msgID, group: group, op: op, list: list,
	}
	if sess != 0 {
		q.sess = Session{Node: from, ID: sess}
	}
	if len(f.b) > 0 {
		q.record = append([]byte(nil), f.b...) // stored as is, after the payload is gone
	}
	if !q.signal && inst != r.peer.peers.Instance(r.peer.peers.Self()) {
		// Meant for this node's previous process: see peerSend.
		r.push(q.sess, Outbound{Kind: OutRefuse, MsgID: msgID, Code: protocol.CodeRetryLater, RetryAfter: peerRetry(reasonHomeRestarted), Reason: reasonHomeRestarted})
		return nil
	}
	if r.submitGroup(q) {
		return nil
	}
	if q.signal {
		r.stats.SignalsDropped.Add(1)
		return nil
	}
	r.push(q.sess, Outbound{Kind: OutRefuse, MsgID: msgID, Code: protocol.CodeRetryLater, RetryAfter: r.BusyRetryAfter(), Reason: "busy"})
	return nil
}

// fanRemote hands node the copies of e for members, all homed there, as
// one payload; f counts it as one pending copy, done when node answers,
// fails, or times out.
func (r *Router) fanRemote(node uint32, f *fanout, e storage.Entry, members []uint64) {
	p := &r.peer
	inst := p.peers.Instance(node)
	p.mu.Lock()
	if len(p.fans) >= MaxForwarded {
		p.mu.Unlock()
		f.done(errBusy)
		return
	}
	// Copies still in the hands of an earlier process of node are lost
	// with it: fail them, and this one too, so that the senders send again
	// in order (as forward does for one session).
	var lost []*fanout
	if rs := p.fanRoutes[node]; rs.n > 0 && rs.instance != inst {
		lost = p.takeFans(func(rf remoteFan) bool { return rf.node == node && rf.instance != inst })
	}
	var id uint64
	if len(lost) == 0 {
		p.nextFan++
		id = p.nextFan
		p.fans[id] = remoteFan{f: f, node: node, instance: inst, deadline: r.cfg.Now().Add(p.timeout)}
		rs := p.fanRoutes[node]
		p.fanRoutes[node] = routeState{instance: inst, n: rs.n + 1}
	}
	p.mu.Unlock()
	if len(lost) > 0 {
		for _, lf := range lost {
			lf.done(memberHomeRefusal(reasonMemberHomeRestarted))
		}
		f.done(memberHomeRefusal(reasonMemberHomeRestarted))
		return
	}
	b := make([]byte, 0, 2+(6+len(members))*binary.MaxVarintLen64+len(e.Value))
	b = append(b, peerFanout)
	b = binary.AppendUvarint(b, inst)
	b = binary.AppendUvarint(b, id)
	b = append(b, byte(e.Kind))
	b = binary.AppendUvarint(b, e.Sender)
	b = binary.AppendUvarint(b, e.MsgID)
	b = append(b, boolByte(e.Retry))
	b = appendIDs(b, members)
	b = append(b, e.Value...)
	if p.peers.Send(node, b) {
		r.stats.FanoutsForwarded.Add(1)
		return
	}
	if rf, ok := r.takeFan(id); ok {
		r.stats.HomeDown.Add(1)
		reason := reasonMemberHomeDown
		if p.peers.Leaving(node) {
			reason = reasonMemberHomeLeaving
		}
		rf.f.done(memberHomeRefusal(reason))
	}
}

// dropFan forgets pending fan-out part id. p.mu held.
func (p *peering) dropFan(id uint64) {
	rf, ok := p.fans[id]
	if !ok {
		return
	}
	delete(p.fans, id)
	if rs := p.fanRoutes[rf.node]; rs.n > 1 {
		p.fanRoutes[rf.node] = routeState{instance: rs.instance, n: rs.n - 1}
	} else {
		delete(p.fanRoutes, rf.node)
	}
}

// takeFans removes the pending fan-out parts that match and returns their
// fan-outs in the order the parts were made: a sender's group requests
// are fanned out in msg_id order, so they are failed in it. p.mu held.
func (p *peering) takeFans(match func(remoteFan) bool) []*fanout {
	var ids []uint64
	for id, rf := range p.fans {
		if match(rf) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	fans := make([]*fanout, len(ids))
	for i, id := range ids {
		fans[i] = p.fans[id].f
		p.dropFan(id)
	}
	return fans
}

// takeFan removes and returns pending fan-out part id, if it is pending.
func (r *Router) takeFan(id uint64) (remoteFan, bool) {
	r.peer.mu.Lock()
	defer r.peer.mu.Unlock()
	rf, ok := r.peer.fans[id]
	if ok {
		r.peer.dropFan(id)
	}
	return rf, ok
}

// fromPeerFanout stores the copies a group's home node hands this node, one
// per member homed here, and answers it with one peerFanned once all are
// durable or one failed.
func (r *Router) fromPeerFanout(from uint32, f *fields) error {
	inst, id, kind, sender, msgID, retry := f.uvarint(), f.uvarint(), storage.Kind(f.byte()), f.uvarint(), f.uvarint(), f.byte() == 1
	members := f.ids()
	if f.err != nil || id == 0 || (kind != storage.KindGroupMessage && kind != storage.KindGroupEvent) {
		return fmt.Errorf("%w: fan-out", errPeerPayload)
	}
	if inst != r.peer.peers.Instance(r.peer.peers.Self()) {
		r.fanned(from, id, memberHomeRefusal(reasonMemberHomeRestarted))
		return nil
	}
	record := append([]byte(nil), f.b...)
	fan := &fanout{r: r, then: func(err error) { r.fanned(from, id, err) }}
	fan.pending.Store(1)
	for _, m := range members {
		fan.pending.Add(1)
		if r.remote(m) != 0 {
			fan.done(fmt.Errorf("%w: member %d is not homed here", errPeerPayload, m))
			continue
		}
		_, o := r.own.owner(m)
		if !o.offer(request{kind: reqFanout, user: m, from: sender, msgID: msgID, retry: retry, record: record, fan: fan, entry: kind}) {
			fan.done(errBusy)
		}
	}
	fan.done(nil)
	return nil
}

// fanned answers node's fan-out part id: err nil when every copy is
// durable, else what its requester is to be told.
func (r *Router) fanned(node uint32, id uint64, err error) {
	var code protocol.Code
	var retryAfter uint32
	var reason string
	if err != nil {
		code, retryAfter = r.refusal(err)
		reason = refusalReason(err)
	}
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(reason))
	b = append(b, peerFanned)
	b = binary.AppendUvarint(b, id)
	b = binary.AppendUvarint(b, uint64(code))
	b = binary.AppendUvarint(b, uint64(retryAfter))
	b = append(b, reason...)
	// Not sent: the group's home is down; its fan-out times out there, or
	// died with it and is finished by its pending event or the resend.
	r.peer.peers.Send(node, b)
}

// fromPeerFanned completes a fan-out part this node handed to node from.
func (r *Router) fromPeerFanned(from uint32, f *fields) error {
	id, code, retryAfter := f.uvarint(), protocol.Code(f.uvarint()), uint32(f.uvarint())
	reason := string(f.b)
	if f.err != nil {
		return fmt.Errorf("%w: fanned", errPeerPayload)
	}
	p := &r.peer
	p.mu.Lock()
	rf, ok := p.fans[id]
	if !ok {
		p.mu.Unlock()
		return nil // timed out already: its requester was told to retry
	}
	p.dropFan(id)
	var lost []*fanout
	if code != 0 && reason == reasonMemberHomeRestarted {
		// The node's new process refused a part meant for the one before:
		// every other part that went to that process is lost with it.
		// Fail them first, so that their senders send again in msg_id
		// order rather than this one before them (as a 1:1 answer does).
		lost = p.takeFans(func(o remoteFan) bool { return o.node == from && o.instance == rf.instance })
	}
	p.mu.Unlock()
	for _, lf := range lost {
		lf.done(memberHomeRefusal(reasonMemberHomeRestarted))
	}
	var err error
	if code != 0 {
		err = &peerRefusal{code: code, retryAfter: retryAfter, reason: reason}
	}
	rf.f.done(err)
	return nil
}

// expireFans fails the fan-out parts whose node did not answer in time or
// restarted since. Runs on the first shard's tick.
func (r *Router) expireFans(now time.Time) {
	p := &r.peer
	p.mu.Lock()
	lost := p.takeFans(func(rf remoteFan) bool { return p.peers.Instance(rf.node) != rf.instance })
	late := p.takeFans(func(rf remoteFan) bool { return !now.Before(rf.deadline) })
	p.mu.Unlock()
	for _, f := range late {
		r.stats.ForwardTimeouts.Add(1)
		f.done(memberHomeRefusal(reasonMemberHomeTimeout))
	}
	for _, f := range lost {
		f.done(memberHomeRefusal(reasonMemberHomeRestarted))
	}
}

package delivery

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"switchboard/protocol"
	"switchboard/storage"
)

// Peers are the other nodes of a cluster, as delivery needs them: who homes
// a mailbox, and a way to hand a payload to a node. Package cluster
// implements it over NATS; delivery never imports it. Every mailbox has one
// home node, which alone stores and serves it; a session lives on its
// user's home (logins elsewhere are redirected home by the gateway).
type Peers interface {
	// Self is this node's id, at least 1.
	Self() uint32
	// Home returns the node that homes the mailbox of user (or group) id.
	Home(id uint64) uint32
	// Send hands payload to node, which passes it to its Router.FromPeer,
	// in order per sender. It never blocks for long; false means the node
	// is down or unreachable now, and nothing was sent. Send may keep
	// payload only until it returns.
	Send(node uint32, payload []byte) bool
	// Instance returns the instance of node's process as last heard (this
	// node's own for Self), different after every restart; 0 if never
	// heard.
	Instance(node uint32) uint64
	// Leaving reports whether node said it is handing over to a new
	// process that has not been heard yet. Such a node is down for Send.
	Leaving(node uint32) bool
}

// DefaultPeerTimeout is how long a SEND forwarded to its recipient's home
// node may wait for the answer before its sender is told to retry: twice a
// dead node's detection time, so a node that dies with the request in hand
// is refused for, not waited on.
const DefaultPeerTimeout = 5 * time.Second

// MaxForwarded bounds the SENDs one node has forwarded and not yet heard
// back about; past it, sends to other nodes are refused busy (RETRY_LATER).
const MaxForwarded = 1 << 16

// Payload kinds between the routers of a cluster. A payload is its kind,
// then uvarint fields; the stored record goes last, as is.
const (
	peerSend    byte = 1 // sess, from, to, msgID, retry, record
	peerAnswer  byte = 2 // sess, kind (OutAccept / OutRefuse), msgID, ref, code, retryAfter, reason
	peerReceipt byte = 3 // sender, by, msgID, more, flags (read 1, expired 2), acker, seq
	peerSettled byte = 4 // sender, acker, seq: the receipt is stored; settle its pending receipt
	peerRescan  byte = 5 // a forwarded receipt was not stored: offer the pending ones again
	peerSignal  byte = 6 // from, kind, group, users…: a signal for users homed on the node
)

// errPeerPayload is a payload from a peer that does not decode: a bug or a
// mismatched build; it is counted and dropped.
var errPeerPayload = errors.New("delivery: malformed payload from a peer")

// refusals of a forwarded SEND, as REFUSE reasons.
const (
	reasonHomeDown      = "the recipient's home node is unreachable"
	reasonHomeTimeout   = "the recipient's home node did not answer"
	reasonHomeRestarted = "the recipient's home node restarted"
	reasonHomeLeaving   = "the recipient's home node is handing over to a new process"
	reasonHandingOver   = "this node is handing its connections to a new process"
)

// The longest retry_after, in milliseconds, of a request refused because
// a node could not take or answer it. Each refusal draws its own from
// [½, 1] of it (jitter).
const (
	// peerRetryAfter: the node is down, did not answer or restarted;
	// about the time a restarted node takes to be seen again.
	peerRetryAfter = 2000
	// leaveRetryAfter: the node is handing over to a new process, which
	// is heard about a second after the old one said so (docs/BENCHMARKS.md,
	// "A takeover in a cluster"), so a sender resends at most half a
	// second after it is there.
	leaveRetryAfter = 500
)

// peerRetry returns the retry_after of a request refused for reason, one
// of the refusals of a forwarded request: drawn from [½, 1] of
// leaveRetryAfter when a node is handing over, of peerRetryAfter
// otherwise.
func peerRetry(reason string) uint32 {
	longest := uint64(peerRetryAfter)
	switch reason {
	case reasonHomeLeaving, reasonMemberHomeLeaving, reasonHandingOver:
		longest = leaveRetryAfter
	}
	return jitter(longest, rand.Uint64)
}

// forwarded names a SEND this node forwarded and has no answer for.
type forwarded struct {
	sess  uint64
	msgID uint64
}

// inFlight is what this node remembers of a forwarded SEND: where it went,
// to which instance of that node's process, and when its sender is to be
// told to retry if no answer came.
type inFlight struct {
	node     uint32
	instance uint64
	deadline time.Time
}

// peering is a router's side of the cluster. The zero value is a router
// alone.
type peering struct {
	peers   Peers
	timeout time.Duration

	mu      sync.Mutex
	pending map[forwarded]inFlight
	// routes counts pending per (session, home), with the home's instance
	// they went to, so that a SEND finds in O(1) whether earlier ones of
	// its session went to an earlier instance; pending is scanned only
	// then, after a restart.
	routes map[route]routeState

	// fans are the parts of group fan-outs handed to other nodes, by id,
	// waiting for their peerFanned; fanRoutes counts them per node, with
	// the instance the last went to (peergroups.go).
	fans      map[uint64]remoteFan
	fanRoutes map[uint32]routeState
	nextFan   uint64
}

// route is one session's forwards to one home node.
type route struct {
	sess uint64
	node uint32
}

// routeState is how many of a route's forwards are pending, and the
// instance of the home the last of them went to.
type routeState struct {
	instance uint64
	n        int
}

// add records forwarded SEND k as pending; a resend of one still pending
// replaces it, counted once in its route. p.mu held.
func (p *peering) add(k forwarded, f inFlight) {
	p.drop(k)
	p.pending[k] = f
	rt := route{sess: k.sess, node: f.node}
	rs := p.routes[rt]
	p.routes[rt] = routeState{instance: f.instance, n: rs.n + 1}
}

// drop forgets pending SEND k, if it is pending. p.mu held.
func (p *peering) drop(k forwarded) {
	f, ok := p.pending[k]
	if !ok {
		return
	}
	delete(p.pending, k)
	rt := route{sess: k.sess, node: f.node}
	if rs := p.routes[rt]; rs.n > 1 {
		p.routes[rt] = routeState{instance: rs.instance, n: rs.n - 1}
	} else {
		delete(p.routes, rt)
	}
}

// Join makes r one node of a cluster: mailboxes homed on other nodes are
// reached through peers, and answers for sessions on other nodes go back
// through it. timeout bounds the wait for a forwarded SEND's answer (0:
// DefaultPeerTimeout). Call it before Start. A router that never joins
// serves every mailbox itself, as it always has.
func (r *Router) Join(peers Peers, timeout time.Duration) {
	if timeout <= 0 {
		timeout = DefaultPeerTimeout
	}
	r.peer = peering{peers: peers, timeout: timeout, pending: map[forwarded]inFlight{}, routes: map[route]routeState{},
		fans: map[uint64]remoteFan{}, fanRoutes: map[uint32]routeState{}}
	r.own = clusterOwners{local: localShards(r.shards), r: r}
}

// remote returns the node homing id when it is not this one, 0 otherwise.
func (r *Router) remote(id uint64) uint32 {
	if r.peer.peers == nil {
		return 0
	}
	if h := r.peer.peers.Home(id); h != r.peer.peers.Self() {
		return h
	}
	return 0
}

// forward hands a request of session sess to node home: a 1:1 SEND to its
// recipient's home, or a group request to its group's home. payload makes
// its bytes for the instance of home's process it is meant for. The answer
// (ACCEPT once the home made it durable, or REFUSE) comes back as a
// peerAnswer for sess. It reports false when nothing was sent: the node is
// down (reason set) or too many wait for answers (reason empty); the
// caller refuses the sender.
func (r *Router) forward(home uint32, sess, msgID uint64, payload func(inst uint64) []byte) (sent bool, reason string) {
	key := forwarded{sess: sess, msgID: msgID}
	p := &r.peer
	inst := p.peers.Instance(home)
	p.mu.Lock()
	if len(p.pending) >= MaxForwarded {
		p.mu.Unlock()
		return false, ""
	}
	// A request of this session still in the hands of an earlier process
	// of the home is lost with it. Refuse it now, and this one too: the
	// session then sends both again in msg_id order (PROTOCOL.md 8.5), so
	// the later one is not stored before the earlier.
	var lost []forwarded
	if rs := p.routes[route{sess: key.sess, node: home}]; rs.n > 0 && rs.instance != inst {
		for k, f := range p.pending {
			if k.sess == key.sess && f.node == home && f.instance != inst {
				lost = append(lost, k)
			}
		}
		for _, k := range lost {
			p.drop(k)
		}
		sortByMsgID(lost)
	}
	if len(lost) == 0 {
		p.add(key, inFlight{node: home, instance: inst, deadline: r.cfg.Now().Add(p.timeout)})
	}
	p.mu.Unlock()
	if len(lost) > 0 {
		for _, k := range lost {
			r.refuseForwarded(k, reasonHomeRestarted)
		}
		return false, reasonHomeRestarted
	}
	if p.peers.Send(home, payload(inst)) {
		return true, ""
	}
	p.mu.Lock()
	p.drop(key)
	p.mu.Unlock()
	return false, reasonHomeDown
}

// sendPayload is the peerSend payload of 1:1 SEND q for instance inst of
// its recipient's home.
func sendPayload(q request, inst uint64) []byte {
	b := make([]byte, 0, 1+6*binary.MaxVarintLen64+1+len(q.record))
	b = append(b, peerSend)
	b = binary.AppendUvarint(b, inst)
	b = binary.AppendUvarint(b, q.sess.ID)
	b = binary.AppendUvarint(b, q.from)
	b = binary.AppendUvarint(b, q.user)
	b = binary.AppendUvarint(b, q.msgID)
	b = append(b, boolByte(q.retry))
	return append(b, q.record...)
}

// sendRemote forwards a 1:1 SEND to its recipient's home node. A home
// node that is down refuses it at once, retryable: nothing is accepted that
// is not durable on the mailbox's owner. It returns false, as Send does,
// only when too many forwarded SENDs wait for answers.
func (r *Router) sendRemote(home uint32, q request) bool {
	ok := r.forwardOrRefuse(home, q.sess, q.msgID, func(inst uint64) []byte { return sendPayload(q, inst) })
	if ok {
		r.stats.Sends.Add(1)
	}
	return ok
}

// forwardOrRefuse forwards a request of session s to node home, as
// forward does, and refuses it (RETRY_LATER) when home is down or
// restarted. It returns false only when too many forwarded requests wait
// for answers: nothing was taken.
func (r *Router) forwardOrRefuse(home uint32, s Session, msgID uint64, payload func(inst uint64) []byte) bool {
	sent, reason := r.forward(home, s.ID, msgID, payload)
	switch {
	case sent:
		r.stats.Forwarded.Add(1)
	case reason != "":
		if reason == reasonHomeDown {
			r.stats.HomeDown.Add(1)
			if r.peer.peers.Leaving(home) {
				reason = reasonHomeLeaving
			}
		}
		r.push(s, Outbound{Kind: OutRefuse, MsgID: msgID, Code: protocol.CodeRetryLater, RetryAfter: peerRetry(reason), Reason: reason})
	default:
		r.refusedBusy()
		return false
	}
	return true
}

// clusterOwners: the mailboxes homed here are owned by the local shards,
// every other one by remoteOwner, index len(local), which forwards to the
// home node what can cross today (receipts) and refuses the rest.
type clusterOwners struct {
	local localShards
	r     *Router
}

func (co clusterOwners) owner(user uint64) (int, mailboxOwner) {
	if home := co.r.remote(user); home != 0 {
		return len(co.local), remoteOwner{co.r}
	}
	return co.local.owner(user)
}

func (co clusterOwners) count() int { return len(co.local) + 1 }

func (co clusterOwners) at(i int) mailboxOwner {
	if i == len(co.local) {
		return remoteOwner{co.r}
	}
	return co.local[i]
}

// remoteOwner stands for every mailbox homed on another node. A receipt
// goes to its sender's home node, which stores it and has it settled here;
// a signal goes to its users' home nodes, one payload per node. Group
// copies for members homed elsewhere never reach it: the group worker
// sends them one payload per node (fanRemote, peergroups.go).
type remoteOwner struct{ r *Router }

func (ro remoteOwner) offer(q request) bool {
	switch q.kind {
	case reqReceipt:
		return ro.r.forwardReceipt(q)
	case reqSignal:
		return ro.r.forwardSignal(q)
	}
	return false
}

// forwardSignal hands signal q to the home nodes of its users (q.user, or
// q.list for a group): one payload per node. Signals are best effort: a
// node that is down drops them, as a full queue does; they are counted
// here, so it always reports true.
func (r *Router) forwardSignal(q request) bool {
	users := q.list
	if users == nil {
		users = []uint64{q.user}
	}
	byNode := map[uint32][]uint64{}
	for _, u := range users {
		if h := r.remote(u); h != 0 {
			byNode[h] = append(byNode[h], u)
		}
	}
	for node, us := range byNode {
		b := make([]byte, 0, 1+(3+len(us))*binary.MaxVarintLen64)
		b = append(b, peerSignal)
		b = binary.AppendUvarint(b, q.from)
		b = binary.AppendUvarint(b, q.msgID)
		b = binary.AppendUvarint(b, q.more)
		for _, u := range us {
			b = binary.AppendUvarint(b, u)
		}
		if !r.peer.peers.Send(node, b) {
			r.stats.SignalsDropped.Add(uint64(len(us)))
		}
	}
	return true
}

func (ro remoteOwner) offerWait(q request, _ <-chan struct{}) bool { return ro.offer(q) }

// forwardReceipt hands receipt q to its sender's home node. Its pending
// receipt stays in this node's store until that node says the receipt
// entry is stored (peerSettled); until then a rescan or a restart offers it
// again, so a receipt may repeat but is never lost.
func (r *Router) forwardReceipt(q request) bool {
	home := r.remote(q.user)
	if home == 0 {
		return false
	}
	var flags byte
	if q.read {
		flags |= 1
	}
	if q.expired {
		flags |= 2
	}
	b := make([]byte, 0, 1+7*binary.MaxVarintLen64)
	b = append(b, peerReceipt)
	b = binary.AppendUvarint(b, q.user)
	b = binary.AppendUvarint(b, q.from)
	b = binary.AppendUvarint(b, q.msgID)
	b = binary.AppendUvarint(b, q.more)
	b = append(b, flags)
	b = binary.AppendUvarint(b, q.settles.Acker)
	b = binary.AppendUvarint(b, q.settles.Seq)
	if !r.peer.peers.Send(home, b) {
		return false
	}
	r.stats.ReceiptsForwarded.Add(1)
	return true
}

// settleRemote tells node that the receipt it forwarded for sender is
// stored here, so it deletes its pending receipt key. A lost settle only
// makes the receipt come again.
func (r *Router) settleRemote(node uint32, sender uint64, key storage.ReceiptKey) {
	if key == (storage.ReceiptKey{}) || r.peer.peers == nil {
		return // a read receipt: nothing pending anywhere
	}
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64)
	b = append(b, peerSettled)
	b = binary.AppendUvarint(b, sender)
	b = binary.AppendUvarint(b, key.Acker)
	b = binary.AppendUvarint(b, key.Seq)
	r.peer.peers.Send(node, b)
}

// askRescan tells node that a receipt it forwarded was not stored, so that
// its next tick offers its pending receipts again.
func (r *Router) askRescan(node uint32) {
	if r.peer.peers != nil {
		r.peer.peers.Send(node, []byte{peerRescan})
	}
}

// FromPeer handles a payload from node from: a SEND to store for a user
// homed here, or the answer to a SEND this node forwarded. The transport
// calls it in order per sender node.
func (r *Router) FromPeer(from uint32, payload []byte) {
	if err := r.fromPeer(from, payload); err != nil {
		r.stats.PeerErrors.Add(1)
		r.cfg.Logger.Error("delivery: from a peer", "node", from, "err", err)
	}
}

func (r *Router) fromPeer(from uint32, b []byte) error {
	if len(b) == 0 || r.peer.peers == nil {
		return errPeerPayload
	}
	var f fields
	f.b = b[1:]
	switch b[0] {
	case peerSend:
		inst, sess, user, to, msgID := f.uvarint(), f.uvarint(), f.uvarint(), f.uvarint(), f.uvarint()
		retry := f.byte() == 1
		if f.err != nil || sess == 0 || to == 0 {
			return fmt.Errorf("%w: SEND", errPeerPayload)
		}
		s := Session{Node: from, ID: sess}
		if inst != r.peer.peers.Instance(r.peer.peers.Self()) {
			// Meant for this node's previous process: an earlier SEND of
			// the same session may have died with it. Refused, so that the
			// session sends both again, in order.
			r.push(s, Outbound{Kind: OutRefuse, MsgID: msgID, Code: protocol.CodeRetryLater, RetryAfter: peerRetry(reasonHomeRestarted), Reason: reasonHomeRestarted})
			return nil
		}
		record := append([]byte(nil), f.b...) // stored as is, after the payload is gone
		q := request{kind: reqSend, sess: s, user: to, from: user, msgID: msgID, retry: retry, record: record, at: r.stamp()}
		if !r.submitQuiet(to, q) {
			r.refusedBusy()
			r.push(s, Outbound{Kind: OutRefuse, MsgID: msgID, Code: protocol.CodeRetryLater, RetryAfter: r.BusyRetryAfter(), Reason: "busy"})
		}
		return nil
	case peerAnswer:
		sess, kind, msgID, ref, code, retryAfter := f.uvarint(), OutKind(f.byte()), f.uvarint(), f.uvarint(), protocol.Code(f.uvarint()), uint32(f.uvarint())
		reason := string(f.b)
		if f.err != nil || (kind != OutAccept && kind != OutRefuse) {
			return fmt.Errorf("%w: answer", errPeerPayload)
		}
		r.peer.mu.Lock()
		key := forwarded{sess: sess, msgID: msgID}
		var lost []forwarded
		if f, ok := r.peer.pending[key]; ok && kind == OutRefuse && reason == reasonHomeRestarted {
			// The home's new process refused a request meant for the one
			// before: every other request of this session that went to
			// that process is lost with it. Refuse them first, so the
			// session sends them all again in msg_id order (PROTOCOL.md
			// 8.5) rather than this one before them.
			for k, g := range r.peer.pending {
				if k.sess == sess && k != key && g.node == from && g.instance == f.instance {
					lost = append(lost, k)
				}
			}
			sortByMsgID(lost)
			for _, k := range lost {
				r.peer.drop(k)
			}
		}
		r.peer.drop(key)
		r.peer.mu.Unlock()
		for _, k := range lost {
			r.refuseForwarded(k, reasonHomeRestarted)
		}
		r.sessions.Push(Session{ID: sess}, Outbound{Kind: kind, MsgID: msgID, Ref: ref, Code: code, RetryAfter: retryAfter, Reason: reason})
		return nil
	case peerReceipt:
		sender, by, msgID, more, flags := f.uvarint(), f.uvarint(), f.uvarint(), f.uvarint(), f.byte()
		key := storage.ReceiptKey{Acker: f.uvarint(), Seq: f.uvarint()}
		if f.err != nil || sender == 0 {
			return fmt.Errorf("%w: receipt", errPeerPayload)
		}
		q := request{kind: reqReceipt, user: sender, from: by, msgID: msgID, more: more, read: flags&1 != 0, expired: flags&2 != 0, settles: key, settler: from}
		if !r.submitQuiet(sender, q) {
			// Still pending at the acker's node, which offers it again. A
			// read receipt has nothing pending: dropped.
			r.stats.ReceiptsDropped.Add(1)
			r.askRescan(from)
		}
		return nil
	case peerRescan:
		r.rescan.Store(true)
		return nil
	case peerSignal:
		from, kind, group := f.uvarint(), f.uvarint(), f.uvarint()
		for f.err == nil && len(f.b) > 0 {
			u := f.uvarint()
			if f.err == nil && !r.submitQuiet(u, request{kind: reqSignal, user: u, from: from, msgID: kind, more: group}) {
				r.stats.SignalsDropped.Add(1)
			}
		}
		if f.err != nil {
			return fmt.Errorf("%w: signal", errPeerPayload)
		}
		return nil
	case peerGroup:
		return r.fromPeerGroup(from, &f)
	case peerFanout:
		return r.fromPeerFanout(from, &f)
	case peerFanned:
		return r.fromPeerFanned(from, &f)
	case peerSettled:
		sender := f.uvarint()
		key := storage.ReceiptKey{Acker: f.uvarint(), Seq: f.uvarint()}
		if f.err != nil {
			return fmt.Errorf("%w: settled", errPeerPayload)
		}
		r.store.SettleReceipt(sender, key, func(err error) {
			if err != nil {
				r.stats.StorageErrors.Add(1)
			}
		})
		return nil
	}
	return fmt.Errorf("%w: kind %d", errPeerPayload, b[0])
}

// expireForwarded tells the senders of forwarded SENDs whose answer is
// overdue to retry: their recipient's home node died or lost the request,
// and a resend with flag B is deduplicated there if it had stored it.
// Runs on the first shard's tick.
//
// A request whose home restarted meanwhile is lost too, but it is not
// refused as soon as the restart is heard: the session's next request to
// that home refuses it first (forward), in msg_id order, while a refusal
// sent now could reach the client after it wrote that next request, which
// would then be stored first. So it waits for its deadline, like any.
func (r *Router) expireForwarded() {
	if r.peer.peers == nil {
		return
	}
	now := r.cfg.Now()
	var late []forwarded
	restarted := map[forwarded]bool{}
	r.peer.mu.Lock()
	for k, f := range r.peer.pending {
		if !now.Before(f.deadline) {
			late = append(late, k)
			restarted[k] = r.peer.peers.Instance(f.node) != f.instance
		}
	}
	for _, k := range late {
		r.peer.drop(k)
	}
	r.peer.mu.Unlock()
	// In msg_id order, so that a session resending them on the refusals
	// resends them in order.
	sortByMsgID(late)
	for _, k := range late {
		if restarted[k] {
			r.refuseForwarded(k, reasonHomeRestarted)
			continue
		}
		r.stats.ForwardTimeouts.Add(1)
		r.refuseForwarded(k, reasonHomeTimeout)
	}
	r.expireFans(now)
}

// Awaiting reports how many requests this node sent to other nodes and
// has no answer for: forwarded SENDs, GROUP requests and parts of group
// fan-outs. Zero for a node alone.
func (r *Router) Awaiting() int {
	if r.peer.peers == nil {
		return 0
	}
	r.peer.mu.Lock()
	defer r.peer.mu.Unlock()
	return len(r.peer.pending) + len(r.peer.fans)
}

// RefuseAwaiting refuses, with RETRY_LATER, every request still waiting
// for another node's answer, in msg_id order: a handover calls it when it
// leaves the cluster, after which no answer can come. The clients resend
// them with flag B to the new process, and the homes deduplicate.
func (r *Router) RefuseAwaiting() {
	if r.peer.peers == nil {
		return
	}
	var sends []forwarded
	var fans []*fanout
	p := &r.peer
	p.mu.Lock()
	for k := range p.pending {
		sends = append(sends, k)
	}
	for _, k := range sends {
		p.drop(k)
	}
	for id, rf := range p.fans {
		fans = append(fans, rf.f)
		p.dropFan(id)
	}
	p.mu.Unlock()
	sortByMsgID(sends)
	for _, k := range sends {
		r.refuseForwarded(k, reasonHandingOver)
	}
	for _, f := range fans {
		f.done(memberHomeRefusal(reasonHandingOver))
	}
}

// sortByMsgID sorts forwarded requests by msg id (sessions' ids grow).
func sortByMsgID(ks []forwarded) {
	slices.SortFunc(ks, func(a, b forwarded) int { return cmp.Compare(a.msgID, b.msgID) })
}

// refuseForwarded tells the sender of forwarded SEND k to send it again:
// no answer will come for it.
func (r *Router) refuseForwarded(k forwarded, reason string) {
	r.sessions.Push(Session{ID: k.sess}, Outbound{Kind: OutRefuse, MsgID: k.msgID, Code: protocol.CodeRetryLater, RetryAfter: peerRetry(reason), Reason: reason})
}

// peerSessions reaches sessions on this node through the gateway's
// Sessions and answers sessions on other nodes (the senders of forwarded
// SENDs) through peers. Only ACCEPT and REFUSE ever go to a session on
// another node: entries go to sessions on their mailbox's home, here.
type peerSessions struct {
	local Sessions
	peers Peers
}

func (ps peerSessions) Push(s Session, out Outbound) bool {
	if s.Node == 0 || s.Node == ps.peers.Self() {
		return ps.local.Push(Session{ID: s.ID}, out)
	}
	if out.Kind != OutAccept && out.Kind != OutRefuse {
		return false
	}
	b := make([]byte, 0, 1+6*binary.MaxVarintLen64+len(out.Reason))
	b = append(b, peerAnswer)
	b = binary.AppendUvarint(b, s.ID)
	b = append(b, byte(out.Kind))
	b = binary.AppendUvarint(b, out.MsgID)
	b = binary.AppendUvarint(b, out.Ref)
	b = binary.AppendUvarint(b, uint64(out.Code))
	b = binary.AppendUvarint(b, uint64(out.RetryAfter))
	b = append(b, out.Reason...)
	// Not sent: the sender's node is down, its session with it; the client
	// resends with flag B and is answered from the dedupe record.
	return ps.peers.Send(s.Node, b)
}

func (ps peerSessions) Close(s Session, code protocol.Code) {
	if s.Node == 0 || s.Node == ps.peers.Self() {
		ps.local.Close(Session{ID: s.ID}, code)
	}
}

// fields reads a payload's fields in order; the first error sticks.
type fields struct {
	b   []byte
	err error
}

func (f *fields) uvarint() uint64 {
	if f.err != nil {
		return 0
	}
	v, n := binary.Uvarint(f.b)
	if n <= 0 {
		f.err = errPeerPayload
		return 0
	}
	f.b = f.b[n:]
	return v
}

func (f *fields) byte() byte {
	if f.err != nil || len(f.b) == 0 {
		f.err = errPeerPayload
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

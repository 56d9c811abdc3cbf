package delivery_test

import (
	"cmp"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// fakeCluster joins routers in one process: node n homes the ids with
// id%len == n-1, and a payload to a node goes through that node's queue,
// in order, to its FromPeer. A node marked down refuses payloads (Send
// returns false); a node marked deaf takes them and loses them.
type fakeCluster struct {
	mu      sync.Mutex
	nodes   map[uint32]*delivery.Router
	queues  map[uint32]chan peerMsg
	down    map[uint32]bool
	leaving map[uint32]bool // down nodes that said they are handing over
	deaf    map[uint32]bool
	inst    map[uint32]uint64 // a node's process instance; a restart changes it
	stale   map[uint32]bool   // these observers have not heard other nodes' restarts yet
	sent    atomic.Int64
	kinds   [16]atomic.Int64 // payloads sent, by kind (the first byte)
	closed  chan struct{}    // closed at the end: queues take nothing more
}

type peerMsg struct {
	from    uint32
	payload []byte
}

type fakePeer struct {
	c    *fakeCluster
	self uint32
}

func (p fakePeer) Self() uint32 { return p.self }
func (p fakePeer) Home(id uint64) uint32 {
	return uint32(id%uint64(len(p.c.queues))) + 1
}

func (p fakePeer) Instance(node uint32) uint64 {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	if p.c.stale[p.self] && node != p.self && p.c.inst[node] > 0 {
		return p.c.inst[node] // the instance before the last restart
	}
	return p.c.inst[node] + 1
}

func (p fakePeer) Leaving(node uint32) bool {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.c.leaving[node]
}

func (p fakePeer) Send(node uint32, payload []byte) bool {
	p.c.mu.Lock()
	q, down, deaf := p.c.queues[node], p.c.down[node], p.c.deaf[node]
	p.c.mu.Unlock()
	if down || q == nil {
		return false
	}
	p.c.sent.Add(1)
	p.c.kinds[payload[0]%16].Add(1)
	if !deaf {
		select {
		case q <- peerMsg{from: p.self, payload: append([]byte(nil), payload...)}:
		case <-p.c.closed:
			return false
		}
	}
	return true
}

func (c *fakeCluster) set(m map[uint32]bool, node uint32, v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m[node] = v
}

// newCluster starts n routers over memory stores, joined, with clock as
// their clock; it returns them and their stores, node i+1 at index i.
func newCluster(t testing.TB, n int, clock func() time.Time) (*fakeCluster, []*delivery.Router, []storage.Store) {
	t.Helper()
	return newClusterWith(t, n, clusterOpts{cfg: delivery.Config{Shards: 2, Now: clock}})
}

// clusterOpts is how newClusterWith makes each node.
type clusterOpts struct {
	cfg  delivery.Config // every router's
	scfg storage.Config  // every node's memory store's
	// timeout is every router's Join timeout; zero: a second, negative:
	// Join's default (it is passed as 0).
	timeout time.Duration
	// store returns the store node's router runs over, given the node's
	// memory store; nil: the memory store itself.
	store func(node uint32, mem storage.Store) storage.Store
	// hook returns node's panic hook (Router.SetPanicHook); nil, or a nil
	// hook: none.
	hook func(node uint32) func(worker string, user uint64)
}

// newClusterWith is newCluster with the routers made as o says; it
// returns the nodes' memory stores.
func newClusterWith(t testing.TB, n int, o clusterOpts) (*fakeCluster, []*delivery.Router, []storage.Store) {
	t.Helper()
	c := &fakeCluster{nodes: map[uint32]*delivery.Router{}, queues: map[uint32]chan peerMsg{}, down: map[uint32]bool{}, leaving: map[uint32]bool{}, deaf: map[uint32]bool{}, inst: map[uint32]uint64{}, stale: map[uint32]bool{}, closed: make(chan struct{})}
	var rs []*delivery.Router
	var ss []storage.Store
	for i := range n {
		c.queues[uint32(i+1)] = make(chan peerMsg, 1024)
	}
	for i := range n {
		node := uint32(i + 1)
		store, err := storage.NewMemory(o.scfg)
		if err != nil {
			t.Fatal(err)
		}
		var over storage.Store = store
		if o.store != nil {
			over = o.store(node, store)
		}
		r, err := delivery.New(o.cfg, over)
		if err != nil {
			t.Fatal(err)
		}
		if o.hook != nil {
			if h := o.hook(node); h != nil {
				r.SetPanicHook(h)
			}
		}
		timeout := cmp.Or(o.timeout, time.Second)
		if timeout < 0 {
			timeout = 0
		}
		r.Join(fakePeer{c: c, self: node}, timeout)
		r.Start(sessions)
		c.nodes[node] = r
		q := c.queues[node]
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case m := <-q:
					r.FromPeer(m.from, m.payload)
				case <-c.closed:
					return
				}
			}
		}()
		t.Cleanup(func() {
			<-done
			r.Stop()
			store.Close()
		})
		rs = append(rs, r)
		ss = append(ss, store)
	}
	t.Cleanup(func() { close(c.closed) }) // runs first: every node stops taking payloads
	return c, rs, ss
}

// acrossNodes starts two nodes with user 1 (alice, homed on node 2)
// logged in there and user 2 (bob, homed on node 1) logged in there:
// the nodes, their stores, and alice's and bob's sessions.
func acrossNodes(t *testing.T) (n1, n2 *delivery.Router, ss []storage.Store, a, b *fakeConn) {
	t.Helper()
	_, rs, ss := newCluster(t, 2, time.Now)
	n1, n2 = rs[0], rs[1]
	a, b = newFake(), newFake()
	login(t, n2, a, 1, 0)
	login(t, n1, b, 2, 0)
	return n1, n2, ss, a, b
}

// TestSendAcrossNodes: user 1 (homed on node 2) sends to user 2 (homed on
// node 1) through node 2: the SEND goes to node 1, which stores it and
// delivers it to user 2's session there, and the ACCEPT comes back to
// user 1's session on node 2. When user 2 acknowledges, the delivered
// receipt goes to user 1's mailbox on node 2, and node 1's pending receipt
// is settled. A retry with flag B is deduplicated on the home node.
func TestSendAcrossNodes(t *testing.T) {
	n1, n2, ss, a, b := acrossNodes(t)
	const alice, bob = 1, 2 // alice homed on node 2, bob on node 1

	send(t, n2, a, alice, 7, bob)
	waitFor(t, "the ACCEPT on alice's node", func() bool { return len(a.items(delivery.OutAccept)) == 1 })
	waitFor(t, "the delivery on bob's node", func() bool { return len(b.items(delivery.OutEntry)) == 1 })
	if got := b.items(delivery.OutEntry)[0]; got.Seq != 1 {
		t.Fatalf("bob's entry seq %d, want 1", got.Seq)
	}
	if n2.Stats().Forwarded.Load() != 1 || n1.Stats().Accepted.Load() != 1 {
		t.Fatalf("forwarded %d by node 2, accepted %d by node 1; want 1 and 1", n2.Stats().Forwarded.Load(), n1.Stats().Accepted.Load())
	}

	// The same msg id again with flag B: an ACCEPT, no second copy.
	send(t, n2, a, alice, 7, bob)
	waitFor(t, "the second ACCEPT", func() bool { return len(a.items(delivery.OutAccept)) == 2 })
	if page, _, err := ss[0].Read(bob, 1, 10, 0, nil); err != nil || len(page) != 1 {
		t.Fatalf("bob's mailbox on node 1 holds %d entries (%v), want 1", len(page), err)
	}
	if p, rt := n2.Forwarding(); p != 0 || rt != 0 {
		t.Fatalf("node 2 still tracks %d forwarded SENDs over %d routes after their ACCEPTs", p, rt)
	}
	if page, _, err := ss[1].Read(bob, 1, 10, 0, nil); err != nil || len(page) != 0 {
		t.Fatalf("node 2's store holds %d entries of bob, want none: only the home stores", len(page))
	}

	if !n1.Ack(b.s(), delivery.To(bob), 1) {
		t.Fatal("ack busy")
	}
	waitFor(t, "the receipt in alice's session", func() bool {
		for _, o := range a.items(delivery.OutEntry) {
			if x, err := protocol.ParseRecord(o.Record); err == nil && x.Type == protocol.TypeReceipt {
				return true
			}
		}
		return false
	})
	waitFor(t, "bob's node to settle the pending receipt", func() bool {
		n := 0
		ss[0].PendingReceipts(func(storage.PendingReceipt) bool { n++; return true })
		return n == 0
	})
	if page, _, err := ss[1].Read(alice, 1, 10, 0, nil); err != nil || len(page) != 1 || page[0].Kind != storage.KindReceipt {
		t.Fatalf("alice's mailbox on node 2: %+v (%v), want the receipt", page, err)
	}
}

// aliceOnNode2 is two nodes on a clock the test moves by hand (now, in
// Unix nanoseconds), with alice (user 1) logged in at node 2; bob (user 2)
// is homed on node 1.
func aliceOnNode2(t *testing.T) (now *atomic.Int64, c *fakeCluster, rs []*delivery.Router, ss []storage.Store, alice *fakeConn) {
	t.Helper()
	now = new(atomic.Int64)
	now.Store(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).UnixNano())
	c, rs, ss = newCluster(t, 2, func() time.Time { return time.Unix(0, now.Load()) })
	alice = newFake()
	login(t, rs[1], alice, 1, 0)
	return now, c, rs, ss, alice
}

// TestSendToADownNode: a SEND whose recipient's home node is down is
// refused at once, retryable, and nothing is stored anywhere; a SEND whose
// home node took it and never answered is refused retryable after the
// timeout, on the next tick.
func TestSendToADownNode(t *testing.T) {
	now, c, rs, ss, a := aliceOnNode2(t)
	n2 := rs[1]
	const alice, bob = 1, 2

	c.set(c.down, 1, true)
	send(t, n2, a, alice, 1, bob)
	refused := a.items(delivery.OutRefuse)
	if len(refused) != 1 || refused[0].Code != protocol.CodeRetryLater || refused[0].RetryAfter == 0 || refused[0].MsgID != 1 {
		t.Fatalf("refusals %+v, want one RETRY_LATER of msg 1 with a retry_after", refused)
	}
	if n2.Stats().HomeDown.Load() != 1 {
		t.Fatalf("HomeDown %d, want 1", n2.Stats().HomeDown.Load())
	}

	c.set(c.down, 1, false)
	c.set(c.deaf, 1, true)
	send(t, n2, a, alice, 2, bob)
	n2.Tick()
	if got := len(a.items(delivery.OutRefuse)); got != 1 {
		t.Fatalf("%d refusals before the timeout, want still 1", got)
	}
	now.Add(int64(time.Second))
	n2.Tick()
	waitFor(t, "the timeout's refusal", func() bool { return len(a.items(delivery.OutRefuse)) == 2 })
	if got := a.items(delivery.OutRefuse)[1]; got.MsgID != 2 || got.Code != protocol.CodeRetryLater {
		t.Fatalf("refusal %+v, want RETRY_LATER of msg 2", got)
	}
	if n2.Stats().ForwardTimeouts.Load() != 1 {
		t.Fatalf("ForwardTimeouts %d, want 1", n2.Stats().ForwardTimeouts.Load())
	}
	if page, _, err := ss[0].Read(bob, 1, 10, 0, nil); err != nil || len(page) != 0 {
		t.Fatalf("bob's mailbox holds %d entries, want none", len(page))
	}
}

// TestDownHomeRetryAfter: the SENDs refused because their recipient's home
// node is down carry retry_afters drawn from [1, 2] s, not one value that
// brings every sender back at the same instant; while that node is
// handing over to a new process, which is heard within about a second,
// they are drawn from [250, 500] ms and say so.
func TestDownHomeRetryAfter(t *testing.T) {
	_, c, rs, _, a := aliceOnNode2(t)
	const alice, bob, n = 1, 2, 40
	c.set(c.down, 1, true)
	check := func(first uint64, low, high uint32, reason string) {
		t.Helper()
		seen := map[uint32]bool{}
		for id := first; id < first+n; id++ {
			send(t, rs[1], a, alice, id, bob)
		}
		refused := a.items(delivery.OutRefuse)[first-1:]
		if len(refused) != n {
			t.Fatalf("%d refusals, want %d", len(refused), n)
		}
		for _, o := range refused {
			if o.Code != protocol.CodeRetryLater || o.RetryAfter < low || o.RetryAfter > high || o.Reason != reason {
				t.Fatalf("refusal %+v, want RETRY_LATER with a retry_after in [%d, %d] ms, %q", o, low, high, reason)
			}
			seen[o.RetryAfter] = true
		}
		if len(seen) < n/2 {
			t.Errorf("%d refusals carried %d distinct retry_afters, want them spread", n, len(seen))
		}
	}
	check(1, 1000, 2000, "the recipient's home node is unreachable")
	c.set(c.leaving, 1, true)
	check(1+n, 250, 500, "the recipient's home node is handing over to a new process")
	if got := rs[1].Stats().HomeDown.Load(); got != 2*n {
		t.Errorf("HomeDown %d, want %d", got, 2*n)
	}
}

// TestForwardTimeoutsRefusedInOrder: several forwarded SENDs whose home
// never answered are refused on one tick in msg_id order, so that a
// session that resends on each refusal resends them in order.
func TestForwardTimeoutsRefusedInOrder(t *testing.T) {
	now, c, rs, _, a := aliceOnNode2(t)
	n2 := rs[1]
	const alice, bob = 1, 2
	c.set(c.deaf, 1, true)
	const sends = 16
	for id := uint64(1); id <= sends; id++ {
		send(t, n2, a, alice, id, bob)
	}
	now.Add(int64(time.Second))
	n2.Tick()
	waitFor(t, "the timeouts' refusals", func() bool { return len(a.items(delivery.OutRefuse)) == sends })
	for i, r := range a.items(delivery.OutRefuse) {
		if r.MsgID != uint64(i+1) || r.Code != protocol.CodeRetryLater {
			t.Fatalf("refusal %d: %+v, want RETRY_LATER of msg %d (in msg_id order)", i, r, i+1)
		}
	}
}

// TestLoginAwayFromHomeRefused: a mailbox is served only by its home: a
// login of a user homed elsewhere is refused (the gateway redirects it
// before it gets here), and so is a connection handed over to this node
// for such a user (Resume), at once and with nothing sent to its home, so
// ownership never splits.
func TestLoginAwayFromHomeRefused(t *testing.T) {
	c, rs, _ := newCluster(t, 2, time.Now)
	if rs[0].Login(newFake().s(), delivery.To(1), 0) {
		t.Fatal("node 1 took the login of user 1, homed on node 2")
	}
	sent := c.sent.Load()
	if rs[0].Resume(newFake().s(), delivery.To(1), 0, 0) {
		t.Fatal("node 1 resumed a connection of user 1, homed on node 2")
	}
	if n := c.sent.Load() - sent; n != 0 {
		t.Fatalf("%d payloads sent for the refused resume, want none", n)
	}
}

// TestReplaceInACluster: a second login of a user at its home node closes
// the first with REPLACED, as on a node alone.
func TestReplaceInACluster(t *testing.T) {
	_, rs, _ := newCluster(t, 2, time.Now)
	first, second := newFake(), newFake()
	login(t, rs[1], first, 1, 0) // user 1 is homed on node 2
	login(t, rs[1], second, 1, 0)
	waitFor(t, "REPLACED", func() bool { return first.closeCode() == protocol.CodeReplaced })
	if second.closeCode() != 0 {
		t.Fatalf("new connection closed with %v", second.closeCode())
	}
}

// TestSignalsAcrossNodes: a typing signal to a user homed on another node
// reaches their session there, and so does a group signal, one payload per
// node; a signal for a node that is down is dropped and counted.
func TestSignalsAcrossNodes(t *testing.T) {
	c, rs, _ := newCluster(t, 2, time.Now)
	n1, n2 := rs[0], rs[1]
	const alice, bob, carol = 1, 2, 4 // alice on node 2; bob and carol on node 1
	a, b, cc := newFake(), newFake(), newFake()
	login(t, n2, a, alice, 0)
	login(t, n1, b, bob, 0)
	login(t, n1, cc, carol, 0)

	n2.Signal(delivery.To(alice), delivery.To(bob), protocol.SignalTyping)
	waitFor(t, "bob's typing signal", func() bool { return len(b.items(delivery.OutSignal)) == 1 })
	if got := b.items(delivery.OutSignal)[0]; got.Peer != alice || got.MsgID != uint64(protocol.SignalTyping) {
		t.Fatalf("bob got %+v, want typing from alice", got)
	}

	sent := c.sent.Load()
	n2.Signal(delivery.To(alice), delivery.To(bob), protocol.SignalTyping)
	n2.Signal(delivery.To(alice), delivery.To(carol), protocol.SignalTyping)
	waitFor(t, "both signals", func() bool { return len(b.items(delivery.OutSignal)) == 2 && len(cc.items(delivery.OutSignal)) == 1 })
	if got := c.sent.Load() - sent; got != 2 {
		t.Fatalf("%d payloads for two 1:1 signals, want 2", got)
	}

	c.set(c.down, 1, true)
	dropped := n2.Stats().SignalsDropped.Load()
	n2.Signal(delivery.To(alice), delivery.To(bob), protocol.SignalTyping)
	if got := n2.Stats().SignalsDropped.Load() - dropped; got != 1 {
		t.Fatalf("SignalsDropped grew by %d for a signal to a down node, want 1", got)
	}
}

// Payload kinds, as delivery numbers them (peers.go, peergroups.go).
const (
	kindGroup  = 7
	kindFanout = 8
)

// groupMessages returns the msg ids of the group messages in user's
// mailbox in store, in seq order.
func groupMessages(t *testing.T, store storage.Store, user uint64) []uint64 {
	t.Helper()
	page, _, err := store.Read(user, 1, 100, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, e := range page {
		if e.Kind == storage.KindGroupMessage {
			ids = append(ids, e.MsgID)
		}
	}
	return ids
}

// TestGroupAcrossNodes: a group whose members are homed on all three
// nodes, created and used through sessions on nodes other than its home.
// Each change and message is checked and stored by the group's home, every
// member's copy is stored in its own home's store, once, with one fan-out
// payload per node homing members; the ACCEPT comes back to the
// requester's node; a signal reaches members on other nodes; a member's
// delivered receipt reaches the sender across nodes; a member's home that
// is down fails the message retryably, and the resend (flag B) stores only
// the missing copies.
func TestGroupAcrossNodes(t *testing.T) {
	c, rs, ss := newCluster(t, 3, time.Now)
	node := func(id uint64) int { return int(id % 3) } // index of id's home in rs
	// alice and dave on node 1, bob on node 2, carol on node 3.
	const alice, bob, carol, dave = 3, 4, 5, 6
	conns := map[uint64]*fakeConn{}
	for _, u := range []uint64{alice, bob, carol, dave} {
		conns[u] = newFake()
		login(t, rs[node(u)], conns[u], u, 0)
	}

	// bob creates the group through node 2; find a create msg id whose
	// group is homed on node 3, so neither bob's node nor most members' is
	// the group's home.
	var create uint64
	var group uint64
	for id := uint64(1); ; id++ {
		if g := delivery.GroupID(bob, id); node(g) == 2 {
			create, group = id, g
			break
		}
	}
	groupPayloads := c.kinds[kindGroup].Load()
	got := groupOp(t, rs[node(bob)], conns[bob], bob, create, protocol.GroupCreate, 0, alice, carol, dave)
	wantAccept(t, got, group)
	if n := c.kinds[kindGroup].Load() - groupPayloads; n != 1 {
		t.Fatalf("%d group payloads for one create, want 1", n)
	}
	if ms := members(t, ss[2], group); len(ms) != 4 {
		t.Fatalf("the group's home holds %d members, want 4", len(ms))
	}
	for _, i := range []int{0, 1} {
		if ms, err := ss[i].Members(group); !errors.Is(err, storage.ErrNoGroup) || len(ms) != 0 {
			t.Fatalf("node %d holds the group's members %v (%v): only its home does", i+1, ms, err)
		}
	}
	for _, u := range []uint64{alice, bob, carol, dave} {
		waitEvents(t, ss[node(u)], 1, u)
	}

	// alice (node 1) sends: the group's home (node 3) stores carol's copy,
	// and hands node 1 (dave) and node 2 (bob) one payload each.
	fanouts := c.kinds[kindFanout].Load()
	sendGroup := func(from, msgID uint64) delivery.Outbound {
		t.Helper()
		conns[from].reset()
		if !rs[node(from)].Send(conns[from].s(), delivery.Message{From: delivery.To(from), To: group, Group: true, MsgID: msgID, Retry: true, Record: record(from, msgID, "hi")}) {
			t.Fatal("group Send busy")
		}
		return answer(t, conns[from], msgID)
	}
	wantAccept(t, sendGroup(alice, 10), 0)
	if n := c.kinds[kindFanout].Load() - fanouts; n != 2 {
		t.Fatalf("%d fan-out payloads for one message to members on 3 nodes, want 2 (one per node other than the group's home)", n)
	}
	for _, u := range []uint64{bob, carol, dave} {
		if got := groupMessages(t, ss[node(u)], u); !slices.Equal(got, []uint64{10}) {
			t.Fatalf("user %d's mailbox holds group messages %v, want [10]", u, got)
		}
	}
	if got := groupMessages(t, ss[0], alice); len(got) != 0 {
		t.Fatalf("the sender's own mailbox holds %v", got)
	}
	waitFor(t, "carol's live copy", func() bool { return len(conns[carol].items(delivery.OutEntry)) == 2 })

	// The resend with flag B: ACCEPTed again, no second copy anywhere.
	wantAccept(t, sendGroup(alice, 10), 0)
	for _, u := range []uint64{bob, carol, dave} {
		if got := groupMessages(t, ss[node(u)], u); !slices.Equal(got, []uint64{10}) {
			t.Fatalf("after the resend user %d holds %v, want [10]", u, got)
		}
	}

	// carol acknowledges: her delivered receipt reaches alice on node 1.
	if !rs[node(carol)].Ack(conns[carol].s(), delivery.To(carol), 2) {
		t.Fatal("ack busy")
	}
	waitFor(t, "the receipt in alice's session", func() bool {
		for _, o := range conns[alice].items(delivery.OutEntry) {
			if x, err := protocol.ParseRecord(o.Record); err == nil && x.Type == protocol.TypeReceipt {
				return true
			}
		}
		return false
	})

	// A signal from dave (node 1) reaches bob on node 2 and carol on node 3.
	rs[node(dave)].SignalGroup(delivery.To(dave), group, protocol.SignalTyping)
	waitFor(t, "the group signal on nodes 2 and 3", func() bool {
		return len(conns[bob].items(delivery.OutSignal)) == 1 && len(conns[carol].items(delivery.OutSignal)) == 1
	})
	if got := conns[bob].items(delivery.OutSignal)[0]; got.Peer != dave || got.Ref != group {
		t.Fatalf("bob got signal %+v, want one from dave in the group", got)
	}

	// bob's node is down: bob's copy cannot be stored, so the message is
	// refused, retryably; once it is back, the resend stores bob's copy
	// only.
	c.set(c.down, 2, true)
	got = sendGroup(carol, 11)
	wantRefuse(t, got, protocol.CodeRetryLater)
	if got.RetryAfter < 1000 || got.RetryAfter > 2000 || got.Reason != "a member's home node is unreachable" {
		t.Fatalf("refusal %+v, want a retry_after in [1000, 2000] ms and the reason", got)
	}
	// Handing over to a new process: the resend is due within half a
	// second.
	c.set(c.leaving, 2, true)
	got = sendGroup(carol, 11)
	wantRefuse(t, got, protocol.CodeRetryLater)
	if got.RetryAfter < 250 || got.RetryAfter > 500 || got.Reason != "a member's home node is handing over to a new process" {
		t.Fatalf("refusal %+v, want a retry_after in [250, 500] ms and the reason", got)
	}
	c.set(c.leaving, 2, false)
	c.set(c.down, 2, false)
	wantAccept(t, sendGroup(carol, 11), 0)
	for _, u := range []uint64{alice, bob, dave} {
		if got := groupMessages(t, ss[node(u)], u); !slices.Equal(got[len(got)-1:], []uint64{11}) || len(got) != map[bool]int{true: 1, false: 2}[u == alice] {
			t.Fatalf("user %d holds group messages %v, want 11 once, last", u, got)
		}
	}

	// A change through a node other than the group's home: bob removes
	// nobody he may not; dave leaves through node 1.
	got = groupOp(t, rs[node(dave)], conns[dave], dave, 20, protocol.GroupLeave, group)
	wantAccept(t, got, group)
	if ms := members(t, ss[2], group); len(ms) != 3 {
		t.Fatalf("the group has %d members after dave left, want 3", len(ms))
	}
	wantRefuse(t, sendGroup(dave, 21), protocol.CodeNotMember)
}

// TestForwardLostWithARestartedHome: SENDs lost in transit to a home that
// then restarts are refused (retryable) as soon as the sender's next SEND
// to that home goes, in msg_id order, and that next one is refused too, so
// the session sends them all again in msg_id order and a later one is
// never stored before an earlier. A SEND meant for the home's previous
// process is refused by the new one; a pending one the session never
// follows up is refused at its deadline, saying the home restarted.
func TestForwardLostWithARestartedHome(t *testing.T) {
	c, rs, ss := newCluster(t, 2, time.Now)
	n2 := rs[1]
	const alice, bob = 1, 2 // alice on node 2, bob on node 1
	const lost = 32         // enough that an unsorted refusal order shows
	a := newFake()
	login(t, n2, a, alice, 0)

	c.set(c.deaf, 1, true) // node 1 dies with msgs 1 to 32 in hand
	for id := uint64(1); id <= lost; id++ {
		send(t, n2, a, alice, id, bob)
	}
	c.mu.Lock()
	c.inst[1]++ // and comes back as a new process
	c.mu.Unlock()
	c.set(c.deaf, 1, false)
	send(t, n2, a, alice, lost+1, bob)
	refused := a.items(delivery.OutRefuse)
	if len(refused) != lost+1 {
		t.Fatalf("%d refusals, want msgs 1 to %d refused at once", len(refused), lost+1)
	}
	for i, r := range refused {
		if r.MsgID != uint64(i+1) || r.Code != protocol.CodeRetryLater || r.RetryAfter == 0 || r.Reason != "the recipient's home node restarted" {
			t.Fatalf("refusal %d: %+v, want RETRY_LATER of msg %d (in msg_id order), saying the home restarted", i, r, i+1)
		}
	}
	// Sent again in order, they are stored in order.
	sendAllInOrder(t, n2, a, alice, bob, ss[0], lost+1)

	// A pending one the session does not follow up is refused at its
	// deadline (a second here), saying the home restarted.
	c.set(c.deaf, 1, true)
	send(t, n2, a, alice, lost+2, bob)
	c.mu.Lock()
	c.inst[1]++
	c.mu.Unlock()
	n2.Tick()
	waitFor(t, "the refusal of the last msg", func() bool { return len(a.items(delivery.OutRefuse)) == lost+2 })
	if r := a.items(delivery.OutRefuse)[lost+1]; r.MsgID != lost+2 || r.Code != protocol.CodeRetryLater || r.Reason != "the recipient's home node restarted" {
		t.Fatalf("refusal %+v, want RETRY_LATER of msg %d, saying the home restarted", r, lost+2)
	}
	if p, rt := n2.Forwarding(); p != 0 || rt != 0 {
		t.Fatalf("node 2 still tracks %d forwarded SENDs over %d routes, all answered or refused", p, rt)
	}
}

// TestGroupFanoutTimesOut: a member's home node that takes a fan-out and
// never answers fails the message retryably after the peer timeout, on the
// group home's tick; a home that restarted meanwhile fails it at once on
// the tick, and the fan-outs it tracks are all answered or failed.
func TestGroupFanoutTimesOut(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	c, rs, _ := newCluster(t, 2, clock)
	const alice, bob = 2, 1 // alice on node 1, bob on node 2
	a := newFake()
	login(t, rs[0], a, alice, 0)
	var create, group uint64
	for id := uint64(1); ; id++ {
		if g := delivery.GroupID(alice, id); g%2 == 0 { // homed on node 1, alice's
			create, group = id, g
			break
		}
	}
	wantAccept(t, groupOp(t, rs[0], a, alice, create, protocol.GroupCreate, 0, bob), group)

	c.set(c.deaf, 2, true)
	sendTo := func(msgID uint64) {
		t.Helper()
		a.reset()
		if !rs[0].Send(a.s(), delivery.Message{From: delivery.To(alice), To: group, Group: true, MsgID: msgID, Retry: true, Record: record(alice, msgID, "x")}) {
			t.Fatal("group Send busy")
		}
		waitFor(t, "the fan-out to node 2", func() bool { return rs[0].Fanning() == 1 })
	}
	sendTo(5)
	rs[0].Tick()
	if n := len(a.items(delivery.OutRefuse)) + len(a.items(delivery.OutAccept)); n != 0 {
		t.Fatalf("%d answers before the timeout, want none", n)
	}
	now.Add(int64(time.Second))
	rs[0].Tick()
	got := answer(t, a, 5)
	wantRefuse(t, got, protocol.CodeRetryLater)
	if got.Reason != "a member's home node did not answer" {
		t.Fatalf("reason %q", got.Reason)
	}

	sendTo(6)
	c.mu.Lock()
	c.inst[2]++
	c.mu.Unlock()
	rs[0].Tick()
	got = answer(t, a, 6)
	wantRefuse(t, got, protocol.CodeRetryLater)
	if got.Reason != "a member's home node restarted" {
		t.Fatalf("reason %q", got.Reason)
	}
	if n := rs[0].Fanning(); n != 0 {
		t.Fatalf("node 1 still tracks %d fan-outs", n)
	}
}

// FuzzFromPeer: whatever another node sends, FromPeer never panics and
// never takes a payload that does not decode; a malformed one is counted.
func FuzzFromPeer(f *testing.F) {
	for _, seed := range [][]byte{
		{1, 1, 1, 1, 2, 3, 0, 'x'},
		{2, 1, 1, 7, 0, 0, 0},
		{7, 1, 1, 3, 9, 1 << 7, 1, 1, 2, 4, 5, 'r'},
		{8, 1, 1, 12, 3, 9, 0, 2, 1, 2, 'r'},
		{9, 1, 0, 0},
		{9, 1, 200, 1, 0},
		{8, 1, 1, 12, 3, 9, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		f.Add(seed)
	}
	_, rs, _ := newCluster(f, 2, time.Now)
	f.Fuzz(func(t *testing.T, payload []byte) {
		rs[0].FromPeer(2, payload)
	})
}

// sendAllInOrder sends from's msgs 1 to n to user to through r, waits for
// n ACCEPTs on a, and checks that to's mailbox in store holds exactly
// those n, in msg_id order.
func sendAllInOrder(t *testing.T, r *delivery.Router, a *fakeConn, from, to uint64, store storage.Store, n int) {
	t.Helper()
	for id := uint64(1); id <= uint64(n); id++ {
		send(t, r, a, from, id, to)
	}
	waitFor(t, "every ACCEPT", func() bool { return len(a.items(delivery.OutAccept)) == n })
	page, _, err := store.Read(to, 1, 2*n, 0, nil)
	if err != nil || len(page) != n {
		t.Fatalf("user %d's mailbox holds %d entries (%v), want %d", to, len(page), err, n)
	}
	for i, e := range page {
		if e.MsgID != uint64(i+1) {
			t.Fatalf("user %d's entry %d is msg %d, want %d: stored out of order", to, i, e.MsgID, i+1)
		}
	}
}

// TestRestartHeardFromTheHome: the home restarted and the sender's node
// has not heard it yet, so the session's next SEND goes tagged for the old
// process and the new one refuses it. The SENDs still pending with the old
// process (lost with it) are refused first, in msg_id order, then the new
// one, once each: the session resends them in msg_id order and the
// recipient reads them in order.
func TestRestartHeardFromTheHome(t *testing.T) {
	c, rs, ss := newCluster(t, 2, time.Now)
	n2 := rs[1]
	const alice, bob = 1, 2 // alice on node 2, bob on node 1
	const lost = 32         // enough that an unsorted refusal order shows
	a := newFake()
	login(t, n2, a, alice, 0)

	c.set(c.deaf, 1, true) // node 1 dies with msgs 1 to 32 in hand
	for id := uint64(1); id <= lost; id++ {
		send(t, n2, a, alice, id, bob)
	}
	c.mu.Lock()
	c.inst[1]++       // and comes back as a new process
	c.stale[2] = true // which node 2 has not heard from yet
	c.mu.Unlock()
	c.set(c.deaf, 1, false)
	send(t, n2, a, alice, lost+1, bob)
	waitFor(t, "the refusals", func() bool { return len(a.items(delivery.OutRefuse)) == lost+1 })
	for i, r := range a.items(delivery.OutRefuse) {
		if r.MsgID != uint64(i+1) || r.Code != protocol.CodeRetryLater {
			t.Fatalf("refusal %d: %+v, want RETRY_LATER of msg %d (in msg_id order)", i, r, i+1)
		}
	}
	c.mu.Lock()
	c.stale[2] = false
	c.mu.Unlock()
	sendAllInOrder(t, n2, a, alice, bob, ss[0], lost+1)
	if n := len(a.items(delivery.OutRefuse)); n != lost+1 {
		t.Fatalf("%d refusals, want %d: one per SEND", n, lost+1)
	}
}

// TestRefuseAwaiting: a node handing its connections over refuses what
// other nodes have not answered, forwarded SENDs and the parts of group
// fan-outs alike, retryable within half a second and in msg_id order,
// since no answer can reach it once it leaves the cluster.
func TestRefuseAwaiting(t *testing.T) {
	c, rs, _ := newCluster(t, 2, time.Now)
	n2 := rs[1]
	const alice, bob = 1, 2 // alice homed on node 2, bob on node 1
	const sends = 16        // enough that an unsorted refusal order shows
	a := newFake()
	login(t, n2, a, alice, 0)
	group := createGroupOn(t, n2, a, alice, 2, 2, bob) // homed on node 2, bob's copies on node 1
	a.reset()
	c.set(c.deaf, 1, true)
	for id := uint64(1); id <= sends; id++ {
		send(t, n2, a, alice, id, bob)
	}
	groupSend(t, n2, a, alice, group, sends+1)
	waitFor(t, "the forwarded SENDs and a fan-out part awaiting", func() bool { return n2.Awaiting() == sends+1 })
	n2.RefuseAwaiting()
	if n2.Awaiting() != 0 {
		t.Fatalf("%d still awaiting", n2.Awaiting())
	}
	refused := a.items(delivery.OutRefuse)
	if len(refused) != sends+1 {
		t.Fatalf("%d refusals, want %d", len(refused), sends+1)
	}
	for i, r := range refused {
		if r.MsgID != uint64(i+1) || r.Code != protocol.CodeRetryLater || r.RetryAfter < 250 || r.RetryAfter > 500 || !strings.Contains(r.Reason, "handing") {
			t.Fatalf("refusal %d: %+v, want RETRY_LATER of msg %d (in msg_id order) with a retry_after in [250, 500] ms (the successor takes the connection), saying why", i, r, i+1)
		}
	}
	if n := len(a.items(delivery.OutAccept)); n != 0 {
		t.Fatalf("%d ACCEPTs, want none", n)
	}
}

// storedReceipts decodes the RECEIPT entries in user's mailbox in store,
// in seq order.
func storedReceipts(t *testing.T, store storage.Store, user uint64) []protocol.Receipt {
	t.Helper()
	page, _, err := store.Read(user, 1, 100, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []protocol.Receipt
	for _, e := range page {
		if e.Kind != storage.KindReceipt {
			continue
		}
		f, err := protocol.ParseRecord(e.Value)
		if err != nil || f.Type != protocol.TypeReceipt {
			t.Fatalf("entry %d: receipt record %x: %v", e.Seq, e.Value, err)
		}
		g, _, err := protocol.ReadFrame(protocol.AppendRecordFrame(nil, f, e.Seq), protocol.MaxServerFrame)
		var x protocol.Receipt
		if err != nil || x.Decode(g) != nil {
			t.Fatalf("entry %d: receipt record %x: %v", e.Seq, e.Value, err)
		}
		out = append(out, x)
	}
	return out
}

// TestReadReceiptAcrossNodes: bob (node 1) acknowledges alice's (node 2)
// message, then reads it: alice's mailbox on node 2 holds the delivered
// receipt and then a read receipt, its read flag kept across the nodes,
// naming bob.
func TestReadReceiptAcrossNodes(t *testing.T) {
	n1, n2, ss, a, b := acrossNodes(t)
	const alice, bob = 1, 2 // alice homed on node 2, bob on node 1

	send(t, n2, a, alice, 7, bob)
	waitFor(t, "the delivery on bob's node", func() bool { return len(b.items(delivery.OutEntry)) == 1 })
	if !n1.Ack(b.s(), delivery.To(bob), 1) {
		t.Fatal("ack busy")
	}
	waitFor(t, "the delivered receipt in alice's mailbox", func() bool { return len(storedReceipts(t, ss[1], alice)) == 1 })
	if err := n1.Read(delivery.ReadReceipt{Reader: delivery.To(bob), Sender: delivery.To(alice), MsgID: 7}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the read receipt in alice's mailbox", func() bool { return len(storedReceipts(t, ss[1], alice)) == 2 })
	got := storedReceipts(t, ss[1], alice)
	if d := got[0]; d.Read || d.MsgID != 7 || d.More != 0 {
		t.Errorf("first receipt %+v, want delivered of msg 7", d)
	}
	if r := got[1]; !r.Read || r.MsgID != 7 || r.More != 0 || r.By != bob || r.Expired {
		t.Errorf("second receipt %+v, want read of msg 7 by %d: a forwarded READ lost its read flag", r, bob)
	}
}

// TestReceiptRunAcrossNodes: bob (node 1) acknowledges alice's (node 2)
// three messages at once: the receipts in alice's mailbox on node 2 cover
// all three msg ids, not only the first of the run.
func TestReceiptRunAcrossNodes(t *testing.T) {
	n1, n2, ss, a, b := acrossNodes(t)
	const alice, bob = 1, 2 // alice homed on node 2, bob on node 1

	for id := uint64(1); id <= 3; id++ {
		send(t, n2, a, alice, id, bob)
		waitFor(t, "the ACCEPT", func() bool { return len(a.items(delivery.OutAccept)) == int(id) })
	}
	waitFor(t, "the deliveries on bob's node", func() bool { return len(b.items(delivery.OutEntry)) == 3 })
	if !n1.Ack(b.s(), delivery.To(bob), 3) {
		t.Fatal("ack busy")
	}
	waitFor(t, "a receipt in alice's mailbox, none pending on bob's node", func() bool {
		return len(storedReceipts(t, ss[1], alice)) > 0 && noPending(ss[0])
	})
	covered := map[uint64]int{}
	got := storedReceipts(t, ss[1], alice)
	for _, x := range got {
		if x.Read || x.Expired {
			t.Fatalf("receipt %+v, want delivered ones only", x)
		}
		for id := x.MsgID; id <= x.MsgID+x.More; id++ {
			covered[id]++
		}
	}
	for id := uint64(1); id <= 3; id++ {
		if covered[id] != 1 {
			t.Errorf("msg %d covered by %d receipts in alice's mailbox (%+v), want 1", id, covered[id], got)
		}
	}
	if len(covered) != 3 {
		t.Errorf("receipts %+v cover %d msg ids, want 1..3", got, len(covered))
	}
}

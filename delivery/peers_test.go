package delivery_test

import (
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
	mu     sync.Mutex
	nodes  map[uint32]*delivery.Router
	queues map[uint32]chan peerMsg
	down   map[uint32]bool
	deaf   map[uint32]bool
	inst   map[uint32]uint64 // a node's process instance; a restart changes it
	sent   atomic.Int64
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
	return p.c.inst[node] + 1
}

func (p fakePeer) Send(node uint32, payload []byte) bool {
	p.c.mu.Lock()
	q, down, deaf := p.c.queues[node], p.c.down[node], p.c.deaf[node]
	p.c.mu.Unlock()
	if down || q == nil {
		return false
	}
	p.c.sent.Add(1)
	if !deaf {
		q <- peerMsg{from: p.self, payload: append([]byte(nil), payload...)}
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
func newCluster(t *testing.T, n int, clock func() time.Time) (*fakeCluster, []*delivery.Router, []storage.Store) {
	t.Helper()
	c := &fakeCluster{nodes: map[uint32]*delivery.Router{}, queues: map[uint32]chan peerMsg{}, down: map[uint32]bool{}, deaf: map[uint32]bool{}, inst: map[uint32]uint64{}}
	var rs []*delivery.Router
	var ss []storage.Store
	for i := range n {
		c.queues[uint32(i+1)] = make(chan peerMsg, 1024)
	}
	for i := range n {
		node := uint32(i + 1)
		store, err := storage.NewMemory(storage.Config{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := delivery.New(delivery.Config{Shards: 2, Now: clock}, store)
		if err != nil {
			t.Fatal(err)
		}
		r.Join(fakePeer{c: c, self: node}, time.Second)
		r.Start(sessions)
		c.nodes[node] = r
		q := c.queues[node]
		done := make(chan struct{})
		go func() {
			defer close(done)
			for m := range q {
				r.FromPeer(m.from, m.payload)
			}
		}()
		t.Cleanup(func() {
			close(q)
			<-done
			r.Stop()
			store.Close()
		})
		rs = append(rs, r)
		ss = append(ss, store)
	}
	return c, rs, ss
}

// TestSendAcrossNodes: user 1 (homed on node 2) sends to user 2 (homed on
// node 1) through node 2: the SEND goes to node 1, which stores it and
// delivers it to user 2's session there, and the ACCEPT comes back to
// user 1's session on node 2. When user 2 acknowledges, the delivered
// receipt goes to user 1's mailbox on node 2, and node 1's pending receipt
// is settled. A retry with flag B is deduplicated on the home node.
func TestSendAcrossNodes(t *testing.T) {
	_, rs, ss := newCluster(t, 2, time.Now)
	n1, n2 := rs[0], rs[1]
	const alice, bob = 1, 2 // alice homed on node 2, bob on node 1
	a, b := newFake(), newFake()
	login(t, n2, a, alice, 0)
	login(t, n1, b, bob, 0)

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

// TestSendToADownNode: a SEND whose recipient's home node is down is
// refused at once, retryable, and nothing is stored anywhere; a SEND whose
// home node took it and never answered is refused retryable after the
// timeout, on the next tick.
func TestSendToADownNode(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	c, rs, ss := newCluster(t, 2, clock)
	n2 := rs[1]
	const alice, bob = 1, 2
	a := newFake()
	login(t, n2, a, alice, 0)

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

// TestLoginAwayFromHomeRefused: a mailbox is served only by its home: a
// login of a user homed elsewhere is refused (the gateway redirects it
// before it gets here), so ownership never splits.
func TestLoginAwayFromHomeRefused(t *testing.T) {
	_, rs, _ := newCluster(t, 2, time.Now)
	if rs[0].Login(newFake().s(), delivery.To(1), 0) {
		t.Fatal("node 1 took the login of user 1, homed on node 2")
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

// TestGroupSpanningNodesRefused: groups do not span nodes yet: creating
// one with a member homed on another node, or sending to one, is refused
// for good (FORBIDDEN, retry_after 0) before anything is stored; a group
// whose members are all homed on the node works as on one host.
func TestGroupSpanningNodesRefused(t *testing.T) {
	_, rs, ss := newCluster(t, 2, time.Now)
	n1 := rs[0]
	const bob, carol, alice = 2, 4, 1 // bob and carol on node 1, alice on node 2
	b := newFake()
	login(t, n1, b, bob, 0)

	if !n1.GroupOp(b.s(), delivery.To(bob), &protocol.Group{MsgID: 1, Op: protocol.GroupCreate, Members: []uint64{carol, alice}}) {
		t.Fatal("GroupOp busy")
	}
	waitFor(t, "the refusal", func() bool { return len(b.items(delivery.OutRefuse)) == 1 })
	if got := b.items(delivery.OutRefuse)[0]; got.Code != protocol.CodeForbidden || got.RetryAfter != 0 || got.MsgID != 1 {
		t.Fatalf("refusal %+v, want FORBIDDEN for good", got)
	}
	if gs, err := ss[0].Groups(carol); err != nil || len(gs) != 0 {
		t.Fatalf("carol is in %v (%v) after a refused create, want none", gs, err)
	}
	if n1.Stats().GroupsSpanning.Load() != 1 {
		t.Fatalf("GroupsSpanning %d, want 1", n1.Stats().GroupsSpanning.Load())
	}

	if !n1.GroupOp(b.s(), delivery.To(bob), &protocol.Group{MsgID: 2, Op: protocol.GroupCreate, Members: []uint64{carol}}) {
		t.Fatal("GroupOp busy")
	}
	waitFor(t, "the ACCEPT of a group on one node", func() bool { return len(b.items(delivery.OutAccept)) == 1 })
}

// TestForwardLostWithARestartedHome: a SEND lost in transit to a home that
// then restarts is refused (retryable) as soon as the sender's next SEND
// to that home goes, and that next one is refused too, so the session
// sends both again in msg_id order and the later is never stored before
// the earlier. A SEND meant for the home's previous process is refused by
// the new one; pending ones are refused on the tick once the restart is
// heard.
func TestForwardLostWithARestartedHome(t *testing.T) {
	c, rs, ss := newCluster(t, 2, time.Now)
	n2 := rs[1]
	const alice, bob = 1, 2 // alice on node 2, bob on node 1
	a := newFake()
	login(t, n2, a, alice, 0)

	c.set(c.deaf, 1, true) // node 1 dies with msg 1 in hand
	send(t, n2, a, alice, 1, bob)
	c.mu.Lock()
	c.inst[1]++ // and comes back as a new process
	c.mu.Unlock()
	c.set(c.deaf, 1, false)
	send(t, n2, a, alice, 2, bob)
	refused := a.items(delivery.OutRefuse)
	if len(refused) != 2 || refused[0].MsgID != 1 || refused[1].MsgID != 2 {
		t.Fatalf("refusals %+v, want msgs 1 and 2 refused at once", refused)
	}
	for _, r := range refused {
		if r.Code != protocol.CodeRetryLater || r.RetryAfter == 0 {
			t.Fatalf("refusal %+v, want RETRY_LATER", r)
		}
	}
	// Sent again in order, both are stored in order.
	send(t, n2, a, alice, 1, bob)
	send(t, n2, a, alice, 2, bob)
	waitFor(t, "both ACCEPTs", func() bool { return len(a.items(delivery.OutAccept)) == 2 })
	page, _, err := ss[0].Read(bob, 1, 10, 0, nil)
	if err != nil || len(page) != 2 || page[0].MsgID != 1 || page[1].MsgID != 2 {
		t.Fatalf("bob's mailbox %+v (%v), want msgs 1 then 2", page, err)
	}

	// A pending one is refused on the tick once the restart is heard.
	c.set(c.deaf, 1, true)
	send(t, n2, a, alice, 3, bob)
	c.mu.Lock()
	c.inst[1]++
	c.mu.Unlock()
	n2.Tick()
	waitFor(t, "the refusal of msg 3", func() bool {
		r := a.items(delivery.OutRefuse)
		return len(r) == 3 && r[2].MsgID == 3
	})
	if p, rt := n2.Forwarding(); p != 0 || rt != 0 {
		t.Fatalf("node 2 still tracks %d forwarded SENDs over %d routes, all answered or refused", p, rt)
	}
}

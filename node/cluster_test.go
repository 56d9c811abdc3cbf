package node_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/client"
	"switchboard/cluster"
	"switchboard/handover"
	"switchboard/internal/testutil"
	"switchboard/node"
	"switchboard/protocol"
	"switchboard/token"
)

// testCluster is three nodes of one cluster in the test's process, each
// with its Badger store in its own folder and its embedded NATS server.
type testCluster struct {
	t      *testing.T
	secret []byte
	cfg    cluster.Config // Self unset
	dirs   []string
	mu     sync.Mutex
	nodes  []*node.Node // index i is node i+1; nil while stopped
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	secret := make([]byte, token.SecretLen)
	for i := range secret {
		secret[i] = byte(i*11 + 7)
	}
	a := testutil.FreeAddrs(t, 9)
	tc := &testCluster{t: t, secret: secret, nodes: make([]*node.Node, 3)}
	tc.cfg = cluster.Config{Name: "test"}
	for i := range 3 {
		tc.cfg.Nodes = append(tc.cfg.Nodes, cluster.NodeAddr{ID: uint32(i + 1), Client: a[3*i], Route: a[3*i+1], NATS: a[3*i+2]})
		tc.dirs = append(tc.dirs, t.TempDir())
	}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { tc.start(i + 1) })
	}
	wg.Wait()
	t.Cleanup(func() {
		for i := range 3 {
			tc.stop(i + 1)
		}
	})
	return tc
}

// start starts node id on its folder and addresses, retrying while a port
// of its previous run is still held.
func (tc *testCluster) start(id int) {
	cfg := node.Default()
	cfg.Data = tc.dirs[id-1]
	cfg.Metrics = ""
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Gateway.Addr = tc.cfg.Nodes[id-1].Client
	cfg.Gateway.Loops = 1
	cfg.Gateway.Keys = token.Keys{1: tc.secret}
	cfg.Gateway.GoAwayAfter = 10 * time.Millisecond
	cfg.Delivery.Shards = 2
	cfg.Cluster = tc.cfg
	cfg.Cluster.Self = uint32(id)
	var n *node.Node
	var err error
	testutil.Eventually(tc.t, 10*time.Second, fmt.Sprintf("node %d to start", id), func() bool {
		n, err = node.Start(cfg)
		return err == nil
	}, func() string { return err.Error() })
	tc.mu.Lock()
	tc.nodes[id-1] = n
	tc.mu.Unlock()
}

func (tc *testCluster) stop(id int) {
	tc.mu.Lock()
	n := tc.nodes[id-1]
	tc.nodes[id-1] = nil
	tc.mu.Unlock()
	if n != nil {
		n.Stop(context.Background())
	}
}

func (tc *testCluster) node(id uint32) *node.Node {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.nodes[id-1]
}

// userHomedOn returns a user id, from start up, homed on node id.
func (tc *testCluster) userHomedOn(id uint32, start uint64) uint64 {
	for u := start; ; u++ {
		if tc.cfg.Home(u) == id {
			return u
		}
	}
}

// dial logs user in through node via (its home may be another: the login
// is then redirected there).
func (tc *testCluster) dial(ctx context.Context, user uint64, via uint32) *client.Conn {
	tc.t.Helper()
	tok := func(context.Context) ([]byte, error) {
		return token.Mint(tc.secret, token.Claims{KeyID: 1, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)}), nil
	}
	c, err := client.Dial(ctx, tc.cfg.Nodes[via-1].Client, client.Options{Token: tok, Session: client.Config{MaxBackoff: 500 * time.Millisecond}})
	if err != nil {
		tc.t.Fatalf("user %d via node %d: %v", user, via, err)
	}
	tc.t.Cleanup(func() { c.Close() })
	return c
}

// takeOver starts a successor of node id with --takeover, waits until the
// old process has ended, and puts the successor in its place.
func (tc *testCluster) takeOver(id uint32) *node.Node {
	tc.t.Helper()
	old := tc.node(id)
	cfg := old.Config()
	cfg.Takeover = true
	n, err := node.Start(cfg)
	if err != nil {
		tc.t.Fatalf("takeover of node %d: %v", id, err)
	}
	<-old.Done()
	tc.mu.Lock()
	tc.nodes[id-1] = n
	tc.mu.Unlock()
	return n
}

// next returns c's next event of type T, skipping the others.
func next[T any](t *testing.T, ctx context.Context, c *client.Conn) T {
	t.Helper()
	for {
		ev, err := c.Recv(ctx)
		if err != nil {
			var zero T
			t.Fatalf("waiting for %T: %v", zero, err)
		}
		if x, ok := ev.(T); ok {
			return x
		}
	}
}

// TestClusterOfThree: three nodes over embedded NATS, real Badger. Alice
// (homed on node 1) logs in through node 3 and is redirected home; her
// message to Bob (homed on node 2, offline) is ACCEPTed once node 2 stored
// it; Bob, logging in through node 1, is redirected home and gets it; his
// ACK sends the delivered receipt to Alice across nodes; a reply goes the
// other way. With node 2 stopped, a message to Bob is refused retryable,
// then ACCEPTed and delivered once node 2 is back.
func TestClusterOfThree(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes with their NATS servers")
	}
	tc := newTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := tc.userHomedOn(1, 1000)
	bob := tc.userHomedOn(2, 2000)

	a := tc.dial(ctx, alice, 3)
	if got := tc.node(1).Gateway().Stats().Logins.Load(); got != 1 {
		t.Fatalf("node 1 logged in %d users, want alice, redirected there from node 3", got)
	}
	id, err := a.Send(bob, false, []byte("hello bob"))
	if err != nil {
		t.Fatal(err)
	}
	if acc := next[*protocol.Accept](t, ctx, a); acc.MsgID != id {
		t.Fatalf("ACCEPT of %d, want %d", acc.MsgID, id)
	}
	if page, _, err := tc.node(2).Store().Read(bob, 1, 10, 0, nil); err != nil || len(page) != 1 {
		t.Fatalf("bob's mailbox on node 2 holds %d entries (%v), want the message", len(page), err)
	}

	b := tc.dial(ctx, bob, 1)
	d := next[*protocol.Deliver](t, ctx, b)
	if d.From != alice || d.MsgID != id || string(d.Body) != "hello bob" {
		t.Fatalf("bob got %+v, want alice's message %d", d, id)
	}
	if got := tc.node(2).Gateway().Stats().Logins.Load(); got != 1 {
		t.Fatalf("node 2 logged in %d users, want bob", got)
	}
	if r := next[*protocol.Receipt](t, ctx, a); r.MsgID != id || r.Read {
		t.Fatalf("alice got receipt %+v, want delivered for %d", r, id)
	}

	reply, err := b.Send(alice, false, []byte("hello alice"))
	if err != nil {
		t.Fatal(err)
	}
	if d := next[*protocol.Deliver](t, ctx, a); d.From != bob || d.MsgID != reply || string(d.Body) != "hello alice" {
		t.Fatalf("alice got %+v, want bob's reply", d)
	}

	// Node 2 stops: bob's mailbox waits for it.
	tc.stop(2)
	testutil.Eventually(t, 10*time.Second, "node 1 to see node 2 down", func() bool { return !tc.node(1).Cluster().Up(2) })
	id2, err := a.Send(bob, false, []byte("while you were away"))
	if err != nil {
		t.Fatal(err)
	}
	if ref := next[*protocol.Refuse](t, ctx, a); ref.MsgID != id2 || ref.Code != protocol.CodeRetryLater || ref.RetryAfter == 0 {
		t.Fatalf("refusal %+v, want RETRY_LATER of %d", ref, id2)
	}
	tc.start(2)
	if acc := next[*protocol.Accept](t, ctx, a); acc.MsgID != id2 {
		t.Fatalf("ACCEPT of %d after node 2 came back, want %d", acc.MsgID, id2)
	}
	if d := next[*protocol.Deliver](t, ctx, b); d.MsgID != id2 || string(d.Body) != "while you were away" {
		t.Fatalf("bob got %+v after node 2 came back, want %d", d, id2)
	}
}

// TestClusterGroupAcrossThree: a group whose three members are homed on
// the three nodes, over real NATS and Badger. Alice creates it; every
// member gets the GROUP_EVENT from their own home; Bob's message reaches
// Alice and Carol once, with a delivered receipt back to Bob for each;
// Carol's typing signal reaches Alice and Bob; Alice's read receipt
// reaches Bob; a message sent while Carol's node is down is refused
// retryably and, once the node is back, resent and delivered to each
// member once.
func TestClusterGroupAcrossThree(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes with their NATS servers")
	}
	tc := newTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice, bob, carol := tc.userHomedOn(1, 1000), tc.userHomedOn(2, 2000), tc.userHomedOn(3, 3000)
	a, b, c := tc.dial(ctx, alice, 1), tc.dial(ctx, bob, 2), tc.dial(ctx, carol, 3)

	create, err := a.Group(protocol.GroupCreate, 0, bob, carol)
	if err != nil {
		t.Fatal(err)
	}
	// Alice's own copy of the event may come before her ACCEPT.
	var acc *protocol.Accept
	var created *protocol.GroupEvent
	for acc == nil || created == nil {
		ev, err := a.Recv(ctx)
		if err != nil {
			t.Fatalf("waiting for the create's ACCEPT and event: %v", err)
		}
		switch x := ev.(type) {
		case *protocol.Accept:
			acc = x
		case *protocol.GroupEvent:
			created = x
		}
	}
	group := acc.Ref
	if acc.MsgID != create || group == 0 || created.Group != group {
		t.Fatalf("ACCEPT %+v and event %+v, want the create's %d with the group", acc, created, create)
	}
	for _, x := range []*client.Conn{b, c} {
		if ev := next[*protocol.GroupEvent](t, ctx, x); ev.Group != group || ev.Op != protocol.GroupCreate || ev.Actor != alice {
			t.Fatalf("event %+v, want alice's create of %d", ev, group)
		}
	}

	id, err := b.Send(group, true, []byte("to all"))
	if err != nil {
		t.Fatal(err)
	}
	if acc := next[*protocol.Accept](t, ctx, b); acc.MsgID != id {
		t.Fatalf("ACCEPT of %d, want %d", acc.MsgID, id)
	}
	for _, x := range []*client.Conn{a, c} {
		if d := next[*protocol.Deliver](t, ctx, x); d.From != bob || d.Group != group || d.MsgID != id || string(d.Body) != "to all" {
			t.Fatalf("got %+v, want bob's group message %d", d, id)
		}
	}
	by := map[uint64]bool{}
	for len(by) < 2 {
		r := next[*protocol.Receipt](t, ctx, b)
		if r.MsgID != id || r.Read {
			t.Fatalf("bob got receipt %+v, want delivered for %d", r, id)
		}
		by[r.By] = true
	}
	if !by[alice] || !by[carol] {
		t.Fatalf("delivered receipts by %v, want alice and carol", by)
	}

	if err := c.Signal(0, group, protocol.SignalTyping); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*client.Conn{a, b} {
		if s := next[*protocol.Signal](t, ctx, x); s.Peer != carol || s.Group != group || s.Kind != protocol.SignalTyping {
			t.Fatalf("signal %+v, want carol typing in the group", s)
		}
	}
	if err := a.Read(bob, true, id, 0); err != nil {
		t.Fatal(err)
	}
	if r := next[*protocol.Receipt](t, ctx, b); r.MsgID != id || !r.Read || r.By != alice {
		t.Fatalf("bob got %+v, want alice's read receipt for %d", r, id)
	}

	// Carol's node stops: the next message cannot be durable in her
	// mailbox, so it is refused until the node is back.
	tc.stop(3)
	testutil.Eventually(t, 10*time.Second, "node 2 to see node 3 down", func() bool { return !tc.node(2).Cluster().Up(3) })
	id2, err := b.Send(group, true, []byte("carol away"))
	if err != nil {
		t.Fatal(err)
	}
	if ref := next[*protocol.Refuse](t, ctx, b); ref.MsgID != id2 || ref.Code != protocol.CodeRetryLater || ref.RetryAfter == 0 {
		t.Fatalf("refusal %+v, want RETRY_LATER of %d", ref, id2)
	}
	tc.start(3)
	if acc := next[*protocol.Accept](t, ctx, b); acc.MsgID != id2 {
		t.Fatalf("ACCEPT of %d after node 3 came back, want %d", acc.MsgID, id2)
	}
	for _, x := range []*client.Conn{a, c} {
		if d := next[*protocol.Deliver](t, ctx, x); d.MsgID != id2 || string(d.Body) != "carol away" {
			t.Fatalf("got %+v after node 3 came back, want %d", d, id2)
		}
	}
	for _, u := range []uint64{alice, carol} {
		page, _, err := tc.node(tc.cfg.Home(u)).Store().Read(u, 1, 100, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range page {
			if e.MsgID == id2 && e.Sender == bob {
				n++
			}
		}
		if n > 1 {
			t.Fatalf("user %d holds %d copies of %d", u, n, id2)
		}
	}
}

// TestClusterMismatchRefused: a node whose node list differs from the
// running nodes' refuses to start, saying so.
func TestClusterMismatchRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes with their NATS servers")
	}
	tc := newTestCluster(t)
	tc.stop(3)
	cfg := node.Default()
	cfg.Data = t.TempDir()
	cfg.Metrics = ""
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Gateway.Addr = tc.cfg.Nodes[2].Client
	cfg.Gateway.Keys = token.Keys{1: tc.secret}
	cfg.Cluster = tc.cfg
	cfg.Cluster.Self = 3
	cfg.Cluster.Nodes = append(cfg.Cluster.Nodes[:3:3], cluster.NodeAddr{ID: 4, Client: "127.0.0.1:1", Route: "127.0.0.1:2", NATS: "127.0.0.1:3"})
	var err error
	testutil.Eventually(t, 10*time.Second, "node 3's mismatched start to be refused", func() bool {
		var n *node.Node
		n, err = node.Start(cfg)
		if n != nil {
			n.Stop(context.Background())
		}
		return errors.Is(err, cluster.ErrMismatch)
	}, func() string { return fmt.Sprint(err) })
}

// TestClusterRollingTakeover: each node of a three-node cluster in turn is
// taken over by a new process, one at a time, while a user homed on each
// keeps a connection open. No user logs in again anywhere (each new node
// adopts its user's connection: Logins 0, Adopted 1), and messages between
// the three, across nodes, arrive after every step, with their receipts.
func TestClusterRollingTakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes with their NATS servers, then three more")
	}
	tc := newTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	users := []uint64{tc.userHomedOn(1, 1000), tc.userHomedOn(2, 2000), tc.userHomedOn(3, 3000)}
	conns := make([]*client.Conn, 3)
	for i, u := range users {
		conns[i] = tc.dial(ctx, u, uint32(i+1))
	}
	round := func(step int) {
		t.Helper()
		for i := range 3 {
			to := (i + 1) % 3
			body := fmt.Sprintf("step %d from %d", step, users[i])
			id, err := conns[i].Send(users[to], false, []byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if a := next[*protocol.Accept](t, ctx, conns[i]); a.MsgID != id {
				t.Fatalf("%s: ACCEPT %d, want %d", body, a.MsgID, id)
			}
			if d := next[*protocol.Deliver](t, ctx, conns[to]); string(d.Body) != body {
				t.Fatalf("got %q, want %q", d.Body, body)
			}
			if r := next[*protocol.Receipt](t, ctx, conns[i]); r.MsgID != id {
				t.Fatalf("%s: receipt for %d", body, r.MsgID)
			}
		}
	}
	round(0)
	for id := 1; id <= 3; id++ {
		n := tc.takeOver(uint32(id))
		round(id)
		if st := n.Gateway().Stats(); st.Logins.Load() != 0 || st.Adopted.Load() != 1 {
			t.Errorf("node %d after its takeover: %d logins, %d adopted; want 0 and 1", id, st.Logins.Load(), st.Adopted.Load())
		}
	}
}

// TestClusterTakeoverAnswersForwards: while alice, on node 1, sends to bob,
// homed on node 2, one message at a time, node 2 is taken over. Node 1
// hears node 2 leave and refuses her sends at once (retryable) until the
// successor is up, node 2 answers what was forwarded to it before it
// left, and the successor answers what is forwarded to it while it joins:
// no forward waits out node 1's timeout (it would be refused as "did not
// answer" or "restarted"), and bob gets every message once, in order.
func TestClusterTakeoverAnswersForwards(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes with their NATS servers, then a successor")
	}
	tc := newTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice, bob := tc.userHomedOn(1, 1000), tc.userHomedOn(2, 2000)
	a, b := tc.dial(ctx, alice, 1), tc.dial(ctx, bob, 2)

	var accepted atomic.Int64
	takenOver := make(chan struct{})
	sent := make(chan error, 1) // the sender's one result
	var bodies, refusals []string
	go func() {
		after := 0
		for i := 0; ; i++ {
			body := fmt.Sprintf("m%d", i)
			id, err := a.Send(bob, false, []byte(body))
			if err != nil {
				sent <- err
				return
			}
			bodies = append(bodies, body)
			for {
				ev, err := a.Recv(ctx)
				if err != nil {
					sent <- fmt.Errorf("waiting for the ACCEPT of %s: %w", body, err)
					return
				}
				if r, ok := ev.(*protocol.Refuse); ok {
					refusals = append(refusals, r.Reason)
				}
				if acc, ok := ev.(*protocol.Accept); ok && acc.MsgID == id {
					break
				}
			}
			accepted.Add(1)
			select {
			case <-takenOver:
				if after++; after == 5 {
					sent <- nil
					return
				}
			default:
			}
		}
	}()
	testutil.Eventually(t, 10*time.Second, "a few messages accepted", func() bool { return accepted.Load() >= 5 })
	tc.takeOver(2)
	close(takenOver)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	// A forward lost in the handover would be refused only after node 1's
	// timeout, as "did not answer" or, once the successor is heard,
	// "restarted"; a node heard leaving is only ever "handing over", and
	// is resent within half a second, so some resends reach the successor
	// while it still joins (its peers forward to it from its first
	// heartbeat).
	for _, r := range refusals {
		if strings.Contains(r, "did not answer") || strings.Contains(r, "restarted") {
			t.Errorf("alice's send was refused with %q: a forward waited out node 1's timeout (refusals: %q)", r, refusals)
		} else if !strings.Contains(r, "handing over") {
			t.Errorf("alice's send was refused with %q, want the home node handing over (refusals: %q)", r, refusals)
		}
	}
	if got := tc.node(1).Router().Stats().ForwardTimeouts.Load(); got != 0 {
		t.Errorf("%d forwards from node 1 timed out across node 2's takeover, want 0", got)
	}
	for i, want := range bodies {
		if d := next[*protocol.Deliver](t, ctx, b); string(d.Body) != want {
			t.Fatalf("bob's delivery %d: %q, want %q", i, d.Body, want)
		}
	}
}

// TestClusterTakeBack: a takeover of node 2 that fails before its commit
// (the successor refuses once node 2 closed its store) leaves node 2
// taking its connections back and rejoining the cluster: bob, homed on
// node 2, keeps his connection, and messages go both ways across nodes,
// with their receipts, as before.
func TestClusterTakeBack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes with their NATS servers")
	}
	tc := newTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice, bob := tc.userHomedOn(1, 1000), tc.userHomedOn(2, 2000)
	a, b := tc.dial(ctx, alice, 1), tc.dial(ctx, bob, 2)
	exchange := func(from, to *client.Conn, toUser uint64, body string) {
		t.Helper()
		id, err := from.Send(toUser, false, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		// Refused, retryable, while node 2 rejoins: the client resends.
		if acc := next[*protocol.Accept](t, ctx, from); acc.MsgID != id {
			t.Fatalf("%s: ACCEPT %d, want %d", body, acc.MsgID, id)
		}
		if d := next[*protocol.Deliver](t, ctx, to); string(d.Body) != body {
			t.Fatalf("got %q, want %q", d.Body, body)
		}
		if r := next[*protocol.Receipt](t, ctx, from); r.MsgID != id {
			t.Fatalf("%s: receipt for %d, want %d", body, r.MsgID, id)
		}
	}
	exchange(a, b, bob, "before")

	old := tc.node(2)
	ch, conns := node.SuccessorUntilClosed(t, old.Config().Data)
	if conns != 1 {
		t.Fatalf("node 2 handed over %d connections, want bob's", conns)
	}
	ch.Send(&handover.Message{Kind: handover.KindRefuse, Reason: "the test says no"})
	if m, err := ch.Recv(); err != nil || m.Kind != handover.KindRefuse {
		t.Fatalf("node 2's answer to the refusal: %v, %v; want REFUSE", m.Kind, err)
	}
	testutil.Eventually(t, 10*time.Second, "node 2 to serve again", func() bool {
		return old.Router() != nil && old.Gateway().Stats().Adopted.Load() == 1
	})
	select {
	case <-old.Done():
		t.Fatalf("node 2 stopped: %v", old.Err())
	default:
	}

	exchange(a, b, bob, "after, to bob")
	exchange(b, a, alice, "after, to alice")
	if got := old.Gateway().Stats().Logins.Load(); got != 1 {
		t.Errorf("node 2 saw %d logins, want bob's first one only: his connection was taken back", got)
	}
}

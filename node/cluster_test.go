package node_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"switchboard/client"
	"switchboard/cluster"
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

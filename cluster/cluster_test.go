package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"switchboard/delivery"
	"switchboard/internal/testutil"
)

// testConfigs returns the configuration of each of n nodes of one cluster
// on loopback, with the shipped timings.
func testConfigs(t *testing.T, n int) []Config {
	t.Helper()
	a := testutil.FreeAddrs(t, 3*n)
	var nodes []NodeAddr
	for i := range n {
		nodes = append(nodes, NodeAddr{ID: uint32(i + 1), Client: a[3*i], Route: a[3*i+1], NATS: a[3*i+2]})
	}
	cfgs := make([]Config, n)
	for i := range cfgs {
		cfgs[i] = Config{Name: "test", Self: uint32(i + 1), Nodes: slices.Clone(nodes), Keys: testKeys}
	}
	return cfgs
}

// testKeys are the token keys of the test clusters.
var testKeys = map[uint32][]byte{1: []byte("0123456789abcdef0123456789abcdef")}

// inbox records what a node's handler was given, per sender.
type inbox struct {
	mu  sync.Mutex
	got map[uint32][]string
	n   atomic.Int64
}

func newInbox() *inbox { return &inbox{got: map[uint32][]string{}} }

func (b *inbox) handle(from uint32, payload []byte) {
	b.mu.Lock()
	b.got[from] = append(b.got[from], string(payload))
	b.mu.Unlock()
	b.n.Add(1)
}

func (b *inbox) from(node uint32) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got[node])
}

// startAll starts every configuration at once (each Start waits for its
// peers) and closes them when the test ends.
func startAll(t *testing.T, cfgs []Config, handlers []func(uint32, []byte)) []*Cluster {
	t.Helper()
	cs := make([]*Cluster, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Go(func() { cs[i], errs[i] = Start(cfgs[i], handlers[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		t.Cleanup(func() { cs[i].Close() })
	}
	return cs
}

// allUp waits until every node sees every other one up.
func allUp(t *testing.T, cs []*Cluster) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, "every node up everywhere", func() bool {
		for _, c := range cs {
			for _, o := range cs {
				if !c.Up(o.Self()) {
					return false
				}
			}
		}
		return true
	})
}

// TestThreeNodes sends from each of three nodes to each (itself included)
// and checks that every payload arrives, exactly, in order per sender.
func TestThreeNodes(t *testing.T) {
	cfgs := testConfigs(t, 3)
	boxes := []*inbox{newInbox(), newInbox(), newInbox()}
	cs := startAll(t, cfgs, []func(uint32, []byte){boxes[0].handle, boxes[1].handle, boxes[2].handle})
	allUp(t, cs)

	const each = 200
	want := func(from, to uint32) []string {
		var w []string
		for i := range each {
			w = append(w, fmt.Sprintf("%d→%d #%d %s", from, to, i, strings.Repeat("x", i)))
		}
		return w
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			for i := range each {
				for to := uint32(1); to <= 3; to++ {
					if !c.Send(to, []byte(want(c.Self(), to)[i])) {
						t.Errorf("node %d: Send to %d refused", c.Self(), to)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for i, b := range boxes {
		testutil.Eventually(t, 10*time.Second, "every payload at node "+strconv.Itoa(i+1),
			func() bool { return b.n.Load() >= 3*each })
		to := uint32(i + 1)
		for from := uint32(1); from <= 3; from++ {
			if got := b.from(from); !slices.Equal(got, want(from, to)) {
				t.Errorf("node %d from %d: got %d payloads, want %d in order", to, from, len(got), each)
			}
		}
		if s := cs[i].Stats(); s.Received != 3*each || s.Dropped != 0 || s.Sent != 3*each || s.PeersDown != 0 {
			t.Errorf("node %d stats %+v", to, s)
		}
	}
	// The largest payload goes through; a byte more is refused, unsent.
	largest := []byte(strings.Repeat("L", maxPayload))
	if cs[0].Send(2, append(largest, 'L')) {
		t.Error("Send took a payload over maxPayload")
	}
	if !cs[0].Send(2, largest) {
		t.Fatal("Send refused a payload of maxPayload bytes")
	}
	testutil.Eventually(t, 10*time.Second, "the largest payload at node 2", func() bool {
		got := boxes[1].from(1)
		return len(got) == each+1 && got[each] == string(largest)
	})
	if got, want := cs[0].Addr(2), cfgs[0].Nodes[1].Client; got != want {
		t.Errorf("Addr(2) = %q, want %q", got, want)
	}
	// Every node names the same home for a mailbox: the configuration's.
	for id := uint64(1); id <= 64; id++ {
		for _, c := range cs {
			if got, want := c.Home(id), cfgs[0].Home(id); got != want {
				t.Fatalf("node %d: Home(%d) = %d, want %d", c.Self(), id, got, want)
			}
		}
	}
}

// TestDeadNode closes one node of three: the other two see it down within
// 3 s and refuse to send to it; restarted on the same ports, it is seen up
// again and reachable.
func TestDeadNode(t *testing.T) {
	cfgs := testConfigs(t, 3)
	boxes := []*inbox{newInbox(), newInbox(), newInbox()}
	cs := startAll(t, cfgs, []func(uint32, []byte){boxes[0].handle, boxes[1].handle, boxes[2].handle})
	allUp(t, cs)
	watch := cs[0].Watch()

	for _, c := range cs[:2] {
		if !c.Up(3) {
			t.Fatalf("node %d sees node 3 down before it stopped", c.Self())
		}
	}
	stopped := time.Now()
	cs[2].Close()
	for _, c := range cs[:2] {
		testutil.Eventually(t, 3*time.Second-time.Since(stopped), fmt.Sprintf("node %d to see node 3 down", c.Self()),
			func() bool { return !c.Up(3) })
	}
	t.Logf("node 3 seen down after %v", time.Since(stopped).Round(time.Millisecond))
	if cs[0].Send(3, []byte("to the dead")) {
		t.Error("Send to a down node returned true")
	}
	if !cs[0].Up(2) || !cs[1].Up(1) {
		t.Error("the live nodes lost each other")
	}
	testutil.Eventually(t, 3*time.Second, "a down event for node 3", func() bool {
		select {
		case ev := <-watch:
			if ev.Node == cs[0].Self() {
				t.Errorf("node 1 reported itself %+v", ev)
			}
			return ev.Node == 3 && !ev.Up
		default:
			return false
		}
	})

	box := newInbox()
	again, err := Start(cfgs[2], box.handle)
	if err != nil {
		t.Fatalf("restart node 3: %v", err)
	}
	t.Cleanup(func() { again.Close() })
	allUp(t, []*Cluster{cs[0], cs[1], again})
	if !cs[0].Send(3, []byte("back")) {
		t.Fatal("Send to the restarted node refused")
	}
	testutil.Eventually(t, 5*time.Second, "the payload at the restarted node",
		func() bool { return slices.Equal(box.from(1), []string{"back"}) })
}

// TestMismatchRefused starts a node whose node list differs from its
// peers': Start fails naming both hashes and the difference, and the
// running nodes do not count it up.
func TestMismatchRefused(t *testing.T) {
	cfgs := testConfigs(t, 3)
	two := slices.Clone(cfgs[:2])
	for i := range two {
		two[i].Nodes = two[i].Nodes[:2]
	}
	cs := startAll(t, two, []func(uint32, []byte){newInbox().handle, newInbox().handle})
	allUp(t, cs)

	c, err := Start(cfgs[2], newInbox().handle)
	if err == nil {
		c.Close()
		t.Fatal("a node with another node list joined")
	}
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("err = %v, want ErrMismatch", err)
	}
	// Refused, it closed its embedded server: a corrected restart finds
	// its addresses free.
	for _, addr := range []string{cfgs[2].Nodes[2].NATS, cfgs[2].Nodes[2].Route} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("after the refused start: %v", err)
		}
		ln.Close()
	}
	for _, want := range []string{
		fmt.Sprintf("%016x", two[0].Hash()), fmt.Sprintf("%016x", cfgs[2].Hash()),
		"node 3 is listed here only",
		"correct whichever of the two is wrong and restart it",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}

	// A node in the list that comes with another address for itself.
	moved := slices.Clone(two[1].Nodes)
	moved[1].Client = "127.0.0.1:1"
	bad := two[1]
	bad.Nodes = moved
	cs[1].Close()
	testutil.Eventually(t, 3*time.Second, "node 2 down", func() bool { return !cs[0].Up(2) })
	c, err = Start(bad, newInbox().handle)
	if err == nil {
		c.Close()
		t.Fatal("a node with another address for itself joined")
	}
	if !strings.Contains(err.Error(), `node 2 is "127.0.0.1:1 `) {
		t.Errorf("error %q does not name node 2's address", err)
	}
	if cs[0].Up(2) {
		t.Error("node 1 counts the mismatched node 2 up")
	}
}

// burst sends n 8-byte payloads from one node to another and checks that
// all arrive, in order, none dropped as a slow consumer anywhere. What it
// guards is the shipped configuration's TCP connection holding a burst; a
// connection that broke and reconnected meanwhile (its client's write
// to the local server blocked past flusherTimeout, which a starved -race
// run can do) loses what its buffer held, by design: delivery's timeouts
// cover that. Such an attempt proves nothing either way and is run again,
// at most three times.
func burst(t *testing.T, n int) {
	for attempt := 1; ; attempt++ {
		if burstOnce(t, n) || attempt == 3 {
			return
		}
		t.Logf("attempt %d: node 1's NATS connection reconnected during the burst; again", attempt)
	}
}

// burstOnce runs one burst; it reports false, checking nothing, when the
// sending node's NATS connection reconnected meanwhile.
func burstOnce(t *testing.T, n int) bool {
	cfgs := testConfigs(t, 2)
	var next, outOfOrder atomic.Uint64
	recv := func(from uint32, p []byte) {
		if len(p) != 8 || binary.BigEndian.Uint64(p) != next.Load() {
			outOfOrder.Add(1)
		}
		next.Add(1)
	}
	cs := startAll(t, cfgs, []func(uint32, []byte){func(uint32, []byte) {}, recv})
	allUp(t, cs)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()

	start := time.Now()
	var p [8]byte
	for i := range n {
		binary.BigEndian.PutUint64(p[:], uint64(i))
		// A Send refused here went nowhere: the burst is about what is
		// lost after a Send took it. On a loaded machine a heartbeat may
		// come late (the peer counts as down for a moment) or the
		// connection may be reconnecting: wait until Send takes it.
		if !cs[0].Send(2, p[:]) {
			testutil.Eventually(t, 30*time.Second, fmt.Sprintf("Send #%d taken", i), func() bool { return cs[0].Send(2, p[:]) },
				func() string { return fmt.Sprintf("stats %+v", cs[0].Stats()) })
		}
	}
	sent := time.Since(start)
	if cs[0].nc.Stats().Reconnects > 0 {
		return false
	}
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("%d payloads", n),
		func() bool {
			return next.Load() >= uint64(n) || cs[1].Stats().Dropped > 0 || cs[0].nc.Stats().Reconnects > 0
		},
		func() string { return fmt.Sprintf("received %d, stats %+v", next.Load(), cs[1].Stats()) })
	if cs[0].nc.Stats().Reconnects > 0 {
		return false
	}
	t.Logf("%d payloads sent in %v, received in %v", n, sent.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if got := next.Load(); got != uint64(n) {
		t.Errorf("received %d of %d", got, n)
	}
	if k := outOfOrder.Load(); k != 0 {
		t.Errorf("%d payloads out of order", k)
	}
	for _, c := range cs {
		if s := c.Stats(); s.Dropped != 0 {
			t.Errorf("node %d dropped %d", c.Self(), s.Dropped)
		}
		if k := c.srv.NumSlowConsumers(); k != 0 {
			t.Errorf("node %d's server cut %d slow consumers", c.Self(), k)
		}
	}
	return true
}

// Cluster is delivery's Peers.
var _ delivery.Peers = (*Cluster)(nil)

// TestExternal joins two nodes through an existing NATS server instead of
// embedded ones: they see each other and exchange payloads.
func TestExternal(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	a := testutil.FreeAddrs(t, 2)
	nodes := []NodeAddr{{ID: 1, Client: a[0]}, {ID: 2, Client: a[1]}}
	cfgs := []Config{
		{Name: "ext", Self: 1, Nodes: nodes, External: ns.ClientURL()},
		{Name: "ext", Self: 2, Nodes: nodes, External: ns.ClientURL()},
	}
	boxes := []*inbox{newInbox(), newInbox()}
	cs := startAll(t, cfgs, []func(uint32, []byte){boxes[0].handle, boxes[1].handle})
	allUp(t, cs)
	if cs[0].srv != nil || cs[1].srv != nil {
		t.Fatal("a node embedded a server although External was set")
	}
	if !cs[0].Send(2, []byte("a")) || !cs[1].Send(1, []byte("b")) {
		t.Fatal("Send refused")
	}
	testutil.Eventually(t, 5*time.Second, "both payloads", func() bool {
		return slices.Equal(boxes[1].from(1), []string{"a"}) && slices.Equal(boxes[0].from(2), []string{"b"})
	})
	// Closed, a node leaves the shared server: nothing more reaches its
	// handler.
	cs[1].Close()
	testutil.Eventually(t, 5*time.Second, "node 2's connection closed at the server", func() bool { return ns.NumClients() == 1 },
		func() string { return fmt.Sprintf("%d clients", ns.NumClients()) })
}

// TestNewRefuses: New and Start report a configuration they cannot run,
// before anything listens: no handler, an invalid configuration, or an
// embedded server without the keys that admit the other nodes.
func TestNewRefuses(t *testing.T) {
	nodes := []NodeAddr{{1, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}}
	handle := func(uint32, []byte) {}
	tests := []struct {
		name    string
		cfg     Config
		handler func(uint32, []byte)
		want    string
	}{
		{name: "no handler", cfg: Config{Name: "n", Self: 1, Nodes: nodes, Keys: testKeys}, want: "no handler"},
		{name: "self not listed", cfg: Config{Name: "n", Self: 2, Nodes: nodes, Keys: testKeys}, handler: handle, want: "Self 2 is not one of Nodes"},
		{name: "embedded without keys", cfg: Config{Name: "n", Self: 1, Nodes: nodes}, handler: handle, want: "no keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg, tt.handler)
			if err == nil {
				t.Fatalf("New made a cluster %v", c.Self())
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if c, err := Start(tt.cfg, tt.handler); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start = %v, %v; want an error saying %q", c, err, tt.want)
			}
		})
	}
	if _, err := New(Config{Name: "n", Self: 1, Nodes: nodes, External: "nats://127.0.0.1:1"}, handle); err != nil {
		t.Errorf("an external NATS needs no keys: %v", err)
	}
}

// TestJoinUnreachableExternal: Join to an external NATS that does not
// answer fails with an error naming the address, and the node refuses
// every Send.
func TestJoinUnreachableExternal(t *testing.T) {
	const url = "nats://127.0.0.1:1"
	nodes := []NodeAddr{{ID: 1, Client: "127.0.0.1:1"}}
	c, err := New(Config{Name: "n", Self: 1, Nodes: nodes, External: url}, newInbox().handle)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Join(); err == nil || !strings.Contains(err.Error(), "connect to NATS at "+url) {
		t.Fatalf("Join = %v, want an error naming %s", err, url)
	}
	if c.Send(1, []byte("after a failed Join")) {
		t.Error("Send after a failed Join returned true")
	}
}

// TestSendBeforeJoin: New's Cluster answers Send at once, before Join
// made its connection: it refuses every node, this one included (Self is
// up, but there is nothing to publish on yet).
func TestSendBeforeJoin(t *testing.T) {
	cfgs := testConfigs(t, 2)
	c, err := New(cfgs[0], newInbox().handle)
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range []uint32{1, 2, 9} {
		if c.Send(node, []byte("too early")) {
			t.Errorf("Send to %d before Join returned true", node)
		}
	}
	if got := c.Stats().SendRefused; got != 3 {
		t.Errorf("SendRefused = %d, want 3", got)
	}
}

package cluster

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"

	"switchboard/internal/testutil"
)

// A node's start and its leaving: a listener address taken, and a
// handover's Leave, StopReceiving and successor.

// TestNodeAddressInUse: a node whose NATS listener's address is taken (by
// another process started as the same node, say) fails at once, naming
// the address, instead of waiting for a NATS server that never listens.
func TestNodeAddressInUse(t *testing.T) {
	cfgs := testConfigs(t, 1)
	ln, err := net.Listen("tcp", cfgs[0].Nodes[0].NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := Start(cfgs[0], newInbox().handle)
	if err == nil {
		c.Close()
		t.Fatal("started with its nats address taken")
	}
	if want := "node 1's nats address " + cfgs[0].Nodes[0].NATS; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "already running on this host") {
		t.Errorf("error %q, want it to name %q and the likely cause", err, want)
	}
}

// TestLeaveTakesTheNodeDownAtOnce: a node handing over (Leave) is down for
// the others as soon as they hear its notice, not DownAfter later, so they
// send it nothing more; it can still answer them, and what was sent to it
// before is handed to its handler by the time StopReceiving returns. A
// heartbeat of the instance that left, arriving late, does not bring it
// back; its successor's first heartbeat does.
func TestLeaveTakesTheNodeDownAtOnce(t *testing.T) {
	cfgs := testConfigs(t, 2)
	for i := range cfgs {
		cfgs[i].DownAfter = time.Minute // silence alone takes nobody down in this test
	}
	boxes := []*inbox{newInbox(), newInbox()}
	cs := startAll(t, cfgs, []func(uint32, []byte){boxes[0].handle, boxes[1].handle})
	allUp(t, cs)

	if !cs[0].Send(2, []byte("before")) {
		t.Fatal("node 1 could not send to node 2")
	}
	if cs[0].Leaving(2) {
		t.Fatal("node 2 leaving before its notice")
	}
	left := cs[1].instance
	cs[1].quiet.Store(true) // no heartbeat loop's notice: Leave's own must do
	cs[1].Leave()
	testutil.Eventually(t, 5*time.Second, "node 1 to take node 2 down", func() bool { return !cs[0].Up(2) })
	if !cs[0].Leaving(2) || cs[0].Leaving(1) || cs[0].Leaving(9) {
		t.Errorf("Leaving(2), (1), (9) = %v, %v, %v after node 2's notice, want true, false, false", cs[0].Leaving(2), cs[0].Leaving(1), cs[0].Leaving(9))
	}
	if cs[0].Send(2, []byte("after the notice")) {
		t.Error("node 1 sent to a node it heard leave")
	}
	if !cs[1].Send(1, []byte("an answer")) {
		t.Fatal("the leaving node could not answer")
	}
	testutil.Eventually(t, 5*time.Second, "the answer", func() bool { return len(boxes[0].from(2)) == 1 })
	if err := cs[1].StopReceiving(); err != nil {
		t.Fatal(err)
	}
	if got := boxes[1].from(1); len(got) != 1 || got[0] != "before" {
		t.Fatalf("node 2 was handed %q from node 1, want the payload sent before its notice", got)
	}
	cs[0].heard(&nats.Msg{Data: appendHeartbeat(nil, 2, cs[0].hash, left, cs[0].canon)})
	if cs[0].Up(2) {
		t.Fatal("a late heartbeat of the instance that left brought node 2 back")
	}
	cs[1].Close()

	succ, err := Start(cfgs[1], boxes[1].handle)
	if err != nil {
		t.Fatal(err)
	}
	defer succ.Close()
	testutil.Eventually(t, 10*time.Second, "node 1 to see node 2's successor up", func() bool { return cs[0].Up(2) })
	if cs[0].Leaving(2) {
		t.Error("node 2 still leaving once its successor was heard")
	}
	if !cs[0].Send(2, []byte("to the successor")) {
		t.Fatal("node 1 could not send to node 2's successor")
	}
	testutil.Eventually(t, 5*time.Second, "the successor's payload", func() bool { return len(boxes[1].from(1)) == 2 })
}

// TestPayloadsHeldUntilJoined: a peer forwards to a restarted node as soon
// as it hears its first heartbeat, while that node's Join still waits to
// be sure no other process runs as it. The payload is handed on once Join
// has succeeded, never before, and the handler can answer through the
// Cluster New made, which the caller had before joining: the answer
// reaches the peer. (Payloads handed on before, or answers refused then,
// were lost: each sender waited out its forward timeout.)
func TestPayloadsHeldUntilJoined(t *testing.T) {
	cfgs := testConfigs(t, 2)
	first := newInbox()
	n1 := startAll(t, cfgs[:1], []func(uint32, []byte){first.handle})[0]

	var n2 *Cluster
	handed := make(chan error, 1)
	n2, err := New(cfgs[1], func(from uint32, payload []byte) {
		select {
		case <-n2.joined:
		default:
			handed <- fmt.Errorf("payload %q handed on before Join succeeded", payload)
			return
		}
		if !n2.Send(from, []byte("answer to "+string(payload))) {
			handed <- fmt.Errorf("the answer to %q was refused", payload)
			return
		}
		handed <- nil
	})
	if err != nil {
		t.Fatal(err)
	}
	joined := make(chan error, 1)
	go func() { joined <- n2.Join() }()
	testutil.Eventually(t, 10*time.Second, "node 1 to hear node 2", func() bool { return n1.Up(2) })
	if !n1.Send(2, []byte("early")) {
		t.Fatal("node 1 could not send to node 2")
	}
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if err := <-handed; err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the answer at node 1", func() bool {
		got := first.from(2)
		return len(got) == 1 && got[0] == "answer to early"
	})
}

// TestFirstHeartbeatAfterHearingPeers: a node starting holds its first
// heartbeat until it has heard every peer (a peer that hears it forwards to
// it at once, and it answers only peers it sees up), or two intervals at
// most, and not past its Close. Time is synctest's.
func TestFirstHeartbeatAfterHearingPeers(t *testing.T) {
	cfg := Config{Name: "h", Self: 1, Nodes: []NodeAddr{{1, "h:1", "h:2", "h:3"}, {2, "h:4", "h:5", "h:6"}, {3, "h:7", "h:8", "h:9"}}}.withDefaults()
	newCluster := func() *Cluster {
		return &Cluster{cfg: cfg, log: cfg.Logger, hash: cfg.Hash(), canon: cfg.canonical(), instance: 1, epoch: time.Now(),
			peers: map[uint32]*peer{2: {}, 3: {}}, mismatch: make(chan error, 1), done: make(chan struct{})}
	}
	beat := func(c *Cluster, node uint32) {
		c.heard(&nats.Msg{Data: appendHeartbeat(nil, node, cfg.Hash(), uint64(node), cfg.canonical())})
	}
	synctest.Test(t, func(t *testing.T) {
		c := newCluster()
		held := make(chan bool, 1)
		go func() { held <- c.holdFirstHeartbeat() }()
		synctest.Wait()
		beat(c, 2)
		time.Sleep(cfg.Heartbeat) // half the hold: node 3 not heard yet
		synctest.Wait()
		select {
		case <-held:
			t.Fatal("the first heartbeat went before node 3 was heard")
		default:
		}
		beat(c, 3)
		time.Sleep(holdPoll)
		synctest.Wait()
		select {
		case ok := <-held:
			if !ok {
				t.Fatal("held reported the cluster closed")
			}
		default:
			t.Fatal("still holding with every peer heard")
		}
	})
	synctest.Test(t, func(t *testing.T) {
		c := newCluster()
		start := time.Now()
		if !c.holdFirstHeartbeat() || time.Since(start) != 2*cfg.Heartbeat {
			t.Errorf("with no peer heard, held %v, want two intervals (%v)", time.Since(start), 2*cfg.Heartbeat)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		c := newCluster()
		close(c.done)
		if c.holdFirstHeartbeat() {
			t.Error("held past Close, and then reported to go on")
		}
	})
}

// TestLeavingHeardByALateNode: a node that starts after a peer's Leave
// hears the notice the leaving node keeps sending in place of heartbeats:
// it counts that peer leaving and down, never up.
func TestLeavingHeardByALateNode(t *testing.T) {
	cfgs := quickConfigs(t, 2)
	leaver := startAll(t, cfgs[1:], []func(uint32, []byte){newInbox().handle})[0]
	leaver.Leave()
	late := startAll(t, cfgs[:1], []func(uint32, []byte){newInbox().handle})[0]
	testutil.Eventually(t, 5*time.Second, "the late node to hear node 2's leaving notice", func() bool { return late.Leaving(2) })
	if late.Up(2) {
		t.Error("the late node counts node 2 up although it is leaving")
	}
	if late.Send(2, []byte("to a leaving node")) {
		t.Error("the late node sent to a node that is leaving")
	}
}

// busyReceiver starts two nodes and has node 1 send node 2 "first", which
// node 2's handler holds until release is closed, and "second", which
// waits behind it; box is what node 2's handler was handed.
func busyReceiver(t *testing.T) (cs []*Cluster, box *inbox, release chan struct{}) {
	t.Helper()
	box = newInbox()
	entered := make(chan struct{})
	release = make(chan struct{})
	cs = startAll(t, testConfigs(t, 2), []func(uint32, []byte){newInbox().handle, func(from uint32, p []byte) {
		if string(p) == "first" {
			close(entered)
			<-release
		}
		box.handle(from, p)
	}})
	allUp(t, cs)
	if !cs[0].Send(2, []byte("first")) || !cs[0].Send(2, []byte("second")) {
		t.Fatal("node 1 could not send to node 2")
	}
	<-entered
	testutil.Eventually(t, 5*time.Second, "the second payload pending at node 2", func() bool {
		n, _, _ := cs[1].sub.Pending()
		return n >= 1
	})
	return cs, box, release
}

// TestStopReceivingHandsOnWhatIsPending: StopReceiving, called while the
// handler is busy and another payload waits for it, returns once that one
// was handed on too: a handover loses nothing that reached the node.
func TestStopReceivingHandsOnWhatIsPending(t *testing.T) {
	cs, box, release := busyReceiver(t)
	sub := cs[1].sub
	stopped := make(chan error, 1)
	go func() { stopped <- cs[1].StopReceiving() }()
	testutil.Eventually(t, 5*time.Second, "node 2's subscription to stop taking payloads", func() bool {
		return sub.IsDraining() || !sub.IsValid()
	})
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if got := box.from(1); !slices.Equal(got, []string{"first", "second"}) {
		t.Errorf("node 2 was handed %q by the time StopReceiving returned, want both payloads", got)
	}
}

// TestStopReceivingPastItsTimeout: when the handler holds a payload past
// drainTimeout, StopReceiving says so and drops what is still pending:
// once it has returned, the handler is not called again, even after the
// busy payload is done.
func TestStopReceivingPastItsTimeout(t *testing.T) {
	cs, box, release := busyReceiver(t)
	sub := cs[1].sub
	if err := cs[1].StopReceiving(); err == nil || !strings.Contains(err.Error(), "dropped") {
		t.Errorf("StopReceiving past its timeout: %v, want the pending payloads dropped", err)
	}
	close(release)
	// Had the drain gone on, the subscription would close only after the
	// second payload was handed on.
	testutil.Eventually(t, 5*time.Second, "the held payload handed on, node 2's subscription closed",
		func() bool { return len(box.from(1)) >= 1 && !sub.IsValid() })
	if got := box.from(1); !slices.Equal(got, []string{"first"}) {
		t.Errorf("node 2 was handed %q, want only the payload the handler held when StopReceiving returned", got)
	}
}

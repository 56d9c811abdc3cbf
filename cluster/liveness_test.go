package cluster

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"

	"switchboard/internal/testutil"
)

// quickConfigs returns testConfigs with a tenth of the shipped timings
// (heartbeat 100 ms, down after 1 s), so that a node goes down in a
// second of the test's time.
func quickConfigs(t *testing.T, n int) []Config {
	cfgs := testConfigs(t, n)
	for i := range cfgs {
		cfgs[i].Heartbeat = 100 * time.Millisecond
		cfgs[i].DownAfter = time.Second
	}
	return cfgs
}

// payloadFrom is a payload on the wire from node from: its ID, then p.
func payloadFrom(from uint32, p string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, from), p...)
}

// downEvent reports whether a down event for node is waiting on watch,
// without waiting for one; other events are consumed and ignored.
func downEvent(watch <-chan NodeEvent, node uint32) (NodeEvent, bool) {
	for {
		select {
		case ev := <-watch:
			if ev.Node == node && !ev.Up {
				return ev, true
			}
		default:
			return NodeEvent{}, false
		}
	}
}

// TestPayloadsKeepPeerUp silences node 2's heartbeats while its payloads
// keep reaching node 1: node 1 keeps it up, with no down event, for well
// past DownAfter after its last heartbeat. Once the payloads stop too, it
// is down DownAfter after the last one (seen at node 1's next heartbeat
// tick); payloads that come while it is down do not bring it back, and its
// next heartbeat does.
func TestPayloadsKeepPeerUp(t *testing.T) {
	cfgs := quickConfigs(t, 2)
	box := newInbox()
	cs := startAll(t, cfgs, []func(uint32, []byte){box.handle, newInbox().handle})
	allUp(t, cs)
	watch := cs[0].Watch()
	downAfter, beat := cfgs[0].DownAfter, cfgs[0].Heartbeat
	p2 := cs[0].peers[2]

	// Node 2 is alive but its heartbeats are late: only its payloads, one
	// every 20 ms, reach node 1, until node 1's last heartbeat from it is
	// older than DownAfter and two of node 1's heartbeat ticks.
	cs[1].quiet.Store(true)
	var sent int64
	var lastSent time.Time
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(15 * time.Second)
	for cs[0].since(p2.heard.Load()) < downAfter+2*beat {
		if time.Now().After(deadline) {
			t.Fatalf("node 2's last heartbeat still younger than %v after 15 s", downAfter+2*beat)
		}
		lastSent = time.Now()
		if !cs[1].Send(1, []byte(fmt.Sprint(sent))) {
			t.Fatalf("node 2: Send to node 1 refused (stats %+v)", cs[1].Stats())
		}
		sent++
		if !cs[0].Up(2) {
			t.Fatalf("node 1 sees node 2 down %v after its last heartbeat, although %d of its payloads came (%d sent)",
				cs[0].since(p2.heard.Load()), box.n.Load(), sent)
		}
		if ev, ok := downEvent(watch, 2); ok {
			t.Fatalf("node 1 reported node 2 down at %v while its payloads came", ev.At)
		}
		<-tick.C
	}
	testutil.Eventually(t, 5*time.Second, "every payload of node 2 at node 1",
		func() bool { return box.n.Load() == sent })

	// Payloads stop too: down DownAfter after the last one was seen, and
	// reported at node 1's next tick.
	var down NodeEvent
	testutil.Eventually(t, 5*time.Second, "a down event for node 2", func() bool {
		var ok bool
		down, ok = downEvent(watch, 2)
		return ok
	})
	// The last payload came after it was sent, and the seen time lags it
	// by grain at most; the event may come a tick after, plus the
	// payload's way and scheduling on a loaded machine.
	const slack = 300 * time.Millisecond
	early, late := downAfter-time.Duration(cs[0].grain), downAfter+beat+slack
	if after := down.At.Sub(lastSent); after < early || after > late {
		t.Errorf("node 2 reported down %v after its last payload, want between %v and %v", after, early, late)
	}
	if cs[0].Up(2) {
		t.Error("node 2 up after its down event, with neither heartbeats nor payloads")
	}

	// Payloads while it is down do not bring it back: only a heartbeat,
	// which names its instance, does.
	for i := range 3 {
		if !cs[1].Send(1, []byte(fmt.Sprint("while down ", i))) {
			t.Fatalf("node 2: Send to node 1 refused (stats %+v)", cs[1].Stats())
		}
	}
	testutil.Eventually(t, 5*time.Second, "node 2's payloads sent while it is down, at node 1",
		func() bool { return box.n.Load() == sent+3 })
	if cs[0].Up(2) {
		t.Error("node 1 counts node 2 up again on payloads alone")
	}
	cs[1].quiet.Store(false)
	testutil.Eventually(t, 5*time.Second, "node 2 up again by its heartbeat", func() bool { return cs[0].Up(2) })
}

// TestPayloadFromUnheardNode sends node 1 a payload in the name of node 3,
// which is in the configuration but never started: node 1 passes it to its
// handler and still counts node 3 down.
func TestPayloadFromUnheardNode(t *testing.T) {
	cfgs := quickConfigs(t, 3)
	box := newInbox()
	cs := startAll(t, cfgs[:2], []func(uint32, []byte){box.handle, newInbox().handle})
	allUp(t, cs)
	if err := cs[1].nc.Publish(cs[1].subjects[1], payloadFrom(3, "from nowhere")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "node 3's payload at node 1",
		func() bool { return slices.Equal(box.from(3), []string{"from nowhere"}) })
	if cs[0].Up(3) || cs[1].Up(3) {
		t.Error("a payload made a never-heard node up")
	}
	if cs[0].Leaving(3) {
		t.Error("a never-heard node counts as leaving")
	}
	for i, c := range cs {
		if down := c.Stats().PeersDown; down != 1 {
			t.Errorf("node %d: PeersDown %d, want 1 (node 3)", i+1, down)
		}
	}
	if i := cs[0].Instance(3); i != 0 {
		t.Errorf("Instance(3) = %d after a payload, want 0 (never heard)", i)
	}
}

// TestSeenPayload runs the rules of a payload as a sign of life on a
// Cluster with no connection, its peer's times set by hand: a payload
// moves the seen time of an up peer to now and of no other.
func TestSeenPayload(t *testing.T) {
	const downAfter = 2 * time.Second
	tests := []struct {
		name       string
		seenAgo    time.Duration // -1: never heard
		mismatched bool
		wantMoved  bool
	}{
		{name: "up, seen 1 s ago", seenAgo: time.Second, wantMoved: true},
		{name: "up, seen just under DownAfter ago", seenAgo: downAfter - 50*time.Millisecond, wantMoved: true},
		{name: "up, seen within the grain", seenAgo: time.Millisecond, wantMoved: false},
		{name: "never heard", seenAgo: -1, wantMoved: false},
		{name: "down: seen DownAfter ago", seenAgo: downAfter, wantMoved: false},
		{name: "down: seen 5 s ago", seenAgo: 5 * time.Second, wantMoved: false},
		{name: "mismatched hash", seenAgo: time.Second, mismatched: true, wantMoved: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			c := &Cluster{
				cfg:    Config{Self: 1, DownAfter: downAfter},
				log:    slog.New(slog.DiscardHandler),
				epoch:  time.Now().Add(-time.Minute),
				grain:  int64(maxSeenGrain),
				peers:  map[uint32]*peer{2: {}},
				joined: joinedChan(),
				handler: func(from uint32, p []byte) {
					got = append(got, fmt.Sprintf("%d:%s", from, p))
				},
			}
			p := c.peers[2]
			var before int64
			if tt.seenAgo >= 0 {
				before = 1 + int64(time.Since(c.epoch)-tt.seenAgo)
			}
			p.heard.Store(before)
			p.seen.Store(before)
			p.mismatched.Store(tt.mismatched)
			wasUp := c.Up(2)

			start := time.Now()
			c.deliver(&nats.Msg{Data: payloadFrom(2, "hi")})
			if !slices.Equal(got, []string{"2:hi"}) {
				t.Errorf("handler got %q, want the payload", got)
			}
			after := p.seen.Load()
			if moved := after != before; moved != tt.wantMoved {
				t.Fatalf("seen moved = %v, want %v (%v ago before)", moved, tt.wantMoved, tt.seenAgo)
			}
			if tt.wantMoved {
				if at := c.epoch.Add(time.Duration(after - 1)); at.Before(start) {
					t.Errorf("seen moved to %v before the payload came", start.Sub(at))
				}
			}
			if p.heard.Load() != before {
				t.Error("a payload moved the heartbeat time")
			}
			if c.Up(2) != wasUp {
				t.Errorf("Up changed from %v with a payload", wasUp)
			}
		})
	}
}

// joinedChan is the joined channel of a Cluster made in a test without
// Join: closed, so that deliver hands payloads on.
func joinedChan() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

// TestDeliverAllocs holds the payload path, liveness included, to no
// allocation of its own.
func TestDeliverAllocs(t *testing.T) {
	c := &Cluster{
		cfg:     Config{Self: 1, DownAfter: 2 * time.Second},
		epoch:   time.Now().Add(-time.Minute),
		peers:   map[uint32]*peer{2: {}},
		joined:  joinedChan(),
		handler: func(uint32, []byte) {},
	}
	c.peers[2].seen.Store(1 + int64(time.Since(c.epoch)))
	m := &nats.Msg{Data: payloadFrom(2, "payload")}
	if n := testing.AllocsPerRun(1000, func() { c.deliver(m) }); n != 0 {
		t.Errorf("deliver allocates %v times a payload, want 0", n)
	}
	if got := c.received.Load(); got < 1000 {
		t.Errorf("received %d, want every payload", got)
	}
}

// TestPayloadBeforeAnyHeartbeat: on a cluster that just started (its
// epoch younger than DownAfter), a payload from a peer never heard leaves
// it never heard: not up, no seen time, no instance.
func TestPayloadBeforeAnyHeartbeat(t *testing.T) {
	const downAfter = 2 * time.Second
	var got []string
	c := &Cluster{
		cfg:    Config{Self: 1, DownAfter: downAfter},
		log:    slog.New(slog.DiscardHandler),
		epoch:  time.Now().Add(-100 * time.Millisecond), // older than a grain, younger than DownAfter
		grain:  int64(maxSeenGrain),
		peers:  map[uint32]*peer{2: {}},
		joined: joinedChan(),
		handler: func(from uint32, p []byte) {
			got = append(got, fmt.Sprintf("%d:%s", from, p))
		},
	}
	p := c.peers[2]
	c.seenPayload(p)
	c.deliver(&nats.Msg{Data: payloadFrom(2, "hi")})
	if !slices.Equal(got, []string{"2:hi"}) {
		t.Errorf("handler got %q, want the payload", got)
	}
	if s := p.seen.Load(); s != 0 {
		t.Errorf("seen = %d after a payload from a never-heard peer, want 0 (never)", s)
	}
	if h := p.heard.Load(); h != 0 {
		t.Errorf("heard = %d after a payload, want 0", h)
	}
	if c.Up(2) {
		t.Error("a payload made a never-heard peer up")
	}
	if i := c.Instance(2); i != 0 {
		t.Errorf("Instance(2) = %d after a payload, want 0 (never heard)", i)
	}
}

// TestInstanceFromHeartbeat: a node's instance, as its peers know it, is
// the one its heartbeats announce: the node's own once it is up, and the
// new process's once a restarted node's heartbeat is heard; a node outside
// the configuration has none (0).
func TestInstanceFromHeartbeat(t *testing.T) {
	cfgs := quickConfigs(t, 2)
	cs := startAll(t, cfgs, []func(uint32, []byte){newInbox().handle, newInbox().handle})
	allUp(t, cs)
	old := cs[1].Instance(2)
	if old == 0 {
		t.Fatal("node 2's own instance is 0")
	}
	// Up, so heard: a heartbeat stores the instance before the seen time.
	if got := cs[0].Instance(2); got != old {
		t.Fatalf("node 1 sees node 2 up with Instance(2) = %d, node 2 announces %d", got, old)
	}
	if got := cs[0].Instance(9); got != 0 {
		t.Fatalf("Instance of node 9, outside the configuration, = %d, want 0", got)
	}

	cs[1].Close()
	again, err := Start(cfgs[1], newInbox().handle)
	if err != nil {
		t.Fatalf("restart node 2: %v", err)
	}
	t.Cleanup(func() { again.Close() })
	now := again.Instance(2)
	if now == 0 || now == old {
		t.Fatalf("the restarted node 2 has instance %d, the old one %d: want a new nonzero one", now, old)
	}
	testutil.Eventually(t, 5*time.Second, "node 1 to hear node 2's new instance",
		func() bool { return cs[0].Instance(2) == now },
		func() string {
			return fmt.Sprintf("node 1 has Instance(2) = %d, the restarted node 2 announces %d (the old one %d)", cs[0].Instance(2), now, old)
		})
	if !cs[0].Up(2) {
		t.Error("node 1 sees the restarted node 2 down after hearing it")
	}
}

// TestDeliverDrops: deliver hands the handler a payload from a node of the
// configuration, this one included, and drops, counted, one too short to
// name its sender, one from a node outside the configuration, and one that
// comes after a failed Join.
func TestDeliverDrops(t *testing.T) {
	var got []string
	c := &Cluster{
		cfg:    Config{Self: 1, DownAfter: 2 * time.Second},
		log:    slog.New(slog.DiscardHandler),
		epoch:  time.Now(),
		grain:  int64(maxSeenGrain),
		peers:  map[uint32]*peer{2: {}},
		joined: joinedChan(),
		handler: func(from uint32, p []byte) {
			got = append(got, fmt.Sprintf("%d:%s", from, p))
		},
	}
	for _, m := range [][]byte{
		payloadFrom(2, "from 2"),
		{0, 0, 2},
		payloadFrom(9, "from outside"),
		payloadFrom(1, "from self"),
		{},
	} {
		c.deliver(&nats.Msg{Data: m})
	}
	if want := []string{"2:from 2", "1:from self"}; !slices.Equal(got, want) {
		t.Errorf("handler got %q, want %q", got, want)
	}
	if d, r := c.dropped.Load(), c.received.Load(); d != 3 || r != 2 {
		t.Errorf("dropped %d, received %d; want 3 and 2", d, r)
	}

	// Join failed (closed without joining): what was held is dropped.
	got = nil
	c.joined = make(chan struct{})
	c.done = make(chan struct{})
	close(c.done)
	c.deliver(&nats.Msg{Data: payloadFrom(2, "after a failed join")})
	if len(got) != 0 || c.dropped.Load() != 4 {
		t.Errorf("after a failed Join: handler got %q, dropped %d; want nothing and 4", got, c.dropped.Load())
	}
}

// TestEventsNeverBlockHeartbeats: with nobody reading Watch, more
// transitions than it holds are dropped and counted, and the heartbeat
// loop goes on (the node stays up for its peers) and ends at Close. Time
// is synctest's; the node's heartbeats are not published (quiet), so it
// needs no connection.
func TestEventsNeverBlockHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = eventsCap + 6
		cfg := Config{Self: 1, Heartbeat: 100 * time.Millisecond, DownAfter: time.Second, Logger: slog.New(slog.DiscardHandler)}.withDefaults()
		c := &Cluster{cfg: cfg, log: cfg.Logger, epoch: time.Now(), peers: map[uint32]*peer{},
			events: make(chan NodeEvent, eventsCap), done: make(chan struct{})}
		c.quiet.Store(true)
		for id := uint32(2); id < 2+n; id++ {
			p := &peer{}
			p.seen.Store(1)
			p.heard.Store(1)
			c.peers[id] = p
		}
		c.wg.Add(1)
		go c.heartbeats()
		synctest.Wait() // every peer up: n events, eventsCap fit
		if got := c.lostEvent.Load(); got != n-eventsCap {
			t.Fatalf("%d events dropped, want %d", got, n-eventsCap)
		}
		time.Sleep(cfg.DownAfter + cfg.Heartbeat) // every peer down: n more, none fit
		synctest.Wait()
		if got := c.lostEvent.Load(); got != 2*n-eventsCap {
			t.Errorf("%d events dropped after every peer went down, want %d", got, 2*n-eventsCap)
		}
		close(c.done)
		c.wg.Wait()
		if k := len(c.events); k != eventsCap {
			t.Errorf("Watch holds %d events, want %d", k, eventsCap)
		}
	})
}

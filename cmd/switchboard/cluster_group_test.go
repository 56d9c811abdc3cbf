package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/client"
	"switchboard/internal/testutil"
	"switchboard/protocol"
)

// groupMember is one member of TestClusterGroupKill9's group: it sends
// to the group, one message in flight, and records what it is delivered.
type groupMember struct {
	user uint64
	conn *client.Conn

	mu       sync.Mutex
	accepted []uint64            // its own msg ids, in ACCEPT order
	got      map[uint64][]uint64 // sender → msg ids in seq order (first delivery of each seq)
	seqs     map[uint64]bool     // seqs delivered
	refused  []string            // refusals for good
}

// TestClusterGroupKill9: a group with a member homed on each of three
// nodes (serve processes over real NATS and Badger), every member sending
// to it one message at a time. A member's home node is killed with
// SIGKILL mid-stream and restarted, then the group's own home: while each
// is down the group's messages are refused retryably and resent by the
// clients, and when it is back they go on. At the end every member holds
// every ACCEPTed message of the others exactly once (one seq), in the
// order each sender sent them, and nothing was refused for good.
func TestClusterGroupKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills server processes")
	}
	cp := newClusterProcs(t, nil)
	ctx := ctxTimeout(t, 90*time.Second)
	users := []uint64{cp.userOn(1, 1000), cp.userOn(2, 2000), cp.userOn(3, 3000)}
	members := make([]*groupMember, len(users))
	for i, u := range users {
		tok := cp.node(uint32(i + 1)).token(u)
		c, err := client.Dial(ctx, cp.cfg.Nodes[i].Client, client.Options{
			Token:   func(context.Context) ([]byte, error) { return tok, nil },
			Session: client.Config{MaxBackoff: 500 * time.Millisecond},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		members[i] = &groupMember{user: u, conn: c, got: map[uint64][]uint64{}, seqs: map[uint64]bool{}}
	}

	// The group, homed on node 1, created by the member on node 3.
	creator := members[2]
	var group uint64
	for {
		id, err := creator.conn.Group(protocol.GroupCreate, 0, users[0], users[1])
		if err != nil {
			t.Fatal(err)
		}
		acc := waitAcceptOf(t, ctx, creator.conn, id)
		if cp.cfg.Home(acc.Ref) == 1 {
			group = acc.Ref
			break
		}
		if _, err := creator.conn.Group(protocol.GroupLeave, acc.Ref); err != nil { // another group: not this one
			t.Fatal(err)
		}
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Go(func() { m.run(ctx, group, &stop) })
	}
	total := func() int {
		n := 0
		for _, m := range members {
			m.mu.Lock()
			n += len(m.accepted)
			m.mu.Unlock()
		}
		return n
	}
	waitTotal := func(what string, n int) {
		t.Helper()
		testutil.Eventually(t, 45*time.Second, what, func() bool { return total() >= n })
	}

	for _, victim := range []uint32{2, 1} { // a member's home, then the group's
		waitTotal(fmt.Sprintf("ACCEPTs before node %d is killed", victim), total()+60)
		other := map[uint32]uint32{2: 3, 1: 3}[victim]
		down := cp.logCount(other, peerLine("down", victim))
		up := cp.logCount(other, peerLine("up", victim))
		// While the victim is down, no group message can be durable in
		// every member's home: the refusals must come, from the group's
		// home (a member's copy failed) or from the senders' nodes (the
		// group's home is down), before it comes back.
		refusals := func() float64 {
			if victim == 1 {
				return cp.metric(2, "switchboard_home_down_total") + cp.metric(3, "switchboard_home_down_total")
			}
			return cp.metric(1, "switchboard_home_down_total")
		}
		before := refusals()
		cp.node(victim).kill()
		cp.waitLog(other, peerLine("down", victim), down, 10*time.Second)
		testutil.Eventually(t, 15*time.Second, fmt.Sprintf("refusals while node %d is down", victim), func() bool { return refusals() >= before+2 })
		cp.start(victim)
		cp.waitLog(other, peerLine("up", victim), up, 10*time.Second)
		waitTotal(fmt.Sprintf("ACCEPTs after node %d is back", victim), total()+60)
	}
	stop.Store(true)
	wg.Wait()

	// Every member reads on until it holds every other member's ACCEPTed
	// messages.
	for _, m := range members {
		for _, s := range members {
			if s == m {
				continue
			}
			s.mu.Lock()
			want := append([]uint64(nil), s.accepted...)
			s.mu.Unlock()
			testutil.Eventually(t, 30*time.Second, fmt.Sprintf("user %d to hold user %d's %d messages", m.user, s.user, len(want)), func() bool {
				m.mu.Lock()
				defer m.mu.Unlock()
				return len(m.got[s.user]) >= len(want)
			})
			m.mu.Lock()
			got := append([]uint64(nil), m.got[s.user]...)
			refused := m.refused
			m.mu.Unlock()
			if len(refused) > 0 {
				t.Fatalf("user %d had messages refused for good: %v", m.user, refused)
			}
			seen := map[uint64]bool{}
			for i, id := range got {
				if seen[id] {
					t.Fatalf("user %d holds user %d's msg %d under two seqs: %v", m.user, s.user, id, got)
				}
				seen[id] = true
				if i > 0 && id < got[i-1] {
					t.Fatalf("user %d holds user %d's msgs out of order: %v", m.user, s.user, got)
				}
			}
			for _, id := range want {
				if !seen[id] {
					t.Fatalf("user %d lost user %d's ACCEPTed msg %d", m.user, s.user, id)
				}
			}
		}
	}
	t.Logf("%d group messages ACCEPTed across two kills, each held once and in order by every other member", total())
}

// run sends to group, one message in flight, until stop, while it takes
// what it is delivered; it returns once its last message is ACCEPTed.
func (m *groupMember) run(ctx context.Context, group uint64, stop *atomic.Bool) {
	inFlight := uint64(0)
	send := func() {
		id, err := m.conn.Send(group, true, fmt.Appendf(nil, "%d says hi", m.user))
		if err == nil {
			inFlight = id
		}
	}
	send()
	for {
		ev, err := m.conn.Recv(ctx)
		if err != nil {
			m.mu.Lock()
			m.refused = append(m.refused, "recv: "+err.Error())
			m.mu.Unlock()
			return
		}
		switch ev := ev.(type) {
		case *protocol.Accept:
			if ev.MsgID != inFlight {
				continue // the create or leave
			}
			m.mu.Lock()
			m.accepted = append(m.accepted, ev.MsgID)
			m.mu.Unlock()
			if stop.Load() {
				go m.drain(ctx)
				return
			}
			send()
		case *protocol.Refuse:
			if ev.Code != protocol.CodeRetryLater {
				m.mu.Lock()
				m.refused = append(m.refused, fmt.Sprintf("msg %d: %v %s", ev.MsgID, ev.Code, ev.Reason))
				m.mu.Unlock()
			}
		case *protocol.Deliver:
			m.took(ev)
		}
	}
}

// drain goes on taking deliveries after the member stopped sending.
func (m *groupMember) drain(ctx context.Context) {
	for {
		ev, err := m.conn.Recv(ctx)
		if err != nil {
			return
		}
		if d, ok := ev.(*protocol.Deliver); ok {
			m.took(d)
		}
	}
}

func (m *groupMember) took(d *protocol.Deliver) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d.Group == 0 || m.seqs[d.Seq] {
		return // a redelivery of a seq after a reconnect
	}
	m.seqs[d.Seq] = true
	m.got[d.From] = append(m.got[d.From], d.MsgID)
}

// waitAcceptOf returns the ACCEPT of msgID on c, failing on a REFUSE for
// good.
func waitAcceptOf(t *testing.T, ctx context.Context, c *client.Conn, msgID uint64) *protocol.Accept {
	t.Helper()
	for {
		ev, err := c.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch ev := ev.(type) {
		case *protocol.Accept:
			if ev.MsgID == msgID {
				return ev
			}
		case *protocol.Refuse:
			if ev.MsgID == msgID && ev.Code != protocol.CodeRetryLater {
				t.Fatalf("msg %d refused: %v %s", msgID, ev.Code, ev.Reason)
			}
		}
	}
}

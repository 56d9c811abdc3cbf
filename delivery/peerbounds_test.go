package delivery_test

import (
	"sync/atomic"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// TestForwardedBound: a node forwards at most MaxForwarded SENDs without
// an answer; the next one is not taken (Send returns false, and the
// gateway refuses it busy), and nothing is sent for it.
func TestForwardedBound(t *testing.T) {
	_, c, rs, _, a := aliceOnNode2(t)
	n2 := rs[1]
	const alice, bob = 1, 2
	c.set(c.deaf, 1, true)
	m := delivery.Message{From: delivery.To(alice), To: bob, Record: record(alice, 1, "x")}
	for m.MsgID = 1; m.MsgID <= delivery.MaxForwarded; m.MsgID++ {
		if !n2.Send(a.s(), m) {
			t.Fatalf("Send %d busy", m.MsgID)
		}
	}
	sent, busy := c.sent.Load(), n2.Stats().Busy.Load()
	if n2.Send(a.s(), m) {
		t.Fatalf("Send took a SEND past %d awaiting answers", delivery.MaxForwarded)
	}
	if c.sent.Load() != sent || n2.Stats().Busy.Load() != busy+1 {
		t.Fatalf("%d payloads sent and Busy grown by %d for the SEND not taken, want none and 1", c.sent.Load()-sent, n2.Stats().Busy.Load()-busy)
	}
	if n := len(a.items(delivery.OutRefuse)) + len(a.items(delivery.OutAccept)); n != 0 {
		t.Fatalf("%d answers pushed, want none: the gateway answers a SEND not taken", n)
	}
}

// TestDefaultPeerTimeout: a router joined with no timeout waits
// DefaultPeerTimeout for a forwarded SEND's answer before refusing it.
func TestDefaultPeerTimeout(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).UnixNano())
	c, rs, _ := newClusterWith(t, 2, clusterOpts{cfg: delivery.Config{Shards: 2, Now: func() time.Time { return time.Unix(0, now.Load()) }}, timeout: -1})
	n2 := rs[1]
	const alice, bob = 1, 2 // alice homed on node 2, bob on node 1
	a := newFake()
	login(t, n2, a, alice, 0)
	c.set(c.deaf, 1, true)
	send(t, n2, a, alice, 1, bob)

	now.Add(int64(delivery.DefaultPeerTimeout - time.Millisecond))
	n2.Tick()
	if n := len(a.items(delivery.OutRefuse)); n != 0 {
		t.Fatalf("%d refusals before DefaultPeerTimeout, want none", n)
	}
	now.Add(int64(time.Millisecond))
	n2.Tick()
	waitFor(t, "the timeout's refusal", func() bool { return len(a.items(delivery.OutRefuse)) == 1 })
	if r := a.items(delivery.OutRefuse)[0]; r.MsgID != 1 || r.Code != protocol.CodeRetryLater || r.Reason != "the recipient's home node did not answer" {
		t.Fatalf("refusal %+v, want RETRY_LATER of msg 1, saying the home did not answer", r)
	}
}

// TestResendWhilePending: a session that sends a msg id again while the
// first SEND of it still waits for its answer is tracked once: when it is
// refused at its deadline, nothing of it stays tracked.
func TestResendWhilePending(t *testing.T) {
	now, c, rs, _, a := aliceOnNode2(t)
	n2 := rs[1]
	const alice, bob = 1, 2
	c.set(c.deaf, 1, true)
	send(t, n2, a, alice, 7, bob)
	send(t, n2, a, alice, 7, bob)
	now.Add(int64(time.Second))
	n2.Tick()
	waitFor(t, "the timeout's refusal", func() bool { return len(a.items(delivery.OutRefuse)) == 1 })
	if p, rt := n2.Forwarding(); p != 0 || rt != 0 {
		t.Fatalf("node 2 still tracks %d forwarded SENDs over %d routes after refusing them", p, rt)
	}
}

// TestRouteOutlivesAnEarlierAnswer: msg 1 is answered after msg 2 went to
// a home that then restarts with 2 in hand. 2 is still tracked as sent to
// the old process, so the session's next SEND refuses 2 first, then
// itself, rather than be stored before the resent 2.
func TestRouteOutlivesAnEarlierAnswer(t *testing.T) {
	const alice, bob = 1, 2 // alice on node 2, bob on node 1
	var park *parkStore
	c, rs, ss := newClusterWith(t, 2, clusterOpts{cfg: delivery.Config{Shards: 2}, store: func(node uint32, mem storage.Store) storage.Store {
		if node != 1 {
			return mem
		}
		park = &parkStore{Store: mem, user: bob, parking: true}
		return park
	}})
	t.Cleanup(park.release)
	n2 := rs[1]
	a := newFake()
	login(t, n2, a, alice, 0)

	send(t, n2, a, alice, 1, bob)
	waitFor(t, "msg 1's completion held", func() bool { return park.held() == 1 })
	c.set(c.deaf, 1, true) // node 1 dies with msg 2 in hand
	send(t, n2, a, alice, 2, bob)
	park.release()
	waitFor(t, "the ACCEPT of msg 1", func() bool { return len(a.items(delivery.OutAccept)) == 1 })
	c.mu.Lock()
	c.inst[1]++ // and comes back as a new process
	c.mu.Unlock()
	c.set(c.deaf, 1, false)
	send(t, n2, a, alice, 3, bob)
	wantRefusals(t, a, "the recipient's home node restarted", 2, 3)
	if page, _, err := ss[0].Read(bob, 1, 10, 0, nil); err != nil || len(page) != 1 || page[0].MsgID != 1 {
		t.Fatalf("bob's mailbox %+v (%v), want msg 1 only", page, err)
	}
}

package delivery_test

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// gatedPair is a cluster of two nodes, with small shard queues, whose node
// node's store stalls (stall) on a user homed there that shares user's
// shard; open lets it go (also at the test's end).
func gatedPair(t *testing.T, node uint32, user uint64) ([]*delivery.Router, []storage.Store, *gatedStore, func()) {
	t.Helper()
	gated := &gatedStore{gate: make(chan struct{}), entered: make(chan struct{})}
	_, rs, ss := newClusterWith(t, 2, clusterOpts{cfg: delivery.Config{Shards: 2, QueueLen: 4}, store: func(n uint32, mem storage.Store) storage.Store {
		if n != node {
			return mem
		}
		gated.Store = mem
		return gated
	}})
	r := rs[node-1]
	for u := uint64(3); gated.user == 0; u++ { // above the tests' users 1 and 2
		if uint32(u%2)+1 == node && r.ShardOf(u) == r.ShardOf(user) { // homed on node (fakePeer.Home)
			gated.user = u
		}
	}
	open := sync.OnceFunc(func() { close(gated.gate) })
	t.Cleanup(open)
	return rs, ss, gated, open
}

// TestReceiptPutOffAcrossNodes: bob (node 1) acknowledges alice's (node 2)
// message while alice's shard queue on node 2 is full. The forwarded
// receipt is put off there (ReceiptsDropped) and stays pending in node 1's
// store; node 2 asks node 1 to rescan, and once the queue has room node
// 1's next tick offers it again: it is stored in alice's mailbox once,
// pushed to her, and node 1's pending receipt is settled.
func TestReceiptPutOffAcrossNodes(t *testing.T) {
	const alice, bob = 1, 2 // alice homed on node 2, bob on node 1
	rs, ss, gated, open := gatedPair(t, 2, alice)
	n1, n2 := rs[0], rs[1]

	a, b := newFake(), newFake()
	login(t, n2, a, alice, 0)
	login(t, n1, b, bob, 0)
	send(t, n2, a, alice, 7, bob)
	waitFor(t, "the ACCEPT on alice's node", func() bool { return len(a.items(delivery.OutAccept)) == 1 })
	waitFor(t, "the delivery on bob's node", func() bool { return len(b.items(delivery.OutEntry)) == 1 })

	stall(n2, gated)
	if !n1.Ack(b.s(), delivery.To(bob), 1) {
		t.Fatal("ack busy")
	}
	waitFor(t, "the receipt put off on alice's node", func() bool { return n2.Stats().ReceiptsDropped.Load() == 1 })
	if n := pendingReceipts(t, ss[0]); n != 1 {
		t.Fatalf("%d receipts pending on bob's node after the put-off, want 1", n)
	}
	if got := storedReceipts(t, ss[1], alice); len(got) != 0 {
		t.Fatalf("alice's mailbox holds receipts %+v while her shard is stalled", got)
	}

	open()
	waitFor(t, "the receipt in alice's mailbox", func() bool {
		n1.Tick()
		return len(storedReceipts(t, ss[1], alice)) > 0
	})
	waitFor(t, "bob's node to settle the pending receipt", func() bool { return pendingReceipts(t, ss[0]) == 0 })
	if got := storedReceipts(t, ss[1], alice); len(got) != 1 || got[0].MsgID != 7 || got[0].Read || got[0].Expired {
		t.Fatalf("alice's receipts %+v, want one delivered receipt of msg 7", got)
	}
	waitFor(t, "the receipt pushed to alice", func() bool {
		for _, o := range a.items(delivery.OutEntry) {
			if x, err := protocol.ParseRecord(o.Record); err == nil && x.Type == protocol.TypeReceipt {
				return true
			}
		}
		return false
	})
}

// TestCrashAnswersAReceiptFromAnotherNode: alice's home (node 2) crashes
// while the receipt entry bob's node (node 1) forwarded is being appended
// to her mailbox, and the recovery sees its commit complete. Stored, it has
// node 1 settle its pending receipt; refused (alice's mailbox was full),
// it has node 1 offer the receipt again, which is then stored. Either way
// alice's mailbox ends with one receipt and nothing stays pending.
func TestCrashAnswersAReceiptFromAnotherNode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refused bool // the store refuses the receipt entry in flight
	}{
		{name: "stored"},
		{name: "refused", refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const alice, bob = 1, 2 // alice homed on node 2, bob on node 1
			var crashFor atomic.Uint64
			var park *parkStore
			_, rs, ss := newClusterWith(t, 2, clusterOpts{
				cfg: delivery.Config{Shards: 2, Logger: slog.New(slog.DiscardHandler)},
				store: func(node uint32, mem storage.Store) storage.Store {
					if node != 2 {
						return mem
					}
					if tc.refused {
						mem = &refuseReceiptStore{Store: mem}
					}
					park = &parkStore{Store: mem, user: alice, parking: true}
					return park
				},
				hook: func(node uint32) func(string, uint64) {
					if node != 2 {
						return nil
					}
					return func(worker string, user uint64) {
						if worker == "shard" && user != 0 && crashFor.CompareAndSwap(user, 0) {
							panic("injected")
						}
					}
				},
			})
			t.Cleanup(park.release)
			n1, n2 := rs[0], rs[1]
			x := uint64(3) // homed on node 2, on alice's shard
			for n2.ShardOf(x) != n2.ShardOf(alice) {
				x += 2
			}

			a, b := newFake(), newFake()
			login(t, n1, b, bob, 0)
			send(t, n2, a, alice, 7, bob)
			waitFor(t, "the delivery on bob's node", func() bool { return len(b.items(delivery.OutEntry)) == 1 })
			if !n1.Ack(b.s(), delivery.To(bob), 1) {
				t.Fatal("ack busy")
			}
			waitFor(t, "the receipt entry's completion held", func() bool { return park.held() == 1 })

			crashFor.Store(x)
			n2.Signal(delivery.To(bob), delivery.To(x), 0)
			waitFor(t, "alice's shard to crash", func() bool { return n2.Stats().Crashes.Load() == 1 })
			park.release()
			waitFor(t, "the receipt in alice's mailbox, none pending on bob's node", func() bool {
				n1.Tick()
				return len(storedReceipts(t, ss[1], alice)) > 0 && pendingReceipts(t, ss[0]) == 0
			})
			if got := storedReceipts(t, ss[1], alice); len(got) != 1 || got[0].MsgID != 7 || got[0].Read {
				t.Fatalf("alice's receipts %+v, want one delivered receipt of msg 7", got)
			}
		})
	}
}

// TestSendAcrossNodesToABusyShard: alice (node 2) sends to bob (node 1)
// while bob's shard queue on node 1 is full: the SEND is refused back
// across the nodes, RETRY_LATER with a busy retry_after, and node 2 forgets
// it; once the queue has room the resend is stored once.
func TestSendAcrossNodesToABusyShard(t *testing.T) {
	const alice, bob = 1, 2 // alice homed on node 2, bob on node 1
	rs, ss, gated, open := gatedPair(t, 1, bob)
	n1, n2 := rs[0], rs[1]
	a := newFake()
	login(t, n2, a, alice, 0)

	stall(n1, gated)
	send(t, n2, a, alice, 7, bob)
	got := answer(t, a, 7)
	wantRefuse(t, got, protocol.CodeRetryLater)
	if got.RetryAfter == 0 || got.Reason != "busy" {
		t.Fatalf("refusal %+v, want a busy retry_after", got)
	}
	if p, rt := n2.Forwarding(); p != 0 || rt != 0 {
		t.Fatalf("node 2 still tracks %d forwarded SENDs over %d routes after the refusal", p, rt)
	}

	open()
	waitFor(t, "the resend's ACCEPT", func() bool {
		a.reset()
		send(t, n2, a, alice, 7, bob)
		return answer(t, a, 7).Kind == delivery.OutAccept
	})
	if page, _, err := ss[0].Read(bob, 1, 10, 0, nil); err != nil || len(page) != 1 || page[0].MsgID != 7 {
		t.Fatalf("bob's mailbox %+v (%v), want msg 7 once", page, err)
	}
}

// TestGroupRequestAcrossNodesToABusyHome: alice (node 2) sends to a group
// homed on node 1 while node 1's group worker queue is full: the request is
// refused back across the nodes, RETRY_LATER with a busy retry_after; once
// the worker has room the resend is stored.
func TestGroupRequestAcrossNodesToABusyHome(t *testing.T) {
	const alice, bob, staller = 1, 2, 100 // alice homed on node 2; bob and the staller on node 1
	entered, gate := make(chan struct{}), make(chan struct{})
	_, rs, ss := newClusterWith(t, 2, clusterOpts{
		cfg: delivery.Config{Shards: 2, QueueLen: 4}, // one group worker
		hook: func(node uint32) func(string, uint64) {
			if node != 1 {
				return nil
			}
			return func(worker string, user uint64) {
				if worker == "group" && user == staller {
					close(entered)
					<-gate
				}
			}
		},
	})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)
	n1, n2 := rs[0], rs[1]
	a := newFake()
	login(t, n2, a, alice, 0)
	group := createGroupOn(t, n2, a, alice, 2, 1, bob)

	if !n1.GroupOp(newFake().s(), delivery.To(staller), &protocol.Group{MsgID: 1, Op: protocol.GroupLeave, Group: group}) {
		t.Fatal("GroupOp busy")
	}
	<-entered
	for n1.GroupOp(newFake().s(), delivery.To(staller+2), &protocol.Group{MsgID: 2, Op: protocol.GroupLeave, Group: group}) {
	}
	groupSend(t, n2, a, alice, group, 5)
	got := answer(t, a, 5)
	wantRefuse(t, got, protocol.CodeRetryLater)
	if got.RetryAfter == 0 || got.Reason != "busy" {
		t.Fatalf("refusal %+v, want a busy retry_after", got)
	}

	release()
	waitFor(t, "the resend's ACCEPT", func() bool {
		a.reset()
		groupSend(t, n2, a, alice, group, 5)
		return answer(t, a, 5).Kind == delivery.OutAccept
	})
	if got := groupMessages(t, ss[0], bob); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("bob's group messages %v, want [5]", got)
	}
}

// TestFanoutToABusyMemberShard: a group message's copy for bob, homed on
// another node than the group, while bob's shard queue there is full: the
// message is refused, RETRY_LATER saying why, and nothing is stored for
// bob; once the queue has room the resend stores bob's copy once.
func TestFanoutToABusyMemberShard(t *testing.T) {
	const alice, bob = 2, 1 // alice on node 1, the group's home; bob on node 2
	rs, ss, gated, open := gatedPair(t, 2, bob)
	n1, n2 := rs[0], rs[1]
	a := newFake()
	login(t, n1, a, alice, 0)
	group := createGroupOn(t, n1, a, alice, 2, 1, bob)

	stall(n2, gated)
	groupSend(t, n1, a, alice, group, 5)
	got := answer(t, a, 5)
	wantRefuse(t, got, protocol.CodeRetryLater)
	if got.RetryAfter == 0 || got.Reason != "a member's shard is busy" {
		t.Fatalf("refusal %+v, want a busy retry_after, saying why", got)
	}
	if got := groupMessages(t, ss[1], bob); len(got) != 0 {
		t.Fatalf("bob's group messages %v while his shard was full", got)
	}

	open()
	waitFor(t, "the resend's ACCEPT", func() bool {
		a.reset()
		groupSend(t, n1, a, alice, group, 5)
		return answer(t, a, 5).Kind == delivery.OutAccept
	})
	if got := groupMessages(t, ss[1], bob); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("bob's group messages %v, want [5]", got)
	}
}

package delivery_test

import (
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
	"switchboard/storage/storagetest"
)

// TestExpiredReceiptAcrossNodes: alice (node 2) sends bob (node 1) msg 10,
// which expires unfetched in bob's mailbox, then msg 12. When bob acks
// past both, alice's mailbox on node 2 holds an expired receipt for 10
// naming bob, its expired flag kept across the nodes, and a delivered one
// for 12; nothing stays pending on bob's node.
func TestExpiredReceiptAcrossNodes(t *testing.T) {
	clock := storagetest.NewClock(time.Now())
	_, rs, ss := newClusterWith(t, 2, clusterOpts{
		cfg:  delivery.Config{Shards: 2},
		scfg: storage.Config{Now: clock.Now, MessageTTL: time.Hour, HousekeepingInterval: -1},
	})
	n1, n2 := rs[0], rs[1]
	const alice, bob = 1, 2 // alice homed on node 2, bob on node 1
	a := newFake()
	login(t, n2, a, alice, 0)
	send(t, n2, a, alice, 10, bob)
	waitFor(t, "the ACCEPT of 10", func() bool { return len(a.items(delivery.OutAccept)) == 1 })
	clock.Advance(30 * time.Minute)
	send(t, n2, a, alice, 12, bob)
	waitFor(t, "the ACCEPT of 12", func() bool { return len(a.items(delivery.OutAccept)) == 2 })
	clock.Advance(31 * time.Minute) // 10 is 61 minutes old

	b := newFake()
	login(t, n1, b, bob, 0)
	waitFor(t, "msg 12 at bob", func() bool { return len(b.items(delivery.OutEntry)) == 1 })
	if !n1.Ack(b.s(), delivery.To(bob), b.items(delivery.OutWelcome)[0].Seq) {
		t.Fatal("ack busy")
	}
	waitFor(t, "both receipts in alice's mailbox, none pending on bob's node", func() bool {
		return len(storedReceipts(t, ss[1], alice)) == 2 && noPending(ss[0])
	})
	want := []protocol.Receipt{{MsgID: 10, By: bob, Expired: true}, {MsgID: 12}}
	if got := unordered(storedReceipts(t, ss[1], alice)); got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("alice's receipts %+v, want %+v", got, want)
	}
}

// TestReceiptToADownHome: bob (node 1) acks alice's message while alice's
// home (node 2) is down: the receipt waits on bob's node and reaches
// alice's mailbox once node 2 is back, and bob's node settles it.
func TestReceiptToADownHome(t *testing.T) {
	c, rs, ss := newCluster(t, 2, time.Now)
	n1, n2 := rs[0], rs[1]
	const alice, bob = 1, 2 // alice homed on node 2, bob on node 1
	a, b := newFake(), newFake()
	login(t, n2, a, alice, 0)
	login(t, n1, b, bob, 0)
	send(t, n2, a, alice, 7, bob)
	waitFor(t, "the delivery on bob's node", func() bool { return len(b.items(delivery.OutEntry)) == 1 })

	c.set(c.down, 2, true)
	if !n1.Ack(b.s(), delivery.To(bob), 1) {
		t.Fatal("ack busy")
	}
	waitFor(t, "the receipt held on bob's node", func() bool { return n1.Stats().ReceiptsHeld.Load() > 0 })
	if n := pendingReceipts(t, ss[0]); n != 1 {
		t.Fatalf("%d receipts pending on bob's node, want 1", n)
	}
	c.set(c.down, 2, false)
	waitFor(t, "the receipt in alice's mailbox, none pending on bob's node", func() bool {
		return len(storedReceipts(t, ss[1], alice)) == 1 && pendingReceipts(t, ss[0]) == 0
	})
	if got := storedReceipts(t, ss[1], alice)[0]; got.MsgID != 7 || got.Read || got.Expired {
		t.Fatalf("alice's receipt %+v, want delivered of msg 7", got)
	}
}

// TestReceiptRefusedAcrossNodes: alice's home (node 2) refuses the receipt
// entry that bob's node (node 1) forwarded, her mailbox being full. Node 2
// asks node 1 to offer it again, and node 1's next tick stores it in her
// mailbox, once, and settles its pending receipt.
func TestReceiptRefusedAcrossNodes(t *testing.T) {
	const alice, bob = 1, 2 // alice homed on node 2, bob on node 1
	_, rs, ss := newClusterWith(t, 2, clusterOpts{store: func(node uint32, mem storage.Store) storage.Store {
		if node != 2 {
			return mem
		}
		return &refuseReceiptStore{Store: mem}
	}})
	n1, n2 := rs[0], rs[1]
	a, b := newFake(), newFake()
	login(t, n1, b, bob, 0)
	send(t, n2, a, alice, 7, bob)
	waitFor(t, "the delivery on bob's node", func() bool { return len(b.items(delivery.OutEntry)) == 1 })
	if !n1.Ack(b.s(), delivery.To(bob), 1) {
		t.Fatal("ack busy")
	}
	waitFor(t, "the receipt in alice's mailbox, none pending on bob's node", func() bool {
		n1.Tick()
		return len(storedReceipts(t, ss[1], alice)) > 0 && pendingReceipts(t, ss[0]) == 0
	})
	if got := storedReceipts(t, ss[1], alice); len(got) != 1 || got[0].MsgID != 7 || got[0].Read {
		t.Fatalf("alice's receipts %+v, want one delivered receipt of msg 7", got)
	}
	if n := n2.Stats().ReceiptsRefused.Load(); n != 1 {
		t.Fatalf("ReceiptsRefused = %d on alice's node, want 1", n)
	}
}

package delivery_test

import (
	"slices"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
	"switchboard/storage/storagetest"
)

// receiptsPushed decodes the RECEIPT entries pushed to c, in seq order.
func receiptsPushed(t *testing.T, c *fakeConn) []protocol.Receipt {
	t.Helper()
	var out []protocol.Receipt
	for _, o := range c.items(delivery.OutEntry) {
		f, err := protocol.ParseRecord(o.Record)
		if err != nil {
			t.Fatalf("entry %d: %v", o.Seq, err)
		}
		if f.Type != protocol.TypeReceipt {
			continue
		}
		g, _, err := protocol.ReadFrame(protocol.AppendRecordFrame(nil, f, o.Seq), protocol.MaxServerFrame)
		var x protocol.Receipt
		if err != nil || x.Decode(g) != nil {
			t.Fatalf("receipt record %x: %v", o.Record, err)
		}
		out = append(out, x)
	}
	return out
}

func noPending(store storage.Store) bool {
	n := 0
	_ = store.PendingReceipts(func(storage.PendingReceipt) bool { n++; return true })
	return n == 0
}

// expiryScene: sender 1 (online) sends msg 5 to user 3, who receives and
// acks it, and msgs 10 and 11 to user 2, who stays offline; then msg 12
// to user 2 half a TTL later. After expire (run once 10 and 11 are past
// the TTL, it makes the store delete them), sender 1 must have exactly
// these receipts, whatever their order: delivered for 5, expired for
// 10-11 naming user 2, and the extra ones expire makes. It returns the
// router and store for more checks.
func expiryScene(t *testing.T, scfg storage.Config, expire func(r *delivery.Router), extra ...protocol.Receipt) (*delivery.Router, storage.Store, *fakeConn) {
	t.Helper()
	clock := storagetest.NewClock(time.Now())
	scfg.Now, scfg.MessageTTL = clock.Now, time.Hour
	r, store := newRouter(t, delivery.Config{}, scfg)
	sender := &fakeConn{}
	login(t, r, sender, 1, 0)
	bob := &fakeConn{}
	login(t, r, bob, 3, 0)
	send(t, r, sender, 1, 5, 3)
	send(t, r, sender, 1, 10, 2)
	send(t, r, sender, 1, 11, 2)
	waitFor(t, "msg 5 at user 3", func() bool { return len(bob.items(delivery.OutEntry)) == 1 })
	r.Ack(bob.s(), delivery.To(3), 1)
	waitFor(t, "the delivered receipt", func() bool { return len(receiptsPushed(t, sender)) == 1 })
	clock.Advance(30 * time.Minute)
	send(t, r, sender, 1, 12, 2)
	waitFor(t, "4 ACCEPTs", func() bool { return len(sender.items(delivery.OutAccept)) == 4 })
	clock.Advance(31 * time.Minute) // 10 and 11 are 61 minutes old
	expire(r)
	want := append([]protocol.Receipt{{MsgID: 5}, {MsgID: 10, More: 1, By: 2, Expired: true}}, extra...)
	waitFor(t, "the expired receipt", func() bool { return len(receiptsPushed(t, sender)) == len(want) })
	waitFor(t, "every owed receipt stored", func() bool { return noPending(store) })
	if got := unordered(receiptsPushed(t, sender)); !slices.Equal(got, unordered(want)) {
		t.Fatalf("sender's receipts\n got %+v\nwant %+v", got, want)
	}
	if n := store.Stats().ExpiredReceipts; n != 1 {
		t.Fatalf("store recorded %d expired receipts, want 1 (10-11)", n)
	}
	return r, store, sender
}

// unordered returns xs without their seqs, sorted by msg id.
func unordered(xs []protocol.Receipt) []protocol.Receipt {
	out := slices.Clone(xs)
	for i := range out {
		out[i].Seq = 0
	}
	slices.SortFunc(out, func(a, b protocol.Receipt) int { return int(a.MsgID) - int(b.MsgID) })
	return out
}

// TestExpiredReceiptFullMailbox: an append into user 2's full mailbox
// deletes the expired 10 and 11, and their sender gets an expired RECEIPT.
func TestExpiredReceiptFullMailbox(t *testing.T) {
	other := &fakeConn{}
	expiryScene(t, storage.Config{MaxMailboxMessages: 3, HousekeepingInterval: -1}, func(r *delivery.Router) {
		send(t, r, other, 4, 1, 2) // user 2 holds 10, 11, 12: full
		waitFor(t, "user 4's ACCEPT", func() bool { return len(other.items(delivery.OutAccept)) == 1 })
	})
}

// TestExpiredReceiptSweep: the store's TTL sweep deletes 10 and 11; then
// user 2 logs in and acks up to WELCOME.last, which makes a delivered
// receipt for 12 only.
func TestExpiredReceiptSweep(t *testing.T) {
	r, store, sender := expiryScene(t, storage.Config{HousekeepingInterval: 5 * time.Millisecond}, func(*delivery.Router) {})
	alice := &fakeConn{}
	login(t, r, alice, 2, 0)
	last := alice.items(delivery.OutWelcome)[0].Seq
	waitFor(t, "msg 12 at user 2", func() bool { return len(alice.items(delivery.OutEntry)) == 1 })
	r.Ack(alice.s(), delivery.To(2), last)
	waitFor(t, "the receipt for 12", func() bool { return len(receiptsPushed(t, sender)) == 3 })
	waitFor(t, "every owed receipt stored", func() bool { return noPending(store) })
	if got := receiptsPushed(t, sender)[2]; got != (protocol.Receipt{Seq: 3, MsgID: 12}) { // 1:1 delivered: no by
		t.Fatalf("third receipt %+v, want delivered for 12", got)
	}
}

// TestExpiredReceiptOnAck: user 2 logs in after 10 and 11 expired, before
// any sweep, and acks past them: its ack deletes them, and their sender is
// told they expired, not that they were delivered.
func TestExpiredReceiptOnAck(t *testing.T) {
	expiryScene(t, storage.Config{HousekeepingInterval: -1}, func(r *delivery.Router) {
		alice := &fakeConn{}
		login(t, r, alice, 2, 0)
		waitFor(t, "msg 12 at user 2", func() bool { return len(alice.items(delivery.OutEntry)) == 1 })
		r.Ack(alice.s(), delivery.To(2), alice.items(delivery.OutWelcome)[0].Seq)
	}, protocol.Receipt{MsgID: 12})
}

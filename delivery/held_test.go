package delivery_test

import (
	"sync"
	"testing"

	"switchboard/delivery"
	"switchboard/storage"
)

// gatedStore blocks LastSeq for one user until gate is closed, which stalls
// the shard that owns that user; entered is closed when it starts waiting.
type gatedStore struct {
	storage.Store
	user    uint64
	gate    chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (g *gatedStore) LastSeq(user uint64) (uint64, error) {
	if user == g.user {
		g.once.Do(func() { close(g.entered) })
		<-g.gate
	}
	return g.Store.LastSeq(user)
}

// TestReceiptWaitsForAFullQueue: when the recipient acks while the sender's
// shard queue is full, the delivered receipt waits for room and is stored;
// it is not dropped.
func TestReceiptWaitsForAFullQueue(t *testing.T) {
	const sender = 1
	r, store, mem, rcpts := stalledRouter(t, 4, 1, sender)
	recipient := rcpts[0]

	b := &fakeConn{}
	login(t, r, b, recipient, 0)
	send(t, r, &fakeConn{}, sender, 7, recipient) // the sender is offline: its receipt is stored
	waitFor(t, "the delivery", func() bool { return len(b.items(delivery.OutEntry)) == 1 })

	stall(r, store)
	if !r.Ack(b.s(), delivery.To(recipient), b.items(delivery.OutEntry)[0].Seq) {
		t.Fatal("the recipient's shard is busy")
	}
	waitFor(t, "the receipt to be held", func() bool { return r.Stats().ReceiptsHeld.Load() > 0 })
	close(store.gate)
	waitFor(t, "the receipt in the sender's mailbox", func() bool {
		page, _, err := mem.Read(sender, 1, 10, 0, nil)
		return err == nil && len(page) == 1 && page[0].Kind == storage.KindReceipt && page[0].MsgID == 7
	})
	if n := r.Stats().ReceiptsDropped.Load(); n != 0 {
		t.Fatalf("ReceiptsDropped = %d, want 0", n)
	}
}

// failOnceStore fails the first Ack of one user with ErrCommit, as a
// failed commit would, and passes everything else on.
type failOnceStore struct {
	storage.Store
	user   uint64
	failed sync.Once
}

func (f *failOnceStore) Ack(user, upto uint64, done func(storage.AckResult, error)) {
	fail := false
	if user == f.user {
		f.failed.Do(func() { fail = true })
	}
	if fail {
		done(storage.AckResult{}, storage.ErrCommit)
		return
	}
	f.Store.Ack(user, upto, done)
}

// TestAckAfterAFailedCommit: the recipient's ACK fails to commit and the
// client does not repeat it (it has nothing new to acknowledge). The shard
// offers the ack again by itself, so the entry is deleted and the sender
// gets its delivered receipt without waiting for the recipient's next ACK
// or login.
func TestAckAfterAFailedCommit(t *testing.T) {
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const sender, recipient = 1, 2
	store := &failOnceStore{Store: mem, user: recipient}
	r := startOver(t, delivery.Config{Shards: 2}, store, mem, nil)
	a, b := &fakeConn{}, &fakeConn{}
	login(t, r, a, sender, 0)
	login(t, r, b, recipient, 0)
	send(t, r, a, sender, 7, recipient)
	waitFor(t, "the delivery", func() bool { return len(b.items(delivery.OutEntry)) == 1 })
	if !r.Ack(b.s(), delivery.To(recipient), b.items(delivery.OutEntry)[0].Seq) {
		t.Fatal("the recipient's shard is busy")
	}
	waitFor(t, "the failed ack to be counted", func() bool { return r.Stats().StorageErrors.Load() == 1 })
	waitFor(t, "the delivered receipt in the sender's mailbox", func() bool {
		page, _, err := mem.Read(sender, 1, 10, 0, nil)
		return err == nil && len(page) == 1 && page[0].Kind == storage.KindReceipt && page[0].MsgID == 7
	})
	waitFor(t, "the receipt pushed to the sender", func() bool { return len(a.items(delivery.OutEntry)) == 1 })
	if page, _, err := mem.Read(recipient, 1, 10, 0, nil); err != nil || len(page) != 0 {
		t.Fatalf("the recipient's mailbox still holds %d entries (%v)", len(page), err)
	}
}

// TestReceiptPutOffIsOfferedAgain: with the sender's shard stalled and its
// held receipts at QueueLen, one more delivered receipt is put off
// (ReceiptsDropped) but stays pending in storage; once the shard moves, the
// next tick's rescan offers it again and it reaches the sender's mailbox.
func TestReceiptPutOffIsOfferedAgain(t *testing.T) {
	const sender = 1
	r, store, mem, recipients := stalledRouter(t, 2, 3, sender)
	conns := make([]*fakeConn, len(recipients))
	for i, rc := range recipients {
		conns[i] = &fakeConn{}
		login(t, r, conns[i], rc, 0)
		send(t, r, &fakeConn{}, sender, uint64(10+i), rc) // the sender is offline: receipts are stored
		waitFor(t, "the delivery", func() bool { return len(conns[i].items(delivery.OutEntry)) == 1 })
	}

	stall(r, store)
	for i, rc := range recipients {
		if !r.Ack(conns[i].s(), delivery.To(rc), conns[i].items(delivery.OutEntry)[0].Seq) {
			t.Fatalf("recipient %d's shard is busy", rc)
		}
	}
	waitFor(t, "a receipt put off", func() bool { return r.Stats().ReceiptsDropped.Load() > 0 })
	close(store.gate)
	waitFor(t, "every receipt in the sender's mailbox", func() bool {
		r.Tick()
		page, _, err := mem.Read(sender, 1, 10, 0, nil)
		got := map[uint64]bool{}
		for _, e := range page {
			if e.Kind == storage.KindReceipt {
				got[e.MsgID] = true
			}
		}
		return err == nil && got[10] && got[11] && got[12]
	})
}

// stalledRouter is a router over the memory store with QueueLen queues
// whose sender's shard can be stalled: it returns n recipients on another
// shard than sender, and the store whose gated user (on the sender's
// shard) stalls that shard once it is touched, until gate closes.
func stalledRouter(t *testing.T, queueLen, n int, sender uint64) (*delivery.Router, *gatedStore, storage.Store, []uint64) {
	t.Helper()
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store := &gatedStore{Store: mem, gate: make(chan struct{}), entered: make(chan struct{})}
	r, err := delivery.New(delivery.Config{Shards: 2, QueueLen: queueLen}, store)
	if err != nil {
		t.Fatal(err)
	}
	var recipients []uint64
	for u := uint64(2); len(recipients) < n || store.user == 0; u++ {
		switch {
		case r.ShardOf(u) != r.ShardOf(sender) && len(recipients) < n:
			recipients = append(recipients, u)
		case r.ShardOf(u) == r.ShardOf(sender) && store.user == 0:
			store.user = u
		}
	}
	r.Start(sessions)
	t.Cleanup(func() {
		r.Stop()
		mem.Close()
	})
	return r, store, mem, recipients
}

// stall stalls the sender's shard on the gated user, then fills its queue.
func stall(r *delivery.Router, store *gatedStore) {
	r.Logout(newFake().s(), delivery.To(store.user))
	<-store.entered
	for r.Ack(newFake().s(), delivery.To(store.user), 1) {
	}
}

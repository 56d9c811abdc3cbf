package delivery_test

import (
	"sync"
	"testing"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// TestGaugesShardQueueAndHeld: a stalled shard's full queue shows in
// Gauges.ShardQueues at its bound, a receipt held for it in
// Gauges.HeldReceipts of the shard that holds it; both fall back to zero
// once the shard runs again.
func TestGaugesShardQueueAndHeld(t *testing.T) {
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const sender, queueLen = 1, 4
	store := &gatedStore{Store: mem, gate: make(chan struct{}), entered: make(chan struct{})}
	r, err := delivery.New(delivery.Config{Shards: 2, QueueLen: queueLen}, store)
	if err != nil {
		t.Fatal(err)
	}
	var recipient uint64
	for u := uint64(2); recipient == 0 || store.user == 0; u++ {
		switch {
		case r.ShardOf(u) != r.ShardOf(sender) && recipient == 0:
			recipient = u
		case r.ShardOf(u) == r.ShardOf(sender) && store.user == 0:
			store.user = u // stalls the sender's shard
		}
	}
	r.Start(sessions)
	t.Cleanup(func() {
		r.Stop()
		mem.Close()
	})
	full, holder := r.ShardOf(sender), r.ShardOf(recipient)

	b := &fakeConn{}
	login(t, r, b, recipient, 0)
	send(t, r, &fakeConn{}, sender, 7, recipient)
	waitFor(t, "the delivery", func() bool { return len(b.items(delivery.OutEntry)) == 1 })
	if g := r.Gauges(); g.QueueLen != queueLen || len(g.ShardQueues) != 2 || len(g.HeldReceipts) != 2 || len(g.GroupQueues) != 1 {
		t.Fatalf("Gauges %+v: want 2 shards, 1 group worker, queues of %d", g, queueLen)
	}

	r.Logout(newFake().s(), delivery.To(store.user))
	<-store.entered
	for r.Ack(newFake().s(), delivery.To(store.user), 1) {
	}
	if got := r.Gauges().ShardQueues[full]; got != queueLen {
		t.Fatalf("stalled shard's queue %d, want its bound %d", got, queueLen)
	}
	if !r.Ack(b.s(), delivery.To(recipient), b.items(delivery.OutEntry)[0].Seq) {
		t.Fatal("the recipient's shard is busy")
	}
	waitFor(t, "the receipt held", func() bool { return r.Gauges().HeldReceipts[holder] == 1 })
	if got := r.Gauges().HeldReceipts[full]; got != 0 {
		t.Fatalf("the stalled shard holds %d receipts, want 0", got)
	}
	close(store.gate)
	waitFor(t, "queues and held receipts empty", func() bool {
		g := r.Gauges()
		return g.ShardQueues[full] == 0 && g.HeldReceipts[holder] == 0
	})
}

// TestGaugesGroupQueue: requests behind a group worker that is busy show
// in Gauges.GroupQueues.
func TestGaugesGroupQueue(t *testing.T) {
	r, release := stalledGroupWorker(t, 8)
	c := &fakeConn{}
	for i := range 3 {
		if !r.GroupOp(c.s(), delivery.To(6), &protocol.Group{MsgID: uint64(2 + i), Op: protocol.GroupCreate, Group: uint64(200 + i)}) {
			t.Fatal("GroupOp busy")
		}
	}
	if got := r.Gauges().GroupQueues[0]; got != 3 {
		t.Fatalf("group worker's queue %d, want 3", got)
	}
	release()
	waitFor(t, "the group queue empty", func() bool { return r.Gauges().GroupQueues[0] == 0 })
}

// stalledGroupWorker starts a router with one group worker and queues of
// queueLen, and stalls the worker on a create by user 5 until release is
// called (at the latest when the test ends).
func stalledGroupWorker(t *testing.T, queueLen int) (r *delivery.Router, release func()) {
	t.Helper()
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r, err = delivery.New(delivery.Config{Shards: 2, QueueLen: queueLen}, mem)
	if err != nil {
		t.Fatal(err)
	}
	entered, gate := make(chan struct{}), make(chan struct{})
	r.SetPanicHook(func(worker string, user uint64) {
		if worker == "group" && user == 5 {
			close(entered)
			<-gate
		}
	})
	r.Start(sessions)
	release = sync.OnceFunc(func() { close(gate) })
	t.Cleanup(func() {
		release()
		r.Stop()
		mem.Close()
	})
	if !r.GroupOp(newFake().s(), delivery.To(5), &protocol.Group{MsgID: 1, Op: protocol.GroupCreate, Group: 100}) {
		t.Fatal("GroupOp busy")
	}
	<-entered
	return r, release
}

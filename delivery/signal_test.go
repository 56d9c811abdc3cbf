package delivery_test

import (
	"sync"
	"testing"

	"switchboard/delivery"
	"switchboard/storage"
)

// countingStore counts the mailbox reads (LastSeq, Read) made for each user.
type countingStore struct {
	storage.Store
	mu    sync.Mutex
	reads map[uint64]int
}

func (c *countingStore) count(user uint64) {
	c.mu.Lock()
	c.reads[user]++
	c.mu.Unlock()
}

func (c *countingStore) LastSeq(user uint64) (uint64, error) {
	c.count(user)
	return c.Store.LastSeq(user)
}

func (c *countingStore) Read(user, from uint64, maxEntries, maxBytes int, dst []storage.Entry) ([]storage.Entry, uint64, error) {
	c.count(user)
	return c.Store.Read(user, from, maxEntries, maxBytes, dst)
}

func (c *countingStore) readsOf(user uint64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads[user]
}

// TestGroupSignalPerShard: a signal to a group of 500 members costs at most
// one queue entry per shard and no storage read for an offline member; the
// online members (one on each shard) get it, the sender does not.
func TestGroupSignalPerShard(t *testing.T) {
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{Store: mem, reads: map[uint64]int{}}
	const shards, members, group, sender = 4, 500, 77, 1
	r, err := delivery.New(delivery.Config{Shards: shards}, store)
	if err != nil {
		t.Fatal(err)
	}
	var list []uint64
	for m := uint64(2); m <= members; m++ {
		list = append(list, m)
	}
	if _, _, err := mem.ChangeGroup(storage.GroupChange{Group: group, Actor: sender, MsgID: 1, Op: storage.GroupCreate, Members: list}); err != nil {
		t.Fatal(err)
	}
	settled := make(chan error, 1)
	mem.SettleGroupEvent(sender, 1, func(err error) { settled <- err }) // no announcement to redo
	if err := <-settled; err != nil {
		t.Fatal(err)
	}
	r.Start(sessions)
	t.Cleanup(func() {
		r.Stop()
		mem.Close()
	})
	online := map[int]uint64{} // shard → its online member
	conns := map[uint64]*fakeConn{}
	for m := uint64(2); m <= members; m++ {
		if _, ok := online[r.ShardOf(m)]; !ok {
			online[r.ShardOf(m)] = m
			conns[m] = &fakeConn{}
			login(t, r, conns[m], m, 0)
		}
	}
	if len(online) != shards {
		t.Fatalf("online members on %d shards, want %d", len(online), shards)
	}
	sc := &fakeConn{}
	login(t, r, sc, sender, 0)
	before := r.Stats().SignalRequests.Load()

	r.SignalGroup(delivery.To(sender), group, 1)
	for m, c := range conns {
		waitFor(t, "the signal", func() bool { return len(c.items(delivery.OutSignal)) == 1 })
		if s := c.items(delivery.OutSignal)[0]; s.Peer != sender || s.MsgID != 1 || s.Ref != group {
			t.Fatalf("member %d got %+v", m, s)
		}
	}
	if n := r.Stats().SignalRequests.Load() - before; n != shards {
		t.Fatalf("%d shard requests for one group signal, want one per shard: %d", n, shards)
	}
	for m := uint64(2); m <= members; m++ {
		if _, ok := conns[m]; !ok && store.readsOf(m) != 0 {
			t.Fatalf("offline member %d: %d storage reads", m, store.readsOf(m))
		}
	}
	if n := len(sc.items(delivery.OutSignal)); n != 0 {
		t.Fatalf("the sender got %d of its own signals", n)
	}
}

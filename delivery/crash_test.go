package delivery_test

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// crashRouter starts a router over an in-memory store whose workers panic
// when the hook says so.
func crashRouter(t *testing.T, hook func(worker string, user uint64)) *delivery.Router {
	t.Helper()
	store, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := delivery.New(delivery.Config{Shards: 4, Logger: slog.New(slog.DiscardHandler)}, store)
	if err != nil {
		t.Fatal(err)
	}
	r.SetPanicHook(hook)
	r.Start(sessions)
	t.Cleanup(func() {
		r.Stop()
		store.Close()
	})
	return r
}

// accepted returns the ids c was ACCEPTed.
func accepted(c *fakeConn) map[uint64]bool {
	ids := map[uint64]bool{}
	for _, o := range c.items(delivery.OutAccept) {
		ids[o.MsgID] = true
	}
	return ids
}

// TestShardCrash: a panic in a shard closes the sessions of its users with
// INTERNAL and refuses the request in hand with RETRY_LATER; the shard is
// restarted with its users reloaded from storage. Nothing ACCEPTed is lost
// (the crashed shard's user gets every accepted entry after logging in
// again), and a user on another shard is served throughout.
func TestShardCrash(t *testing.T) {
	const a, b = 1, 2
	var crashFor atomic.Uint64 // the next request for this user panics
	r := crashRouter(t, func(worker string, user uint64) {
		if worker == "shard" && user != 0 && crashFor.CompareAndSwap(user, 0) {
			panic("injected")
		}
	})
	if r.ShardOf(a) == r.ShardOf(b) {
		t.Fatal("users a and b share a shard; pick others")
	}
	sender, ca, cb := &fakeConn{}, &fakeConn{}, &fakeConn{}
	login(t, r, ca, a, 0)
	login(t, r, cb, b, 0)
	for id := uint64(1); id <= 6; id++ {
		send(t, r, sender, 9, id, a)
		send(t, r, sender, 9, 100+id, b)
	}
	waitFor(t, "12 ACCEPTs", func() bool { return len(accepted(sender)) == 12 })

	crashFor.Store(a)
	send(t, r, sender, 9, 7, a)
	waitFor(t, "the refusal of msg 7", func() bool { return len(sender.items(delivery.OutRefuse)) == 1 })
	ref := sender.items(delivery.OutRefuse)[0]
	if ref.MsgID != 7 || ref.Code != protocol.CodeRetryLater || ref.RetryAfter == 0 || ref.Reason == "" {
		t.Fatalf("refusal %+v, want msg 7 RETRY_LATER with a retry delay and a reason", ref)
	}
	waitFor(t, "a's session closed", func() bool { return ca.closeCode() == protocol.CodeInternal })
	if n := r.Stats().Crashes.Load(); n != 1 {
		t.Fatalf("%d crashes counted, want 1", n)
	}
	if cb.closeCode() != 0 || r.Ready() != nil {
		t.Fatalf("b closed with %v, ready %v: want b open and the router ready", cb.closeCode(), r.Ready())
	}

	// b is served; a logs in again and gets all six, then the retried 7.
	send(t, r, sender, 9, 107, b)
	waitFor(t, "b's 7 entries", func() bool { return len(cb.items(delivery.OutEntry)) == 7 })
	again := &fakeConn{}
	login(t, r, again, a, 0)
	if !r.Send(sender.s(), delivery.Message{From: delivery.To(9), To: a, MsgID: 7, Retry: true, Record: record(9, 7, "m7")}) {
		t.Fatal("busy")
	}
	waitFor(t, "a's 7 entries", func() bool { return len(again.items(delivery.OutEntry)) == 7 })
	for i, e := range again.items(delivery.OutEntry) {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
	}
	waitFor(t, "14 ACCEPTs", func() bool { return len(accepted(sender)) == 14 })
}

// TestGroupWorkerCrash: a panic in a group worker refuses the request in
// hand with RETRY_LATER, and the worker serves the retry.
func TestGroupWorkerCrash(t *testing.T) {
	var crash atomic.Bool
	crash.Store(true)
	r := crashRouter(t, func(worker string, _ uint64) {
		if worker == "group" && crash.CompareAndSwap(true, false) {
			panic("injected")
		}
	})
	c := &fakeConn{}
	g := &protocol.Group{MsgID: 1, Op: protocol.GroupCreate, Members: []uint64{2, 3}}
	if !r.GroupOp(c.s(), delivery.To(1), g) {
		t.Fatal("busy")
	}
	waitFor(t, "the refusal", func() bool { return len(c.items(delivery.OutRefuse)) == 1 })
	if ref := c.items(delivery.OutRefuse)[0]; ref.Code != protocol.CodeRetryLater || ref.Reason == "" {
		t.Fatalf("refusal %+v, want RETRY_LATER with a reason", ref)
	}
	if !r.GroupOp(c.s(), delivery.To(1), g) {
		t.Fatal("busy")
	}
	waitFor(t, "the ACCEPT of the retry", func() bool { return len(c.items(delivery.OutAccept)) == 1 })
	if r.Stats().Crashes.Load() != 1 {
		t.Fatalf("%d crashes, want 1", r.Stats().Crashes.Load())
	}
}

// TestCrashLoopNotReady: a shard that crashes at every request is left down
// after five crashes, and the router reports not ready instead of looping.
func TestCrashLoopNotReady(t *testing.T) {
	r := crashRouter(t, func(worker string, user uint64) {
		if worker == "shard" && user == 5 {
			panic("injected")
		}
	})
	sender := &fakeConn{}
	for id := uint64(1); id <= 5; id++ {
		send(t, r, sender, 9, id, 5)
		waitFor(t, "the refusal", func() bool { return len(sender.items(delivery.OutRefuse)) == int(id) })
	}
	waitFor(t, "not ready", func() bool { return errors.Is(r.Ready(), delivery.ErrWorkerDown) })
	if n := r.Stats().Crashes.Load(); n != 5 {
		t.Fatalf("%d crashes, want 5", n)
	}
}

package delivery_test

import (
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// crashRouter starts a router over an in-memory store whose workers panic
// when the hook says so.
func crashRouter(t *testing.T, hook func(worker string, user uint64)) *delivery.Router {
	t.Helper()
	r, _ := crashRouterWith(t, crashSetup{}, hook)
	return r
}

// crashSetup is how crashRouterWith makes its router.
type crashSetup struct {
	scfg storage.Config // the memory store's
	// store returns the router's store given the memory store; nil: the
	// memory store itself.
	store func(mem storage.Store) storage.Store
	// drain is how long a crashed shard waits for its storage operations
	// (Router.SetCrashDrain); zero: the router's own.
	drain time.Duration
}

// crashRouterWith is crashRouter made as c says; it returns the memory
// store too. At the test's end the router must stop: a shard whose count
// of operations in flight went wrong never does.
func crashRouterWith(t *testing.T, c crashSetup, hook func(worker string, user uint64)) (*delivery.Router, storage.Store) {
	t.Helper()
	mem, err := storage.NewMemory(c.scfg)
	if err != nil {
		t.Fatal(err)
	}
	var store storage.Store = mem
	if c.store != nil {
		store = c.store(mem)
	}
	r, err := delivery.New(delivery.Config{Shards: 4, Logger: slog.New(slog.DiscardHandler)}, store)
	if err != nil {
		t.Fatal(err)
	}
	r.SetPanicHook(hook)
	if c.drain > 0 {
		r.SetCrashDrain(c.drain)
	}
	r.Start(sessions)
	t.Cleanup(func() {
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			r.Stop()
		}()
		waitFor(t, "the router to stop", func() bool { return closed(stopped) })
		mem.Close()
	})
	return r, mem
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

// parkStore holds back the completions of the appends to one recipient's
// mailbox once parking starts, as a stalled committer would (the entries
// are committed or refused already), until release hands them back in
// order; everything else passes through.
type parkStore struct {
	storage.Store
	user uint64
	// whole holds the appends themselves, not only their completions:
	// what is held is not in the store yet.
	whole bool

	mu      sync.Mutex
	parking bool
	parked  []func()
}

func (s *parkStore) Append(e storage.Entry, done func(error)) {
	if e.Recipient != s.user {
		s.Store.Append(e, done)
		return
	}
	if s.whole {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.parking {
			s.parked = append(s.parked, func() { s.Store.Append(e, done) })
			return
		}
		s.Store.Append(e, done)
		return
	}
	s.Store.Append(e, func(err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.parking {
			done(err)
			return
		}
		s.parked = append(s.parked, func() { done(err) })
	})
}

// park holds back the completions of appends from now on.
func (s *parkStore) park() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.parking = true
}

// held returns how many completions are held back.
func (s *parkStore) held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.parked)
}

// release hands back the held completions, in order, and stops parking.
func (s *parkStore) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, done := range s.parked {
		done()
	}
	s.parked, s.parking = nil, false
}

// TestShardCrashAnswersAppendsInFlight: a shard crashes with three appends
// to one user's mailbox handed to storage and not yet completed: a 1:1
// message that is stored, a group message's copy that is stored, and a
// 1:1 message the full mailbox refused. Recovery waits for them and
// answers each exactly once as its commit ended: ACCEPT for the stored
// message, ACCEPT for the group message once its copy is durable, REFUSE
// MAILBOX_FULL for the refused one; the request in hand is refused
// RETRY_LATER. The user then reads the stored entries in order.
func TestShardCrashAnswersAppendsInFlight(t *testing.T) {
	const a, owner, sender = 1, 2, 9
	var crashFor atomic.Uint64 // the next request for this user panics
	var park *parkStore
	r, mem := crashRouterWith(t, crashSetup{scfg: storage.Config{MaxMailboxMessages: 3}, store: func(mem storage.Store) storage.Store {
		park = &parkStore{Store: mem, user: a}
		return park
	}}, func(worker string, user uint64) {
		if worker == "shard" && user != 0 && crashFor.CompareAndSwap(user, 0) {
			panic("injected")
		}
	})
	t.Cleanup(park.release) // before the router stops: it waits for them
	x := uint64(100)        // a user on a's shard, whose request crashes it
	for r.ShardOf(x) != r.ShardOf(a) {
		x++
	}

	s, o := newFake(), newFake()
	created := groupOp(t, r, o, owner, 50, protocol.GroupCreate, 0, a)
	wantAccept(t, created, created.Ref)
	waitEvents(t, mem, 1, a) // a's mailbox: 1 of 3

	park.park()
	send(t, r, s, sender, 1, a) // 2 of 3: stored
	waitFor(t, "msg 1's completion held", func() bool { return park.held() == 1 })
	if !r.Send(o.s(), delivery.Message{From: delivery.To(owner), To: created.Ref, Group: true, MsgID: 60, Retry: true, Record: record(owner, 60, "g")}) {
		t.Fatal("group Send busy")
	}
	waitFor(t, "the group copy's completion held", func() bool { return park.held() == 2 })
	send(t, r, s, sender, 2, a) // the mailbox is full: refused
	waitFor(t, "msg 2's completion held", func() bool { return park.held() == 3 })

	crashFor.Store(x)
	send(t, r, s, sender, 3, x)
	waitFor(t, "a's shard to crash", func() bool { return r.Stats().Crashes.Load() == 1 })
	park.release()
	send(t, r, s, sender, 4, x) // after the recovery: answered once it is done
	waitFor(t, "msg 4's ACCEPT", func() bool { return accepted(s)[4] })

	var acc, ref []uint64
	for _, out := range s.items(delivery.OutAccept) {
		acc = append(acc, out.MsgID)
	}
	refusals := s.items(delivery.OutRefuse)
	for _, out := range refusals {
		ref = append(ref, out.MsgID)
	}
	slices.Sort(acc)
	slices.Sort(ref)
	if !slices.Equal(acc, []uint64{1, 4}) || !slices.Equal(ref, []uint64{2, 3}) {
		t.Fatalf("the sender got ACCEPTs %v and REFUSEs %v, want ACCEPTs [1 4] and REFUSEs [2 3], once each", acc, ref)
	}
	for _, out := range refusals {
		switch out.MsgID {
		case 2:
			if out.Code != protocol.CodeMailboxFull || out.RetryAfter != 5000 {
				t.Errorf("msg 2 refused %+v, want MAILBOX_FULL after 5000 ms", out)
			}
		case 3:
			if out.Code != protocol.CodeRetryLater || out.RetryAfter == 0 {
				t.Errorf("msg 3 refused %+v, want RETRY_LATER with a retry delay", out)
			}
		}
	}
	if got := o.items(delivery.OutAccept); len(got) != 2 || got[1].MsgID != 60 {
		t.Fatalf("the group's owner got ACCEPTs %+v, want the create's and msg 60's", got)
	}
	if n := len(o.items(delivery.OutRefuse)); n != 0 {
		t.Fatalf("the group's owner got %d refusals", n)
	}

	c := newFake()
	login(t, r, c, a, 0)
	waitFor(t, "a's three entries", func() bool { return len(c.items(delivery.OutEntry)) == 3 })
	var got []protocol.Type
	for i, e := range c.items(delivery.OutEntry) {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
		f, err := protocol.ParseRecord(e.Record)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, f.Type)
	}
	if want := []protocol.Type{protocol.TypeGroupEvent, protocol.TypeDeliver, protocol.TypeDeliver}; !slices.Equal(got, want) {
		t.Fatalf("a's entries are of types %v, want %v (the event, msg 1, msg 60)", got, want)
	}
}

// crashGaveUpOnMsg1 sets up what the two tests below share: a router
// over park, which holds the appends to a (whole: the appends themselves,
// else their completions), and the sender's msg 1 to a held; then a's
// shard crashes on msg 2 (to another user on it), its recovery gives up
// waiting for msg 1, and msg 3 to that user is ACCEPTed. It returns the
// router, the memory store under park, and the sender's connection.
func crashGaveUpOnMsg1(t *testing.T, whole bool) (r *delivery.Router, mem storage.Store, park *parkStore, s *fakeConn) {
	t.Helper()
	const a, sender = 1, 9
	var crashFor atomic.Uint64 // the next request for this user panics
	r, mem = crashRouterWith(t, crashSetup{drain: 10 * time.Millisecond, store: func(mem storage.Store) storage.Store {
		park = &parkStore{Store: mem, user: a, whole: whole}
		return park
	}}, func(worker string, user uint64) {
		if worker == "shard" && user != 0 && crashFor.CompareAndSwap(user, 0) {
			panic("injected")
		}
	})
	t.Cleanup(park.release)
	x := uint64(100) // a user on a's shard, whose request crashes it
	for r.ShardOf(x) != r.ShardOf(a) {
		x++
	}

	s = newFake()
	park.park()
	send(t, r, s, sender, 1, a)
	waitFor(t, "msg 1 held", func() bool { return park.held() == 1 })
	crashFor.Store(x)
	send(t, r, s, sender, 2, x)
	waitFor(t, "a's shard to crash", func() bool { return r.Stats().Crashes.Load() == 1 })
	send(t, r, s, sender, 3, x) // taken once the recovery gave up on msg 1
	waitFor(t, "msg 3's ACCEPT", func() bool { return accepted(s)[3] })
	return r, mem, park, s
}

// TestLateAppendAfterACrashGaveUpWaiting: a shard crashes with an append
// in flight that reaches the store only after the recovery gave up
// waiting for it, and a later message to the same mailbox was stored
// meanwhile (under a seq the store's high-water mark allowed). The late
// append does not overwrite it: the store refuses it, and its sender gets
// a retryable refusal, so what it resends is stored after; every message
// ACCEPTed is in the mailbox, each once.
func TestLateAppendAfterACrashGaveUpWaiting(t *testing.T) {
	const a, sender = 1, 9
	r, mem, park, s := crashGaveUpOnMsg1(t, true)

	park.mu.Lock()
	park.parking = false // msg 4's append goes through; msg 1's stays held
	park.mu.Unlock()
	send(t, r, s, sender, 4, a)
	waitFor(t, "msg 4's ACCEPT", func() bool { return accepted(s)[4] })
	park.release()
	waitFor(t, "msg 1's answer", func() bool { return accepted(s)[1] || len(s.items(delivery.OutRefuse)) > 1 })
	if accepted(s)[1] {
		t.Fatal("msg 1, appended under a seq the mailbox had moved past, was ACCEPTed")
	}
	ref := s.items(delivery.OutRefuse)
	if len(ref) != 2 || ref[1].MsgID != 1 || ref[1].RetryAfter == 0 {
		t.Fatalf("refusals %+v, want msg 2's then a retryable one of msg 1", ref)
	}
	page, _, err := mem.Read(a, 1, 10, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 || page[0].MsgID != 4 {
		t.Fatalf("a's mailbox holds %+v, want msg 4 alone", page)
	}
	send(t, r, s, sender, 1, a) // the resend (flag B in a client)
	waitFor(t, "msg 1's ACCEPT", func() bool { return accepted(s)[1] })
	if page, _, err = mem.Read(a, 1, 10, 0, nil); err != nil || len(page) != 2 || page[0].MsgID != 4 || page[1].MsgID != 1 {
		t.Fatalf("a's mailbox holds %+v (%v), want msg 4 then msg 1", page, err)
	}
}

// TestCompletionAfterACrashGaveUpWaiting: a shard crashes with an append
// in flight whose completion comes only after the recovery gave up
// waiting for it. The shard serves requests meanwhile; the late
// completion still answers its sender ACCEPT, once, without being counted
// against the operations started since, so the router still stops.
func TestCompletionAfterACrashGaveUpWaiting(t *testing.T) {
	const a, sender = 1, 9
	r, _, park, s := crashGaveUpOnMsg1(t, false)
	if accepted(s)[1] {
		t.Fatal("msg 1 ACCEPTed before its commit completed")
	}

	park.release()
	waitFor(t, "msg 1's ACCEPT", func() bool { return accepted(s)[1] })
	send(t, r, s, sender, 4, a)
	waitFor(t, "msg 4's ACCEPT", func() bool { return accepted(s)[4] })
	var acc []uint64
	for _, out := range s.items(delivery.OutAccept) {
		acc = append(acc, out.MsgID)
	}
	slices.Sort(acc)
	if !slices.Equal(acc, []uint64{1, 3, 4}) {
		t.Fatalf("the sender got ACCEPTs %v, want [1 3 4], once each", acc)
	}
	if ref := s.items(delivery.OutRefuse); len(ref) != 1 || ref[0].MsgID != 2 || ref[0].Code != protocol.CodeRetryLater {
		t.Fatalf("refusals %+v, want msg 2's RETRY_LATER", ref)
	}
}

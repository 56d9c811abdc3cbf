package delivery_test

import (
	"slices"
	"sync/atomic"
	"testing"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// flakyStore fails the next failChanges group changes, as a transient
// storage error would, and counts reads of group membership.
type flakyStore struct {
	storage.Store
	failChanges atomic.Int32
	memberReads atomic.Int32
}

func (s *flakyStore) ChangeGroup(c storage.GroupChange) (*storage.GroupEvent, bool, error) {
	if s.failChanges.Add(-1) >= 0 {
		return nil, false, storage.ErrCommit
	}
	return s.Store.ChangeGroup(c)
}

func (s *flakyStore) Members(g uint64) ([]storage.Member, error) {
	s.memberReads.Add(1)
	return s.Store.Members(g)
}

func newGroupRouter(t *testing.T, scfg storage.Config) (*delivery.Router, *flakyStore) {
	t.Helper()
	mem, err := storage.NewMemory(scfg)
	if err != nil {
		t.Fatal(err)
	}
	store := &flakyStore{Store: mem}
	r := startOver(t, delivery.Config{}, store, mem, nil)
	return r, store
}

// reset forgets what c was given.
func (c *fakeConn) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = nil
}

// answer waits for the ACCEPT or REFUSE of msgID on c.
func answer(t *testing.T, c *fakeConn, msgID uint64) delivery.Outbound {
	t.Helper()
	var got delivery.Outbound
	waitFor(t, "an answer", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, o := range c.out {
			if (o.Kind == delivery.OutAccept || o.Kind == delivery.OutRefuse) && o.MsgID == msgID {
				got = o
				return true
			}
		}
		return false
	})
	return got
}

// groupOp submits a GROUP request and returns its answer.
func groupOp(t *testing.T, r *delivery.Router, c *fakeConn, actor, msgID uint64, op protocol.GroupOp, group uint64, members ...uint64) delivery.Outbound {
	t.Helper()
	if !r.GroupOp(c.s(), delivery.To(actor), &protocol.Group{MsgID: msgID, Op: op, Group: group, Members: members}) {
		t.Fatal("GroupOp busy")
	}
	return answer(t, c, msgID)
}

func wantAccept(t *testing.T, o delivery.Outbound, ref uint64) {
	t.Helper()
	if o.Kind != delivery.OutAccept || o.Ref != ref {
		t.Fatalf("answer %+v, want ACCEPT with ref %d", o, ref)
	}
}

func wantRefuse(t *testing.T, o delivery.Outbound, code protocol.Code) {
	t.Helper()
	if o.Kind != delivery.OutRefuse || o.Code != code {
		t.Fatalf("answer %+v, want REFUSE %v", o, code)
	}
}

// events returns the GROUP_EVENTs stored for user, in seq order.
func events(t *testing.T, s storage.Store, user uint64) []protocol.GroupEvent {
	t.Helper()
	es, _, err := s.Read(user, 1, 1000, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []protocol.GroupEvent
	for _, e := range es {
		if e.Kind != storage.KindGroupEvent {
			continue
		}
		rec, err := protocol.ParseRecord(e.Value)
		if err != nil {
			t.Fatal(err)
		}
		f, _, err := protocol.ReadFrame(protocol.AppendRecordFrame(nil, rec, e.Seq), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var ev protocol.GroupEvent
		if err := ev.Decode(f); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// waitEvents waits until each of users has n group events stored.
func waitEvents(t *testing.T, s storage.Store, n int, users ...uint64) {
	t.Helper()
	for _, u := range users {
		waitFor(t, "group events", func() bool { return len(events(t, s, u)) >= n })
		if got := events(t, s, u); len(got) != n {
			t.Fatalf("user %d has %d group events, want %d: %+v", u, len(got), n, got)
		}
	}
}

func members(t *testing.T, s storage.Store, g uint64) []storage.Member {
	t.Helper()
	ms, err := s.Members(g)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// TestGroupCreateAfterATransientFailure: a create whose commit failed is
// refused and leaves nothing; its retry with the same msg_id makes the
// whole group, and every member hears of it once.
func TestGroupCreateAfterATransientFailure(t *testing.T) {
	r, store := newGroupRouter(t, storage.Config{})
	owner := &fakeConn{}
	store.failChanges.Store(1)
	o := groupOp(t, r, owner, 1, 7, protocol.GroupCreate, 0, 2, 3, 4)
	if o.Kind != delivery.OutRefuse || o.Code != protocol.CodeStorage || o.RetryAfter == 0 {
		t.Fatalf("create during a storage failure: %+v, want REFUSE STORAGE with a retry_after", o)
	}
	owner.reset()
	o = groupOp(t, r, owner, 1, 7, protocol.GroupCreate, 0, 2, 3, 4)
	if o.Kind != delivery.OutAccept || o.Ref == 0 {
		t.Fatalf("retried create: %+v", o)
	}
	g := o.Ref
	want := []storage.Member{{ID: 1, Role: storage.RoleOwner}, {ID: 2, Role: storage.RoleMember}, {ID: 3, Role: storage.RoleMember}, {ID: 4, Role: storage.RoleMember}}
	if ms := members(t, store, g); !slices.Equal(ms, want) {
		t.Fatalf("members %v, want %v", ms, want)
	}
	waitEvents(t, store, 1, 1, 2, 3, 4)
	ev := events(t, store, 3)[0]
	if ev.Group != g || ev.Actor != 1 || ev.Op != protocol.GroupCreate || !slices.Equal(ev.Members, []uint64{1, 2, 3, 4}) {
		t.Fatalf("create event %+v", ev)
	}
}

// TestGroupRules: who may change what, what a refused change leaves, and
// that every GROUP request is answered with its group and deduplicated.
func TestGroupRules(t *testing.T) {
	r, store := newGroupRouter(t, storage.Config{MaxGroupMembers: 5})
	c := &fakeConn{}
	g := groupOp(t, r, c, 1, 1, protocol.GroupCreate, 0, 2, 3).Ref
	wantAccept(t, groupOp(t, r, c, 1, 2, protocol.GroupPromote, g, 2), g)
	waitEvents(t, store, 2, 1, 2, 3)

	// Another admin can neither remove nor demote the owner.
	wantRefuse(t, groupOp(t, r, c, 2, 3, protocol.GroupRemove, g, 1), protocol.CodeForbidden)
	wantRefuse(t, groupOp(t, r, c, 2, 4, protocol.GroupDemote, g, 1), protocol.CodeForbidden)
	wantRefuse(t, groupOp(t, r, c, 3, 5, protocol.GroupAdd, g, 9), protocol.CodeForbidden)
	wantRefuse(t, groupOp(t, r, c, 9, 6, protocol.GroupAdd, g, 9), protocol.CodeNotMember)
	// Re-adding an admin keeps them an admin and announces nothing.
	wantAccept(t, groupOp(t, r, c, 1, 7, protocol.GroupAdd, g, 2), g)
	// An add past the cap adds nobody.
	wantRefuse(t, groupOp(t, r, c, 2, 8, protocol.GroupAdd, g, 4, 5, 6), protocol.CodeGroupFull)
	want := []storage.Member{{ID: 1, Role: storage.RoleOwner}, {ID: 2, Role: storage.RoleAdmin}, {ID: 3, Role: storage.RoleMember}}
	if ms := members(t, store, g); !slices.Equal(ms, want) {
		t.Fatalf("members after refused changes %v, want %v", ms, want)
	}
	// A retried add is accepted again and announced once.
	wantAccept(t, groupOp(t, r, c, 2, 9, protocol.GroupAdd, g, 4), g)
	c.reset()
	wantAccept(t, groupOp(t, r, c, 2, 9, protocol.GroupAdd, g, 4), g)
	waitEvents(t, store, 3, 1, 2, 3)
	waitEvents(t, store, 1, 4)
	for _, u := range []uint64{1, 2, 3} {
		evs := events(t, store, u)
		if ev := evs[2]; ev.Op != protocol.GroupAdd || ev.Actor != 2 || !slices.Equal(ev.Members, []uint64{4}) {
			t.Fatalf("user %d: add event %+v", u, ev)
		}
	}
	if n := r.Stats().StorageErrors.Load(); n != 0 {
		t.Fatalf("%d storage errors counted", n)
	}
}

// TestNoSuchGroup: a SEND, GROUP or SIGNAL to a group that does not exist
// is a bad recipient, not a storage error to retry.
func TestNoSuchGroup(t *testing.T) {
	r, store := newGroupRouter(t, storage.Config{})
	c := &fakeConn{}
	const missing = 1 << 30
	wantRefuse(t, groupOp(t, r, c, 1, 1, protocol.GroupAdd, missing, 2), protocol.CodeBadRecipient)
	wantRefuse(t, groupOp(t, r, c, 1, 2, protocol.GroupLeave, missing), protocol.CodeBadRecipient)
	if !r.Send(c.s(), delivery.Message{From: delivery.To(1), To: missing, Group: true, MsgID: 3, Retry: false, Record: record(1, 3, "x")}) {
		t.Fatal("SendGroup busy")
	}
	wantRefuse(t, answer(t, c, 3), protocol.CodeBadRecipient)
	reads := store.memberReads.Load()
	r.SignalGroup(delivery.To(1), missing, 1)
	waitFor(t, "the signal's lookup", func() bool { return store.memberReads.Load() > reads })
	// The signal went through its worker before this send's answer came.
	if !r.Send(c.s(), delivery.Message{From: delivery.To(1), To: missing, Group: true, MsgID: 4, Retry: false, Record: record(1, 4, "x")}) {
		t.Fatal("SendGroup busy")
	}
	wantRefuse(t, answer(t, c, 4), protocol.CodeBadRecipient)
	if n := r.Stats().StorageErrors.Load(); n != 0 {
		t.Fatalf("%d storage errors counted for a missing group", n)
	}
}

// TestGroupEventFinishedAfterACrash: a change committed without its
// announcement (the process died between the two) is announced when the
// next router starts, and settled.
func TestGroupEventFinishedAfterACrash(t *testing.T) {
	store, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	const g = 1 << 29
	ev, _, err := store.ChangeGroup(storage.GroupChange{Group: g, Actor: 1, MsgID: 5, Op: storage.GroupCreate, Members: []uint64{2, 3}})
	if err != nil || ev == nil {
		t.Fatal(ev, err)
	}
	r, err := delivery.New(delivery.Config{}, store)
	if err != nil {
		t.Fatal(err)
	}
	r.Start(sessions)
	defer r.Stop()
	waitEvents(t, store, 1, 1, 2, 3)
	waitFor(t, "the event settled", func() bool {
		n := 0
		if err := store.PendingGroupEvents(func(storage.GroupEvent) bool { n++; return true }); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	if n := r.Stats().GroupEventsRedone.Load(); n != 1 {
		t.Fatalf("GroupEventsRedone = %d, want 1", n)
	}
}

// TestGroupEventRetryStoresOnlyMissingCopies: when one member's copy of an
// event is refused, the request is refused; its retry stores the missing
// copy only.
func TestGroupEventRetryStoresOnlyMissingCopies(t *testing.T) {
	r, store := newGroupRouter(t, storage.Config{MaxMailboxMessages: 2})
	c := &fakeConn{}
	g := groupOp(t, r, c, 1, 1, protocol.GroupCreate, 0, 2, 3).Ref
	waitEvents(t, store, 1, 1, 2, 3)
	send(t, r, c, 9, 2, 3) // member 3's mailbox is now full
	wantAccept(t, answer(t, c, 2), 0)
	wantRefuse(t, groupOp(t, r, c, 1, 3, protocol.GroupAdd, g, 4), protocol.CodeMailboxFull)
	waitEvents(t, store, 2, 1, 2)
	waitEvents(t, store, 1, 4)
	// Member 3 reads its mailbox; the retry then stores its copy only.
	ackAll(t, store, 3, 2)
	c.reset()
	wantAccept(t, groupOp(t, r, c, 1, 3, protocol.GroupAdd, g, 4), g)
	waitEvents(t, store, 1, 3, 4)
	waitEvents(t, store, 2, 1, 2)
	if evs := events(t, store, 3); evs[0].Op != protocol.GroupAdd {
		t.Fatalf("member 3 got %+v", evs)
	}
}

func ackAll(t *testing.T, s storage.Store, user, upto uint64) {
	t.Helper()
	ack := make(chan error, 1)
	s.Ack(user, upto, func(_ storage.AckResult, err error) { ack <- err })
	if err := <-ack; err != nil {
		t.Fatal(err)
	}
}

// TestGroupQueueFull: while a group worker is busy and its queue full, a
// group message and a group change for its groups are not taken (Send and
// GroupOp report false, counted Busy, for the gateway to refuse them
// RETRY_LATER) and a group signal is dropped and counted, not as busy (it
// is refused to nobody, so it raises no one's retry_after); once the worker
// moves, what was queued is answered and new requests are taken.
func TestGroupQueueFull(t *testing.T) {
	r, release := stalledGroupWorker(t, 2)
	c := newFake()
	for id := uint64(2); id <= 3; id++ {
		if !r.GroupOp(c.s(), delivery.To(6), &protocol.Group{MsgID: id, Op: protocol.GroupCreate}) {
			t.Fatal("GroupOp busy with room in the queue")
		}
	}
	busy, dropped := r.Stats().Busy.Load(), r.Stats().SignalsDropped.Load()
	if r.Send(c.s(), delivery.Message{From: delivery.To(6), To: 100, Group: true, MsgID: 4, Record: record(6, 4, "x")}) {
		t.Fatal("a group Send was taken by a full queue")
	}
	if r.GroupOp(c.s(), delivery.To(6), &protocol.Group{MsgID: 5, Op: protocol.GroupCreate}) {
		t.Fatal("a GroupOp was taken by a full queue")
	}
	if got := r.Stats().Busy.Load() - busy; got != 2 {
		t.Fatalf("Busy grew by %d, want 2", got)
	}
	r.SignalGroup(delivery.To(6), 100, protocol.SignalTyping)
	if got := r.Stats().SignalsDropped.Load() - dropped; got != 1 {
		t.Fatalf("SignalsDropped grew by %d, want 1", got)
	}
	if got := r.Stats().Busy.Load() - busy; got != 2 {
		t.Fatalf("Busy grew by %d with the dropped signal, want still 2: nothing was refused, nobody resends", got)
	}
	if n := r.Stats().Sends.Load(); n != 0 {
		t.Fatalf("Sends %d, want 0: the group Send was not taken", n)
	}

	release()
	wantAccept(t, answer(t, c, 2), delivery.GroupID(6, 2))
	wantAccept(t, answer(t, c, 3), delivery.GroupID(6, 3))
	wantAccept(t, groupOp(t, r, c, 6, 5, protocol.GroupCreate, 0), delivery.GroupID(6, 5))
	for _, o := range append(c.items(delivery.OutAccept), c.items(delivery.OutRefuse)...) {
		if o.MsgID == 4 {
			t.Fatalf("msg 4, never taken, was answered: %+v", o)
		}
	}
}

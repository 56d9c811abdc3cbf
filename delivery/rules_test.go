package delivery_test

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// holdStore stores the one append that match picks but holds back its
// completion until release, as a slow committer callback would; every
// other call passes through.
type holdStore struct {
	storage.Store
	match func(e storage.Entry) bool

	mu   sync.Mutex
	held func()
}

func (s *holdStore) Append(e storage.Entry, done func(error)) {
	if !s.match(e) {
		s.Store.Append(e, done)
		return
	}
	s.Store.Append(e, func(err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.held = func() { done(err) }
	})
}

func (s *holdStore) holding() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held != nil
}

func (s *holdStore) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held != nil {
		s.held()
		s.held = nil
	}
}

// closed reports whether ch is closed, for waitFor.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestFinishAnswersEveryQueuedRequest: Finish (a handover's stop) answers
// every request already queued, where Stop drops them. The one shard has
// an append in flight (its completion held, MaxInFlight 1), and 1:1 sends,
// a group message's copy and a group change's copies wait in its queue.
// Finish starts; once the shard's stop is closed (a Resume waiting for room
// in the full queue gives up), the completion comes: every send is then
// accepted and stored, the group message and change too, and Finish
// returns.
func TestFinishAnswersEveryQueuedRequest(t *testing.T) {
	const (
		sender, recipient, owner, added = 1, 2, 3, 4
		n                               = 6 // 1:1 sends: one in flight, the rest queued
	)
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store := &holdStore{Store: mem, match: func(e storage.Entry) bool {
		return e.Kind == storage.KindMessage && e.Sender == sender && e.MsgID == 1
	}}
	r := startOver(t, delivery.Config{Shards: 1, MaxInFlight: 1, QueueLen: 32}, store, mem, store.release)

	s, o := &fakeConn{}, &fakeConn{}
	created := groupOp(t, r, o, owner, 50, protocol.GroupCreate, 0, recipient)
	wantAccept(t, created, created.Ref)
	g := created.Ref

	send(t, r, s, sender, 1, recipient)
	waitFor(t, "msg 1's completion held", store.holding)
	// The shard waits for that completion (MaxInFlight 1): what follows
	// stays in its queue.
	for id := uint64(2); id <= n; id++ {
		send(t, r, s, sender, id, recipient)
	}
	if !r.Send(o.s(), delivery.Message{From: delivery.To(owner), To: g, Group: true, MsgID: 60, Retry: true, Record: record(owner, 60, "g")}) {
		t.Fatal("group Send busy")
	}
	if !r.GroupOp(o.s(), delivery.To(owner), &protocol.Group{MsgID: 61, Op: protocol.GroupAdd, Group: g, Members: []uint64{added}}) {
		t.Fatal("GroupOp busy")
	}
	// The group worker handles requests in order: once a send to a group
	// that does not exist is refused, it has queued the copies of both.
	if !r.Send(o.s(), delivery.Message{From: delivery.To(owner), To: 1 << 30, Group: true, MsgID: 62, Record: record(owner, 62, "x")}) {
		t.Fatal("group Send busy")
	}
	wantRefuse(t, answer(t, o, 62), protocol.CodeBadRecipient)

	// Fill the rest of the queue with resumes; the one that finds it full
	// waits for room until the shard's stop is closed.
	stopClosed := make(chan struct{})
	go func() {
		defer close(stopClosed)
		for u := uint64(1000); r.Resume(newFake().s(), delivery.To(u), 0, 0); u++ {
		}
	}()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		r.Finish()
	}()
	waitFor(t, "the shard's stop to be closed", func() bool { return closed(stopClosed) })
	store.release()
	waitFor(t, "Finish to return", func() bool { return closed(finished) })

	var ids []uint64
	for _, a := range s.items(delivery.OutAccept) {
		ids = append(ids, a.MsgID)
	}
	slices.Sort(ids)
	if want := []uint64{1, 2, 3, 4, 5, 6}; !slices.Equal(ids, want) {
		t.Fatalf("the sender got ACCEPTs for %v, want one each for %v (refused: %+v)", ids, want, s.items(delivery.OutRefuse))
	}
	wantAccept(t, answer(t, o, 60), 0)
	wantAccept(t, answer(t, o, 61), g)

	es, _, err := mem.Read(recipient, 1, 100, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	groupMsg, addEvent := false, false
	for _, e := range es {
		switch {
		case e.Kind == storage.KindMessage && e.Sender == sender:
			got = append(got, e.MsgID)
		case e.Kind == storage.KindGroupMessage && e.MsgID == 60:
			groupMsg = true
		case e.Kind == storage.KindGroupEvent && e.MsgID == 61:
			addEvent = true
		}
	}
	if want := []uint64{1, 2, 3, 4, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("the recipient's mailbox holds msgs %v, want %v", got, want)
	}
	if !groupMsg || !addEvent {
		t.Fatalf("the recipient's mailbox lacks the group message (%v) or the add event (%v)", groupMsg, addEvent)
	}
	if evs := events(t, mem, added); len(evs) != 1 || evs[0].Op != protocol.GroupAdd {
		t.Fatalf("the added member has events %+v, want the add", evs)
	}
}

// groupMsgs returns the msg ids of the group messages stored for user.
func groupMsgs(t *testing.T, s storage.Store, user uint64) []uint64 {
	t.Helper()
	es, _, err := s.Read(user, 1, 1000, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, e := range es {
		if e.Kind == storage.KindGroupMessage {
			ids = append(ids, e.MsgID)
		}
	}
	return ids
}

// TestGroupSendAfterMembershipChanges: a group worker caches a group's
// members, and a change must drop that cache: after a member is removed
// the next message does not reach it, and after one is added it does.
func TestGroupSendAfterMembershipChanges(t *testing.T) {
	r, store := newRouter(t, delivery.Config{}, storage.Config{})
	owner := &fakeConn{}
	c3 := &fakeConn{}
	login(t, r, c3, 3, 0)
	g := groupOp(t, r, owner, 1, 1, protocol.GroupCreate, 0, 2, 3).Ref
	sendGroup := func(msgID uint64) {
		t.Helper()
		if !r.Send(owner.s(), delivery.Message{From: delivery.To(1), To: g, Group: true, MsgID: msgID, Record: record(1, msgID, "g")}) {
			t.Fatal("group Send busy")
		}
		wantAccept(t, answer(t, owner, msgID), 0)
	}
	check := func(user uint64, want ...uint64) {
		t.Helper()
		if got := groupMsgs(t, store, user); !slices.Equal(got, want) {
			t.Fatalf("user %d holds group messages %v, want %v", user, got, want)
		}
	}

	sendGroup(10) // loads the members into the cache
	check(2, 10)
	check(3, 10)

	wantAccept(t, groupOp(t, r, owner, 1, 11, protocol.GroupRemove, g, 3), g)
	sendGroup(12) // its ACCEPT waits for every copy, 3's if it had one
	check(2, 10, 12)
	check(3, 10)
	// 3 was pushed what it holds (the create and remove events, msg 10),
	// nothing more.
	settle(t, r, c3, 3)
	es, _, err := store.Read(3, 1, 1000, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pushed := c3.items(delivery.OutEntry); len(pushed) != len(es) {
		t.Fatalf("removed member 3 was pushed %d entries, holds %d", len(pushed), len(es))
	}

	wantAccept(t, groupOp(t, r, owner, 1, 13, protocol.GroupAdd, g, 4), g)
	sendGroup(14)
	check(2, 10, 12, 14)
	check(3, 10)
	check(4, 14)
}

// refuseReceiptStore refuses the first receipt entry appended with
// ErrMailboxFull (the sender's mailbox is full) and passes everything
// else on.
type refuseReceiptStore struct {
	storage.Store
	refused atomic.Bool
}

func (s *refuseReceiptStore) Append(e storage.Entry, done func(error)) {
	if e.Kind == storage.KindReceipt && s.refused.CompareAndSwap(false, true) {
		done(storage.ErrMailboxFull)
		return
	}
	s.Store.Append(e, done)
}

// receiptStored reports whether sender's mailbox holds a receipt for msgID.
func receiptStored(s storage.Store, sender, msgID uint64) bool {
	page, _, err := s.Read(sender, 1, 100, 0, nil)
	if err != nil {
		return false
	}
	for _, e := range page {
		if e.Kind == storage.KindReceipt && e.MsgID == msgID {
			return true
		}
	}
	return false
}

// pendingReceipts counts the receipts pending in s.
func pendingReceipts(t *testing.T, s storage.Store) int {
	t.Helper()
	n := 0
	if err := s.PendingReceipts(func(storage.PendingReceipt) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRefusedReceiptIsOfferedAgain: a delivered receipt whose entry the
// store refuses stays pending, and the refusal asks for a rescan: the next
// tick offers it again and it reaches the sender's mailbox.
func TestRefusedReceiptIsOfferedAgain(t *testing.T) {
	const sender, recipient = 1, 2
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store := &refuseReceiptStore{Store: mem}
	r := startOver(t, delivery.Config{}, store, mem, nil)
	b := &fakeConn{}
	login(t, r, b, recipient, 0)
	send(t, r, &fakeConn{}, sender, 7, recipient) // the sender is offline: its receipt is stored
	waitFor(t, "the delivery", func() bool { return len(b.items(delivery.OutEntry)) == 1 })
	if !r.Ack(b.s(), delivery.To(recipient), b.items(delivery.OutEntry)[0].Seq) {
		t.Fatal("Ack busy")
	}
	waitFor(t, "the receipt refused", func() bool { return r.Stats().ReceiptsRefused.Load() == 1 })
	if n := pendingReceipts(t, mem); n != 1 {
		t.Fatalf("%d receipts pending after the refusal, want 1", n)
	}
	waitFor(t, "the receipt in the sender's mailbox", func() bool {
		r.Tick()
		return receiptStored(mem, sender, 7)
	})
	waitFor(t, "the pending receipt settled", func() bool { return pendingReceipts(t, mem) == 0 })
}

// TestStartOffersPendingReceipts: a delivered receipt left pending in
// storage (a stop or crash came between the ack and the receipt's entry)
// is offered by Start and reaches the sender's mailbox, with no tick's
// rescan asked for.
func TestStartOffersPendingReceipts(t *testing.T) {
	const sender, recipient = 1, 2
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	appended := make(chan error, 1)
	mem.Append(storage.Entry{Recipient: recipient, Seq: 1, Kind: storage.KindMessage, Sender: sender, MsgID: 7, Value: record(sender, 7, "m")}, func(err error) { appended <- err })
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	ackAll(t, mem, recipient, 1)
	if n := pendingReceipts(t, mem); n != 1 {
		t.Fatalf("%d receipts pending before Start, want 1", n)
	}

	r, err := delivery.New(delivery.Config{}, mem)
	if err != nil {
		t.Fatal(err)
	}
	r.Start(sessions)
	t.Cleanup(r.Stop)
	waitFor(t, "the receipt in the sender's mailbox", func() bool { return receiptStored(mem, sender, 7) })
	waitFor(t, "the pending receipt settled", func() bool { return pendingReceipts(t, mem) == 0 })
	if n := r.Stats().ReceiptsReplayed.Load(); n != 1 {
		t.Fatalf("ReceiptsReplayed = %d, want 1", n)
	}
}

// TestAckOfLastGivesUpTheBacklog: an ACK of WELCOME.last before the
// backlog was sent deletes every entry up to it, received or not
// (PROTOCOL.md 8.3: a client that gives up on what it did not get), and
// the next message comes after it; the window does not wait for ACKs of
// entries no one will send.
func TestAckOfLastGivesUpTheBacklog(t *testing.T) {
	const window = 4
	r, store := newRouter(t, delivery.Config{Window: window}, storage.Config{})
	sender := &fakeConn{}
	for id := uint64(1); id <= 3*window; id++ {
		send(t, r, sender, 1, id, 2)
	}
	waitFor(t, "the backlog stored", func() bool { return len(sender.items(delivery.OutAccept)) == 3*window })
	c := &fakeConn{}
	login(t, r, c, 2, 0)
	last := c.items(delivery.OutWelcome)[0].Seq
	if last != 3*window {
		t.Fatalf("WELCOME last = %d, want %d", last, 3*window)
	}
	if !r.Ack(c.s(), delivery.To(2), last) {
		t.Fatal("Ack busy")
	}
	send(t, r, sender, 1, 100, 2)
	waitFor(t, "the next message after the backlog given up", func() bool {
		es := c.items(delivery.OutEntry)
		return len(es) > 0 && es[len(es)-1].Seq == last+1
	})
	for _, e := range c.items(delivery.OutEntry) {
		if e.Seq > window && e.Seq <= last {
			t.Fatalf("seq %d was pushed after the client acknowledged through %d", e.Seq, last)
		}
	}
	waitFor(t, "the mailbox emptied through last", func() bool {
		es, _, err := store.Read(2, 1, 100, 0, nil)
		return err == nil && len(es) == 1 && es[0].Seq == last+1
	})
}

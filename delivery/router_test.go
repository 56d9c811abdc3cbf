package delivery_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/internal/testutil"
	"switchboard/protocol"
	"switchboard/storage"
)

// fakeConn is a session that records what it is given.
type fakeConn struct {
	mu     sync.Mutex
	out    []delivery.Outbound
	closed protocol.Code
	refuse bool   // Push returns false (a closed or over-cap connection)
	id     uint64 // its session id, given on first use (s)
}

// sessions is the tests' delivery.Sessions: it hands each session's items
// to its fakeConn. Every router in the tests starts with it.
var sessions = &fakeSessions{byID: map[uint64]*fakeConn{}}

type fakeSessions struct {
	mu   sync.Mutex
	byID map[uint64]*fakeConn
	next uint64
}

func (fs *fakeSessions) get(s delivery.Session) *fakeConn {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.byID[s.ID]
}

func (fs *fakeSessions) Push(s delivery.Session, o delivery.Outbound) bool {
	if c := fs.get(s); c != nil {
		return c.Push(o)
	}
	return false
}

func (fs *fakeSessions) Close(s delivery.Session, code protocol.Code) {
	if c := fs.get(s); c != nil {
		c.Close(code)
	}
}

// newFake returns a fresh session.
func newFake() *fakeConn { return &fakeConn{} }

// s returns c's session, registering c on first use.
func (c *fakeConn) s() delivery.Session {
	sessions.mu.Lock()
	defer sessions.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id == 0 {
		sessions.next++
		c.id = sessions.next
		sessions.byID[c.id] = c
	}
	return delivery.Session{ID: c.id}
}

func (c *fakeConn) Push(o delivery.Outbound) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse || c.closed != 0 {
		return false
	}
	c.out = append(c.out, o)
	return true
}

func (c *fakeConn) Close(code protocol.Code) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed == 0 {
		c.closed = code
	}
}

// items returns the pushed items of kind k.
func (c *fakeConn) items(k delivery.OutKind) []delivery.Outbound {
	c.mu.Lock()
	defer c.mu.Unlock()
	var r []delivery.Outbound
	for _, o := range c.out {
		if o.Kind == k {
			r = append(r, o)
		}
	}
	return r
}

func (c *fakeConn) closeCode() protocol.Code {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// newRouter starts a router over an in-memory store.
func newRouter(t *testing.T, cfg delivery.Config, scfg storage.Config) (*delivery.Router, storage.Store) {
	t.Helper()
	store, err := storage.NewMemory(scfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := delivery.New(cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	r.Start(sessions)
	t.Cleanup(func() {
		r.Stop()
		store.Close()
	})
	return r, store
}

// startOver starts a router with cfg on store, a wrapper of mem: at the
// test's end before runs (a held completion's release, say), the router
// stops and mem closes.
func startOver(t *testing.T, cfg delivery.Config, store, mem storage.Store, before func()) *delivery.Router {
	t.Helper()
	r, err := delivery.New(cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	r.Start(sessions)
	t.Cleanup(func() {
		if before != nil {
			before() // a test that failed before doing it
		}
		r.Stop()
		mem.Close()
	})
	return r
}

func record(from, msgID uint64, body string) []byte {
	d := protocol.Deliver{From: from, MsgID: msgID, Time: protocol.Stamp(time.Now()), Body: []byte(body)}
	return d.AppendRecord(nil)
}

// settle waits until user's shard has handled everything queued before
// now, with c as the user's connection: a signal goes through the same
// queue, so once c has it, any push a request before it caused was made.
// Negative checks use it instead of sleeping.
func settle(t *testing.T, r *delivery.Router, c *fakeConn, user uint64) {
	t.Helper()
	const probe = 1<<63 + 1 // a sender no test uses
	n := 0
	for _, o := range c.items(delivery.OutSignal) {
		if o.Peer == probe {
			n++
		}
	}
	r.Signal(delivery.To(probe), delivery.To(user), 0)
	waitFor(t, "the shard to settle", func() bool {
		m := 0
		for _, o := range c.items(delivery.OutSignal) {
			if o.Peer == probe {
				m++
			}
		}
		return m > n
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, what, cond)
}

// send submits a message and fails if the router is busy.
func send(t *testing.T, r *delivery.Router, c *fakeConn, from, msgID, to uint64) {
	t.Helper()
	if !r.Send(c.s(), delivery.Message{From: delivery.To(from), To: to, MsgID: msgID, Retry: true, Record: record(from, msgID, fmt.Sprintf("m%d", msgID))}) {
		t.Fatalf("Send %d busy", msgID)
	}
}

func login(t *testing.T, r *delivery.Router, c *fakeConn, user, ack uint64) {
	t.Helper()
	if !r.Login(c.s(), delivery.To(user), ack) {
		t.Fatal("Login busy")
	}
	waitFor(t, "WELCOME", func() bool { return len(c.items(delivery.OutWelcome)) == 1 })
}

// TestSeqAssignment: a recipient's entries get seqs 1, 2, 3… in the order
// the sends reached its shard, each sender is ACCEPTed, and WELCOME names
// the last seq at login.
func TestSeqAssignment(t *testing.T) {
	r, store := newRouter(t, delivery.Config{}, storage.Config{})
	sender := &fakeConn{}
	for id := uint64(1); id <= 5; id++ {
		send(t, r, sender, 1, id, 2)
	}
	waitFor(t, "5 ACCEPTs", func() bool { return len(sender.items(delivery.OutAccept)) == 5 })
	for i, a := range sender.items(delivery.OutAccept) {
		if a.MsgID != uint64(i+1) {
			t.Fatalf("ACCEPT %d is for msg %d", i, a.MsgID)
		}
	}
	es, _, err := store.Read(2, 1, 100, 0, nil)
	if err != nil || len(es) != 5 {
		t.Fatalf("stored %d entries (%v)", len(es), err)
	}
	for i, e := range es {
		if e.Seq != uint64(i+1) || e.MsgID != uint64(i+1) || e.Sender != 1 || e.Kind != storage.KindMessage {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	c := &fakeConn{}
	login(t, r, c, 2, 0)
	if w := c.items(delivery.OutWelcome)[0]; w.Seq != 5 {
		t.Fatalf("WELCOME last = %d, want 5", w.Seq)
	}
	waitFor(t, "the backlog", func() bool { return len(c.items(delivery.OutEntry)) == 5 })
	// A live message takes seq 6 and is pushed as soon as it is durable.
	send(t, r, sender, 1, 6, 2)
	waitFor(t, "the live entry", func() bool { return len(c.items(delivery.OutEntry)) == 6 })
	for i, o := range c.items(delivery.OutEntry) {
		if o.Seq != uint64(i+1) {
			t.Fatalf("pushed entry %d has seq %d", i, o.Seq)
		}
	}
	if st := r.Stats(); st.DeliveredStored.Load() != 5 || st.DeliveredLive.Load() != 1 {
		t.Fatalf("stored %d live %d", st.DeliveredStored.Load(), st.DeliveredLive.Load())
	}
}

// TestWindow: only Window entries are pushed until an ACK makes room; the
// ack deletes through its seq.
func TestWindow(t *testing.T) {
	r, store := newRouter(t, delivery.Config{Window: 4}, storage.Config{})
	sender := &fakeConn{}
	for id := uint64(1); id <= 10; id++ {
		send(t, r, sender, 1, id, 2)
	}
	waitFor(t, "ACCEPTs", func() bool { return len(sender.items(delivery.OutAccept)) == 10 })
	c := &fakeConn{}
	login(t, r, c, 2, 0)
	waitFor(t, "a window", func() bool { return len(c.items(delivery.OutEntry)) == 4 })
	settle(t, r, c, 2) // a wrong fifth push would come before this
	if n := len(c.items(delivery.OutEntry)); n != 4 {
		t.Fatalf("%d entries pushed with a window of 4", n)
	}
	r.Ack(c.s(), delivery.To(2), 3)
	waitFor(t, "3 more", func() bool { return len(c.items(delivery.OutEntry)) == 7 })
	settle(t, r, c, 2)
	if n := len(c.items(delivery.OutEntry)); n != 7 {
		t.Fatalf("%d entries pushed after ack 3 with a window of 4", n)
	}
	waitFor(t, "the delete", func() bool {
		es, _, _ := store.Read(2, 1, 1, 0, nil)
		return len(es) == 1 && es[0].Seq == 4
	})
	// An ack from a connection that is not (or no longer) the user's is ignored.
	r.Ack(newFake().s(), delivery.To(2), 7)
	settle(t, r, c, 2)
	if n := len(c.items(delivery.OutEntry)); n != 7 {
		t.Fatalf("a stranger's ack moved the window: %d pushed", n)
	}
}

// TestWindowBytes: with large entries the window closes on bytes before
// entries, and an ack of everything sent reopens it.
func TestWindowBytes(t *testing.T) {
	r, _ := newRouter(t, delivery.Config{WindowBytes: 10_000}, storage.Config{})
	sender := &fakeConn{}
	big := string(make([]byte, 3000))
	for id := uint64(1); id <= 10; id++ {
		if !r.Send(sender.s(), delivery.Message{From: delivery.To(1), To: 2, MsgID: id, Retry: false, Record: record(1, id, big)}) {
			t.Fatal("busy")
		}
	}
	waitFor(t, "ACCEPTs", func() bool { return len(sender.items(delivery.OutAccept)) == 10 })
	c := &fakeConn{}
	login(t, r, c, 2, 0)
	waitFor(t, "a byte window", func() bool { return len(c.items(delivery.OutEntry)) >= 3 })
	settle(t, r, c, 2)
	if n := len(c.items(delivery.OutEntry)); n != 4 { // 3 × ~3 KiB < 10,000 ≤ 4 × ~3 KiB
		t.Fatalf("%d entries of 3 KiB pushed with WindowBytes 10,000, want 4", n)
	}
	r.Ack(c.s(), delivery.To(2), 4)
	waitFor(t, "the next window", func() bool { return len(c.items(delivery.OutEntry)) == 8 })
}

// TestReceiptsGrouping: one ACK over entries from two senders gives each
// sender one RECEIPT per run of consecutive msg ids.
func TestReceiptsGrouping(t *testing.T) {
	r, store := newRouter(t, delivery.Config{}, storage.Config{})
	s1, s2 := &fakeConn{}, &fakeConn{}
	// User 2's mailbox: s1 10,11,12; s2 50; s1 13 (a new run); s1 20.
	for _, m := range []struct{ from, id uint64 }{{1, 10}, {1, 11}, {1, 12}, {3, 50}, {1, 13}, {1, 20}} {
		c := s1
		if m.from == 3 {
			c = s2
		}
		send(t, r, c, m.from, m.id, 2)
		waitFor(t, "ACCEPT", func() bool {
			return len(c.items(delivery.OutAccept)) > 0 && c.items(delivery.OutAccept)[len(c.items(delivery.OutAccept))-1].MsgID == m.id
		})
	}
	c := &fakeConn{}
	login(t, r, c, 2, 0)
	waitFor(t, "6 entries", func() bool { return len(c.items(delivery.OutEntry)) == 6 })
	r.Ack(c.s(), delivery.To(2), 6)
	receipts := func(user uint64, n int) []protocol.Receipt {
		var out []protocol.Receipt
		waitFor(t, fmt.Sprintf("%d receipts for %d", n, user), func() bool {
			es, _, _ := store.Read(user, 1, 100, 0, nil)
			out = out[:0]
			for _, e := range es {
				f, err := protocol.ParseRecord(e.Value)
				if err != nil || f.Type != protocol.TypeReceipt || e.Kind != storage.KindReceipt {
					t.Fatalf("entry %+v: %v %v", e, f.Type, err)
				}
				x := protocol.Receipt{Seq: e.Seq}
				full := protocol.AppendRecordFrame(nil, f, e.Seq)
				g, _, err := protocol.ReadFrame(full, protocol.MaxServerFrame)
				if err != nil || x.Decode(g) != nil {
					t.Fatalf("receipt record %x: %v", e.Value, err)
				}
				out = append(out, x)
			}
			return len(out) == n
		})
		return out
	}
	got := receipts(1, 3)
	runs := map[[2]uint64]bool{}
	for _, x := range got {
		if x.Read || x.By != 0 {
			t.Fatalf("receipt %+v", x)
		}
		runs[[2]uint64{x.MsgID, x.More}] = true
	}
	// s1's ids in seq order are 10,11,12,(s2's 50),13,20: runs 10..12, 13, 20.
	for _, w := range [][2]uint64{{10, 2}, {13, 0}, {20, 0}} {
		if !runs[w] {
			t.Fatalf("receipts for sender 1: %+v, missing run %v", got, w)
		}
	}
	if x := receipts(3, 1)[0]; x.MsgID != 50 || x.More != 0 {
		t.Fatalf("receipt for sender 3: %+v", x)
	}
	if got := r.Stats().Receipts.Load(); got != 4 {
		t.Fatalf("Receipts = %d, want 4", got)
	}
}

// TestDuplicate: the same (sender, msg id) twice is ACCEPTed twice and
// stored once.
func TestDuplicate(t *testing.T) {
	r, store := newRouter(t, delivery.Config{}, storage.Config{})
	sender := &fakeConn{}
	c := &fakeConn{}
	login(t, r, c, 2, 0)
	send(t, r, sender, 1, 7, 2)
	send(t, r, sender, 1, 7, 2)
	send(t, r, sender, 1, 8, 2)
	waitFor(t, "3 ACCEPTs", func() bool { return len(sender.items(delivery.OutAccept)) == 3 })
	waitFor(t, "2 entries", func() bool { return len(c.items(delivery.OutEntry)) == 2 })
	settle(t, r, c, 2) // every append completed (3 ACCEPTs); a wrong third push comes before this
	es, _, _ := store.Read(2, 1, 100, 0, nil)
	if len(es) != 2 || es[0].MsgID != 7 || es[1].MsgID != 8 {
		t.Fatalf("stored %+v", es)
	}
	if pushed := c.items(delivery.OutEntry); len(pushed) != 2 || pushed[0].Seq != 1 {
		t.Fatalf("pushed %+v", pushed)
	}
	if got := r.Stats().Duplicates.Load(); got != 1 {
		t.Fatalf("Duplicates = %d", got)
	}
}

// TestRefusalMailboxFull: a send to a full mailbox is refused with
// MAILBOX_FULL and a retry delay; nothing is stored.
func TestRefusalMailboxFull(t *testing.T) {
	r, store := newRouter(t, delivery.Config{}, storage.Config{MaxMailboxMessages: 2})
	sender := &fakeConn{}
	for id := uint64(1); id <= 3; id++ {
		send(t, r, sender, 1, id, 2)
	}
	waitFor(t, "answers", func() bool {
		return len(sender.items(delivery.OutAccept))+len(sender.items(delivery.OutRefuse)) == 3
	})
	refused := sender.items(delivery.OutRefuse)
	if len(refused) != 1 || refused[0].MsgID != 3 || refused[0].Code != protocol.CodeMailboxFull || refused[0].RetryAfter == 0 {
		t.Fatalf("refusals %+v", refused)
	}
	if es, _, _ := store.Read(2, 1, 100, 0, nil); len(es) != 2 {
		t.Fatalf("stored %d", len(es))
	}
	if st := r.Stats(); st.Refused.Load() != 1 || st.StorageErrors.Load() != 0 {
		t.Fatalf("Refused %d StorageErrors %d", st.Refused.Load(), st.StorageErrors.Load())
	}
}

// TestBusy: with the shard's queue full, requests are refused at once
// (Send returns false, nothing is taken) and counted.
func TestBusy(t *testing.T) {
	store, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	r, err := delivery.New(delivery.Config{Shards: 1, QueueLen: 2}, store)
	if err != nil {
		t.Fatal(err)
	}
	// Not started: nothing drains the queue.
	c := &fakeConn{}
	if !r.Send(c.s(), delivery.Message{From: delivery.To(1), To: 2, MsgID: 1, Retry: false, Record: record(1, 1, "a")}) || !r.Send(c.s(), delivery.Message{From: delivery.To(1), To: 2, MsgID: 2, Retry: false, Record: record(1, 2, "b")}) {
		t.Fatal("the first two fit the queue")
	}
	if r.Send(c.s(), delivery.Message{From: delivery.To(1), To: 2, MsgID: 3, Retry: false, Record: record(1, 3, "c")}) {
		t.Fatal("Send took a request over QueueLen")
	}
	if r.Login(newFake().s(), delivery.To(5), 0) {
		t.Fatal("Login took a request over QueueLen")
	}
	if st := r.Stats(); st.Busy.Load() != 2 || st.Sends.Load() != 2 {
		t.Fatalf("Busy %d Sends %d", st.Busy.Load(), st.Sends.Load())
	}
	r.Start(sessions)
	waitFor(t, "the queued two", func() bool { return len(c.items(delivery.OutAccept)) == 2 })
	r.Stop()
}

// TestReplaceAndBadAck: a second login closes the first with REPLACED; a
// login that acks beyond the mailbox is closed with BAD_ACK.
func TestReplaceAndBadAck(t *testing.T) {
	r, _ := newRouter(t, delivery.Config{}, storage.Config{})
	first, second := &fakeConn{}, &fakeConn{}
	login(t, r, first, 2, 0)
	login(t, r, second, 2, 0)
	waitFor(t, "REPLACED", func() bool { return first.closeCode() == protocol.CodeReplaced })
	if second.closeCode() != 0 {
		t.Fatalf("new connection closed with %v", second.closeCode())
	}
	bad := &fakeConn{}
	r.Login(bad.s(), delivery.To(3), 10)
	waitFor(t, "BAD_ACK", func() bool { return bad.closeCode() == protocol.CodeBadAck })
}

// TestSlowAfter: a window that stays full for SlowAfter closes the
// connection with SLOW_CONSUMER; the entries stay stored.
func TestSlowAfter(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r, store := newRouter(t, delivery.Config{Window: 2, SlowAfter: time.Minute, Now: clock}, storage.Config{})
	sender := &fakeConn{}
	for id := uint64(1); id <= 3; id++ {
		send(t, r, sender, 1, id, 2)
	}
	c := &fakeConn{}
	login(t, r, c, 2, 0)
	waitFor(t, "a full window", func() bool { return len(c.items(delivery.OutEntry)) == 2 })
	r.Tick() // a check with the clock unmoved
	if c.closeCode() != 0 {
		t.Fatalf("closed with %v before SlowAfter", c.closeCode())
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	r.Tick()
	waitFor(t, "SLOW_CONSUMER", func() bool { return c.closeCode() == protocol.CodeSlowConsumer })
	if got := r.Stats().SlowConsumers.Load(); got != 1 {
		t.Fatalf("SlowConsumers = %d", got)
	}
	if es, _, _ := store.Read(2, 1, 100, 0, nil); len(es) != 3 {
		t.Fatalf("stored %d after the close, want 3", len(es))
	}
}

// TestPushRefusedLeavesEntriesStored: when the connection refuses a push
// (closed, or over its cap), the router drops it and the entry waits for
// the next login.
func TestPushRefusedLeavesEntriesStored(t *testing.T) {
	r, _ := newRouter(t, delivery.Config{}, storage.Config{})
	gone := &fakeConn{}
	login(t, r, gone, 2, 0)
	gone.mu.Lock()
	gone.refuse = true
	gone.mu.Unlock()
	sender := &fakeConn{}
	send(t, r, sender, 1, 1, 2)
	send(t, r, sender, 1, 2, 2)
	waitFor(t, "ACCEPTs", func() bool { return len(sender.items(delivery.OutAccept)) == 2 })
	next := &fakeConn{}
	login(t, r, next, 2, 0)
	waitFor(t, "both entries", func() bool { return len(next.items(delivery.OutEntry)) == 2 })
	if gone.closeCode() != 0 && gone.closeCode() != protocol.CodeReplaced {
		t.Fatalf("old connection closed with %v", gone.closeCode())
	}
}

// failingStore refuses the append of one msg id before it reaches the
// committer, calling done on the caller's goroutine as Store.Append allows
// (the engine does so for ErrValueTooLarge and ErrClosed).
type failingStore struct {
	storage.Store
	failID uint64
	err    error
}

func (s *failingStore) Append(e storage.Entry, done func(error)) {
	if e.Kind == storage.KindMessage && e.MsgID == s.failID {
		done(s.err)
		return
	}
	s.Store.Append(e, done)
}

// TestEarlyRefusal: an append the store refuses at once (here: value too
// large) is refused to the sender, never ACCEPTed; its seq is skipped, and
// the appends before and after it still reach the online recipient,
// although the refusal's completion overtakes the one before it.
func TestEarlyRefusal(t *testing.T) {
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	tooLarge := fmt.Errorf("%w: test", storage.ErrValueTooLarge)
	r, err := delivery.New(delivery.Config{}, &failingStore{Store: mem, failID: 2, err: tooLarge})
	if err != nil {
		t.Fatal(err)
	}
	r.Start(sessions)
	defer r.Stop()
	c := &fakeConn{}
	login(t, r, c, 2, 0)
	sender := &fakeConn{}
	for id := uint64(1); id <= 3; id++ {
		send(t, r, sender, 1, id, 2)
	}
	waitFor(t, "answers", func() bool {
		return len(sender.items(delivery.OutAccept))+len(sender.items(delivery.OutRefuse)) == 3
	})
	refused := sender.items(delivery.OutRefuse)
	if len(refused) != 1 || refused[0].MsgID != 2 || refused[0].Code != protocol.CodeStorage || refused[0].RetryAfter != 0 {
		t.Fatalf("refusals %+v", refused)
	}
	for _, a := range sender.items(delivery.OutAccept) {
		if a.MsgID == 2 {
			t.Fatal("the failed append was ACCEPTed")
		}
	}
	waitFor(t, "the two stored messages", func() bool { return len(c.items(delivery.OutEntry)) == 2 })
	if got := c.items(delivery.OutEntry); got[0].Seq != 1 || got[1].Seq != 3 {
		t.Fatalf("pushed seqs %d, %d; want 1, 3", got[0].Seq, got[1].Seq)
	}
	if st := r.Stats(); st.Refused.Load() != 1 {
		t.Fatalf("Refused %d", st.Refused.Load())
	}
	// The recipient acks past the gap.
	r.Ack(c.s(), delivery.To(2), 3)
	waitFor(t, "the mailbox to empty", func() bool {
		es, _, _ := mem.Read(2, 1, 10, 0, nil)
		return len(es) == 0
	})
}

// TestLoginBelowFloor: a user whose earlier sessions acknowledged more
// entries than the window logs in again knowing nothing (LOGIN ack 0). The
// deleted seqs must not count as outstanding: new messages reach it at once.
func TestLoginBelowFloor(t *testing.T) {
	r, store := newRouter(t, delivery.Config{Window: 4}, storage.Config{})
	sender := &fakeConn{}
	first := &fakeConn{}
	login(t, r, first, 2, 0)
	for id := uint64(1); id <= 10; id++ {
		send(t, r, sender, 1, id, 2)
		waitFor(t, fmt.Sprintf("entry %d", id), func() bool { return len(first.items(delivery.OutEntry)) == int(id) })
		if !r.Ack(first.s(), delivery.To(2), id) {
			t.Fatal("Ack busy")
		}
	}
	waitFor(t, "the acks to be durable", func() bool {
		entries, _, err := store.Read(2, 1, 1, 0, nil)
		return err == nil && len(entries) == 0
	})
	second := &fakeConn{}
	login(t, r, second, 2, 0) // replaces first; entries 1..10 are deleted
	send(t, r, sender, 1, 11, 2)
	waitFor(t, "entry 11 on the new connection", func() bool { return len(second.items(delivery.OutEntry)) == 1 })
	if got := second.items(delivery.OutEntry)[0].Seq; got != 11 {
		t.Fatalf("first entry pushed has seq %d, want 11", got)
	}
}

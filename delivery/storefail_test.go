package delivery_test

import (
	"strings"
	"sync/atomic"
	"testing"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// readFailStore fails reads as a broken disk would: LastSeq of one user,
// every Newest when newest is set, the next pendingFails reads of the
// pending receipts and the next eventFails of the pending group events.
type readFailStore struct {
	storage.Store
	lastSeqOf    uint64
	newest       bool
	pendingFails atomic.Int32
	eventFails   atomic.Int32
}

func (s *readFailStore) PendingGroupEvents(fn func(storage.GroupEvent) bool) error {
	if s.eventFails.Add(-1) >= 0 {
		return storage.ErrCommit
	}
	return s.Store.PendingGroupEvents(fn)
}

func (s *readFailStore) LastSeq(user uint64) (uint64, error) {
	if user == s.lastSeqOf {
		return 0, storage.ErrCommit
	}
	return s.Store.LastSeq(user)
}

func (s *readFailStore) Newest(user, after, upto uint64) (uint64, error) {
	if s.newest {
		return 0, storage.ErrCommit
	}
	return s.Store.Newest(user, after, upto)
}

func (s *readFailStore) PendingReceipts(fn func(storage.PendingReceipt) bool) error {
	if s.pendingFails.Add(-1) >= 0 {
		return storage.ErrCommit
	}
	return s.Store.PendingReceipts(fn)
}

// overMemory puts a memory store beneath fs and returns it.
func overMemory(t *testing.T, fs *readFailStore) storage.Store {
	t.Helper()
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	fs.Store = mem
	return mem
}

// TestMailboxLoadFails: when storage cannot read a recipient's high-water
// mark, a SEND to it is refused as a storage failure the sender may retry
// in a second, and a login to that mailbox is closed as an internal error;
// neither is left without an answer, and the shard carries on.
func TestMailboxLoadFails(t *testing.T) {
	const recipient = 2
	fs := &readFailStore{lastSeqOf: recipient}
	mem := overMemory(t, fs)
	r := startOver(t, delivery.Config{}, fs, mem, nil)

	a := &fakeConn{}
	send(t, r, a, 1, 7, recipient)
	waitFor(t, "the refusal", func() bool { return len(a.items(delivery.OutRefuse)) == 1 })
	got := a.items(delivery.OutRefuse)[0]
	if got.MsgID != 7 || got.Code != protocol.CodeStorage || got.RetryAfter != 1000 || got.Reason == "" {
		t.Fatalf("refusal %+v, want msg 7 STORAGE after 1000 ms with a reason", got)
	}

	b := &fakeConn{}
	if !r.Login(b.s(), delivery.To(recipient), 0) {
		t.Fatal("Login busy")
	}
	waitFor(t, "the login closed", func() bool { return b.closeCode() != 0 })
	if code := b.closeCode(); code != protocol.CodeInternal {
		t.Fatalf("login closed with %v, want INTERNAL", code)
	}
	if n := len(b.items(delivery.OutWelcome)); n != 0 {
		t.Fatalf("%d WELCOMEs to a login whose mailbox did not load", n)
	}
	if n := r.Stats().Crashes.Load(); n != 0 {
		t.Fatalf("the shard crashed %d times", n)
	}
}

// TestWelcomeWhenNewestFails: when storage cannot read the newest waiting
// entry, WELCOME names the high-water mark instead, so the client still
// waits for every entry stored, and they are pushed.
func TestWelcomeWhenNewestFails(t *testing.T) {
	const recipient = 2
	fs := &readFailStore{newest: true}
	mem := overMemory(t, fs)
	r := startOver(t, delivery.Config{}, fs, mem, nil)
	a := &fakeConn{}
	send(t, r, a, 1, 1, recipient)
	send(t, r, a, 1, 2, recipient)
	waitFor(t, "both ACCEPTs", func() bool { return len(a.items(delivery.OutAccept)) == 2 })

	b := &fakeConn{}
	login(t, r, b, recipient, 0)
	if last := b.items(delivery.OutWelcome)[0].Seq; last != 2 {
		t.Fatalf("WELCOME.last = %d, want 2", last)
	}
	waitFor(t, "both entries", func() bool { return len(b.items(delivery.OutEntry)) == 2 })
}

// TestPendingReceiptsReadFailsAtStart: when reading the pending receipts
// fails at Start, the next tick reads them again, so a delivered receipt
// left pending by the last run still reaches its sender's mailbox.
func TestPendingReceiptsReadFailsAtStart(t *testing.T) {
	const sender, recipient = 1, 2
	fs := &readFailStore{}
	fs.pendingFails.Store(1)
	mem := overMemory(t, fs)
	// The last run stored message 7 and the recipient acked it; its
	// receipt did not reach the sender's mailbox before the stop.
	appended := make(chan error, 1)
	mem.Append(storage.Entry{Kind: storage.KindMessage, Recipient: recipient, Seq: 1, Sender: sender, MsgID: 7, Value: record(sender, 7, "m7")}, func(err error) { appended <- err })
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	acked := make(chan error, 1)
	mem.Ack(recipient, 1, func(_ storage.AckResult, err error) { acked <- err })
	if err := <-acked; err != nil {
		t.Fatal(err)
	}

	r := startOver(t, delivery.Config{}, fs, mem, nil)
	waitFor(t, "the receipt in the sender's mailbox", func() bool {
		r.Tick()
		page, _, err := mem.Read(sender, 1, 10, 0, nil)
		return err == nil && len(page) == 1 && page[0].Kind == storage.KindReceipt && page[0].MsgID == 7
	})
}

// TestGroupEventsReadFailsAtStart: when listing the group events left
// pending by the last run (a change stored, its announcement not) fails at
// Start, the next tick lists them again: every member gets the event, once.
func TestGroupEventsReadFailsAtStart(t *testing.T) {
	fs := &readFailStore{}
	fs.eventFails.Store(1)
	mem := overMemory(t, fs)
	ev, _, err := mem.ChangeGroup(storage.GroupChange{Group: 1 << 29, Actor: 1, MsgID: 5, Op: storage.GroupCreate, Members: []uint64{2, 3}})
	if err != nil || ev == nil {
		t.Fatal(ev, err)
	}
	r := startOver(t, delivery.Config{}, fs, mem, nil)
	waitFor(t, "the event announced", func() bool {
		r.Tick()
		return r.Stats().GroupEventsRedone.Load() == 1
	})
	waitEvents(t, mem, 1, 1, 2, 3)
	if n := r.Stats().StorageErrors.Load(); n != 1 {
		t.Errorf("%d storage errors counted, want the one failed read", n)
	}
}

// TestRefusalForAStorageFailure: an append storage refuses for a reason
// other than room is refused with STORAGE, a retry delay that fits the
// failure and a reason that names it, and counts as a storage error.
func TestRefusalForAStorageFailure(t *testing.T) {
	tests := []struct {
		err    error
		retry  uint32
		reason string
	}{
		{storage.ErrDiskFull, 5000, "free disk space below the floor"},
		{storage.ErrRecovering, 1000, "storage recovering from a failed commit"},
		{storage.ErrValueTooLarge, 0, "message over storage's value limit"},
		{storage.ErrCommit, 1000, "storage commit failed"},
	}
	for _, tc := range tests {
		t.Run(tc.err.Error(), func(t *testing.T) {
			mem, err := storage.NewMemory(storage.Config{})
			if err != nil {
				t.Fatal(err)
			}
			r := startOver(t, delivery.Config{}, &failingStore{Store: mem, failID: 7, err: tc.err}, mem, nil)
			a := &fakeConn{}
			send(t, r, a, 1, 7, 2)
			waitFor(t, "the refusal", func() bool { return len(a.items(delivery.OutRefuse)) == 1 })
			got := a.items(delivery.OutRefuse)[0]
			if got.MsgID != 7 || got.Code != protocol.CodeStorage || got.RetryAfter != tc.retry || got.Reason != tc.reason {
				t.Fatalf("refusal %+v, want msg 7 STORAGE after %d ms, %q", got, tc.retry, tc.reason)
			}
			if n := r.Stats().StorageErrors.Load(); n != 1 {
				t.Fatalf("StorageErrors = %d, want 1", n)
			}
		})
	}
}

// TestNewRejectsInvalidConfig: New refuses a config with invalid fields
// and names every one of them at once.
func TestNewRejectsInvalidConfig(t *testing.T) {
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	r, err := delivery.New(delivery.Config{Shards: -1, Window: -2}, mem)
	if r != nil || err == nil {
		t.Fatalf("New = %v, %v; want an error", r, err)
	}
	for _, field := range []string{"Shards -1", "Window -2"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
}

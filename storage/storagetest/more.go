package storagetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"switchboard/storage"
)

func testIdempotency(t *testing.T, h Harness) {
	clock := NewClock(epoch)
	s := open(t, h, storage.Config{Now: clock.Now})
	first := storage.Entry{Recipient: 1, Seq: 1, Kind: storage.KindMessage, Sender: 7, MsgID: 42, Value: []byte("hi")}
	mustAppend(t, s, first)
	want := storage.Dup{Recipient: 1, Seq: 1, Time: epoch.UnixMilli()}
	if d, ok, err := s.Lookup(7, 42, 1); err != nil || !ok || d != want {
		t.Fatalf("Lookup = %+v %v %v, want %+v", d, ok, err, want)
	}
	if _, ok, _ := s.Lookup(7, 43, 1); ok {
		t.Fatal("Lookup found a msg id never sent")
	}
	clock.Advance(time.Minute)
	retry := first
	retry.Seq = 2 // the worker assigned a new seq before noticing
	retry.Retry = true
	err := storage.AppendWait(s, retry)
	var dup *storage.DuplicateError
	if !errors.As(err, &dup) || !errors.Is(err, storage.ErrDuplicate) || dup.Original != want {
		t.Fatalf("retry = %v, want a DuplicateError naming %+v", err, want)
	}
	if page, _, _ := s.Read(1, 0, 10, 0, nil); len(page) != 1 || string(page[0].Value) != "hi" {
		t.Fatalf("mailbox after retry = %v, want the one original", seqs(page))
	}
	// The same id to another recipient (a group fan-out copy) is not a
	// duplicate, and neither is a non-message entry.
	other := first
	other.Recipient = 2
	mustAppend(t, s, other)
	rcpt := storage.Entry{Recipient: 1, Seq: 3, Kind: storage.KindReceipt, Sender: 7, MsgID: 42}
	mustAppend(t, s, rcpt)
	// Two copies in flight in the same batch: the first wins.
	errs := make(chan error, 2)
	a := storage.Entry{Recipient: 5, Seq: 1, Kind: storage.KindMessage, Sender: 8, MsgID: 9}
	b := a
	b.Seq, b.Retry = 2, true
	s.Append(a, func(err error) { errs <- err })
	s.Append(b, func(err error) { errs <- err })
	if err := <-errs; err != nil {
		t.Fatalf("first copy: %v", err)
	}
	err = <-errs
	if !errors.As(err, &dup) || dup.Original.Seq != 1 {
		t.Fatalf("second copy in flight = %v, want duplicate of seq 1", err)
	}
	// Acking does not forget: a late retry is still recognised.
	mustAck(t, s, 1, 3)
	if err := storage.AppendWait(s, storage.Entry{Recipient: 1, Seq: 4, Kind: storage.KindMessage, Sender: 7, MsgID: 42, Retry: true}); !errors.Is(err, storage.ErrDuplicate) {
		t.Fatalf("retry after ack = %v, want ErrDuplicate", err)
	}
	if st := s.Stats(); st.Duplicates != 3 {
		t.Fatalf("Duplicates = %d, want 3", st.Duplicates)
	}
	// A copy not marked as a retry is not looked up: it is stored again,
	// and its dedupe record replaces the first, so a marked retry after it
	// names the second copy.
	again := storage.Entry{Recipient: 1, Seq: 5, Kind: storage.KindMessage, Sender: 7, MsgID: 42, Value: []byte("hi")}
	mustAppend(t, s, again)
	again.Seq, again.Retry = 6, true
	err = storage.AppendWait(s, again)
	if !errors.As(err, &dup) || dup.Original.Seq != 5 {
		t.Fatalf("retry after an unmarked copy = %v, want a duplicate of seq 5", err)
	}
	if page, _, _ := s.Read(1, 4, 10, 0, nil); len(page) != 1 || page[0].Seq != 5 {
		t.Fatalf("mailbox after the unmarked copy = %v, want seq 5 only", seqs(page))
	}
}

func testGroupMessageReceipts(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{})
	mustAppend(t, s, entry(1, 1, storage.KindMessage))
	mustAppend(t, s, entry(1, 2, storage.KindGroupMessage))
	mustAppend(t, s, entry(1, 3, storage.KindGroupEvent))
	res := mustAck(t, s, 1, 3)
	want := []storage.Receipt{{Sender: 1001, MsgID: 5001, Seq: 1}, {Sender: 1002, MsgID: 5002, Seq: 2, Group: true}}
	if !slices.Equal(res.Receipts, want) {
		t.Fatalf("receipts %+v, want %+v", res.Receipts, want)
	}
	// A group copy is deduplicated per member like a direct message.
	dup := entry(1, 4, storage.KindGroupMessage)
	dup.Sender, dup.MsgID, dup.Retry = 1002, 5002, true
	wantErr(t, storage.AppendWait(s, dup), storage.ErrDuplicate)
	dup.Recipient = 2 // another member's copy is not a duplicate
	mustAppend(t, s, dup)
}

// testReceiptRuns: an ack records one pending receipt per run of
// consecutive msg ids of one sender and kind, so a run never takes in
// another sender's message, nor a group message into a direct run.
func testReceiptRuns(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{})
	for _, e := range []storage.Entry{
		msg(1, 1, 500, 1, storage.KindMessage),
		msg(1, 2, 500, 2, storage.KindMessage),
		msg(1, 3, 500, 3, storage.KindMessage),
		msg(1, 4, 501, 4, storage.KindMessage),      // next msg id, another sender
		msg(1, 5, 501, 5, storage.KindGroupMessage), // next msg id, a group message
		msg(1, 6, 501, 6, storage.KindGroupMessage),
	} {
		mustAppend(t, s, e)
	}
	res := mustAck(t, s, 1, 6)
	want := []storage.PendingReceipt{
		{Sender: 500, Acker: 1, Seq: 1, MsgID: 1, More: 2},
		{Sender: 501, Acker: 1, Seq: 4, MsgID: 4},
		{Sender: 501, Acker: 1, Seq: 5, MsgID: 5, More: 1, Group: true},
	}
	if len(res.Receipts) != 6 || !slices.Equal(res.Pending, want) {
		t.Fatalf("ack = %d receipts, pending\n got %+v\nwant %+v", len(res.Receipts), res.Pending, want)
	}
	wantPendings(t, s, want)
}

func testDedupeWindow(t *testing.T, h Harness) {
	clock := NewClock(epoch)
	s := open(t, h, storage.Config{Now: clock.Now, DedupeWindow: time.Hour})
	e := storage.Entry{Recipient: 1, Seq: 1, Kind: storage.KindMessage, Sender: 7, MsgID: 42}
	mustAppend(t, s, e)
	clock.Advance(59 * time.Minute)
	e.Seq, e.Retry = 2, true
	wantErr(t, storage.AppendWait(s, e), storage.ErrDuplicate)
	// At exactly the window's length the record is forgotten, by Lookup
	// and by a retry alike.
	clock.Advance(time.Minute)
	if _, ok, _ := s.Lookup(7, 42, 1); ok {
		t.Fatal("Lookup found a record as old as the window")
	}
	mustAppend(t, s, e) // outside the window: a new message
	if d, ok, _ := s.Lookup(7, 42, 1); !ok || d.Seq != 2 {
		t.Fatalf("Lookup = %+v %v, want seq 2", d, ok)
	}
}

// testConcurrentAppends runs many producers, each owning some recipients
// and keeping many appends in flight, as delivery workers do.
func testConcurrentAppends(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{})
	const (
		workers       = 16
		perWorker     = 8 // recipients each
		perRecipient  = 60
		totalMessages = workers * perWorker * perRecipient
	)
	var (
		mu    sync.Mutex
		order = map[uint64][]uint64{} // recipient -> seqs in callback order
		fails []error
	)
	for w := 0; w < workers; w++ {
		go func() {
			for seq := uint64(1); seq <= perRecipient; seq++ {
				for i := 0; i < perWorker; i++ {
					r := uint64(w*perWorker + i + 1)
					s.Append(entry(r, seq, storage.KindMessage), func(err error) {
						mu.Lock()
						order[r] = append(order[r], seq)
						if err != nil {
							fails = append(fails, err)
						}
						mu.Unlock()
					})
				}
			}
		}()
	}
	eventually(t, "every append to be called back", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, o := range order {
			n += len(o)
		}
		return n == totalMessages
	})
	mu.Lock()
	defer mu.Unlock()
	if len(fails) > 0 {
		t.Fatalf("%d appends failed, first: %v", len(fails), fails[0])
	}
	for r := uint64(1); r <= workers*perWorker; r++ {
		if !slices.IsSorted(order[r]) || len(order[r]) != perRecipient {
			t.Fatalf("recipient %d callbacks in order %v", r, order[r])
		}
		checkEntries(t, readAll(t, s, r, 0, 25, 0), r, seqRange(1, perRecipient))
	}
	if st := s.Stats(); st.Appends != totalMessages || st.StoredMessages != totalMessages {
		t.Fatalf("appends %d stored %d, want %d", st.Appends, st.StoredMessages, totalMessages)
	}
}

func testGroupCommitBatches(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{})
	const n = 2000
	var wg sync.WaitGroup
	wg.Add(n)
	for seq := uint64(1); seq <= n; seq++ {
		s.Append(entry(1, seq, storage.KindReceipt), func(err error) {
			if err != nil {
				t.Errorf("append: %v", err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	st := s.Stats()
	if st.Commits >= n/4 || st.MaxBatchOps < 8 || st.BatchedOps != n {
		t.Fatalf("%d appends in flight took %d commits (largest batch %d, batched %d): not grouped",
			n, st.Commits, st.MaxBatchOps, st.BatchedOps)
	}
}

func testClosed(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{})
	// Appends queued before Close are committed and called back.
	var wg sync.WaitGroup
	var failed int
	var mu sync.Mutex
	for seq := uint64(1); seq <= 100; seq++ {
		wg.Add(1)
		s.Append(entry(1, seq, storage.KindMessage), func(err error) {
			if err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
			}
			wg.Done()
		})
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	if failed != 0 {
		t.Fatalf("%d appends queued before Close failed", failed)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	wantErr(t, storage.AppendWait(s, entry(1, 101, storage.KindMessage)), storage.ErrClosed)
	_, err := storage.AckWait(s, 1, 1)
	wantErr(t, err, storage.ErrClosed)
	_, _, err = s.Read(1, 0, 1, 0, nil)
	wantErr(t, err, storage.ErrClosed)
	_, err = s.LastSeq(1)
	wantErr(t, err, storage.ErrClosed)
	_, _, err = s.ChangeGroup(storage.GroupChange{Group: 1, Actor: 1, MsgID: 1, Op: storage.GroupCreate})
	wantErr(t, err, storage.ErrClosed)
	// Settles after Close are called back with ErrClosed, not dropped.
	settled := make(chan error, 2)
	s.SettleGroupEvent(1, 1, func(err error) { settled <- err })
	s.SettleReceipt(1, storage.ReceiptKey{Acker: 2, Seq: 1}, func(err error) { settled <- err })
	for range 2 {
		wantErr(t, <-settled, storage.ErrClosed)
	}
}

// testGroupChangeChecks: a change that can never be made, whatever the
// group holds, is refused before it is queued, and changes nothing: an op
// outside create..demote and a leave that names members are invalid
// (ErrInvalidEntry), and naming more members than MaxGroupMembers, for any
// op, is ErrGroupFull.
func testGroupChangeChecks(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{MaxGroupMembers: 3})
	const g = 100
	if _, _, err := s.ChangeGroup(storage.GroupChange{Group: g, Actor: 1, MsgID: 1, Op: storage.GroupCreate, Members: []uint64{2}}); err != nil {
		t.Fatalf("create: %v", err)
	}
	for _, tc := range []struct {
		name string
		c    storage.GroupChange
		want error
	}{
		{"op 0", storage.GroupChange{Op: 0, Members: []uint64{3}}, storage.ErrInvalidEntry},
		{"op past demote", storage.GroupChange{Op: storage.GroupDemote + 1, Members: []uint64{3}}, storage.ErrInvalidEntry},
		{"leave naming members", storage.GroupChange{Op: storage.GroupLeave, Members: []uint64{2}}, storage.ErrInvalidEntry},
		{"add naming four", storage.GroupChange{Op: storage.GroupAdd, Members: []uint64{3, 4, 5, 6}}, storage.ErrGroupFull},
		{"remove naming four", storage.GroupChange{Op: storage.GroupRemove, Members: []uint64{2, 4, 5, 6}}, storage.ErrGroupFull},
	} {
		tc.c.Group, tc.c.Actor, tc.c.MsgID = g, 1, 10
		ev, dup, err := s.ChangeGroup(tc.c)
		if !errors.Is(err, tc.want) || ev != nil || dup {
			t.Errorf("%s: event %+v dup %v err %v, want %v", tc.name, ev, dup, err, tc.want)
		}
	}
	ms, err := s.Members(g)
	if err != nil || len(ms) != 2 || ms[0].ID != 1 || ms[1].ID != 2 {
		t.Fatalf("Members = %+v %v, want 1 and 2 as created", ms, err)
	}
	// msg id 10 was never used: a valid change with it is made.
	if ev, dup, err := s.ChangeGroup(storage.GroupChange{Group: g, Actor: 1, MsgID: 10, Op: storage.GroupAdd, Members: []uint64{3}}); err != nil || dup || ev == nil {
		t.Fatalf("add with msg id 10 = %+v %v %v, want it made", ev, dup, err)
	}
}

func testGroups(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{MaxGroupMembers: 4})
	const g, g2 = 100, 200
	msgID := uint64(0)
	change := func(actor uint64, op storage.GroupOp, group uint64, members ...uint64) (*storage.GroupEvent, bool, error) {
		t.Helper()
		msgID++
		return s.ChangeGroup(storage.GroupChange{Group: group, Actor: actor, MsgID: msgID, Op: op, Members: members})
	}
	// changed asserts a change was made and announced to audience.
	changed := func(ev *storage.GroupEvent, dup bool, err error, members, audience []uint64) {
		t.Helper()
		if err != nil || dup || ev == nil || !slices.Equal(ev.Members, members) || !slices.Equal(ev.Audience, audience) {
			t.Fatalf("change = %+v dup %v err %v, want members %v audience %v", ev, dup, err, members, audience)
		}
	}
	members := func(group uint64, want ...storage.Member) {
		t.Helper()
		if ms, err := s.Members(group); err != nil || !slices.Equal(ms, want) {
			t.Fatalf("Members(%d) = %v %v, want %v", group, ms, err, want)
		}
	}
	owner, admin, member := storage.RoleOwner, storage.RoleAdmin, storage.RoleMember

	// A create is one change: the creator and every member, named once.
	ev, dup, err := change(1, storage.GroupCreate, g, 3, 2, 3, 1)
	changed(ev, dup, err, []uint64{1, 3, 2}, []uint64{1, 2, 3})
	members(g, storage.Member{ID: 1, Role: owner}, storage.Member{ID: 2, Role: member}, storage.Member{ID: 3, Role: member})
	createID := msgID
	// Its retry changes nothing and finds the event still pending.
	ev2, dup, err := s.ChangeGroup(storage.GroupChange{Group: g, Actor: 1, MsgID: createID, Op: storage.GroupCreate, Members: []uint64{3, 2}})
	if err != nil || !dup || ev2 == nil || !slices.Equal(ev2.Audience, ev.Audience) || ev2.Time != ev.Time {
		t.Fatalf("retried create = %+v dup %v err %v, want the first event", ev2, dup, err)
	}
	_, _, err = change(2, storage.GroupCreate, g)
	wantErr(t, err, storage.ErrGroupExists)
	// Over the cap, nothing is created.
	_, _, err = change(1, storage.GroupCreate, g2, 2, 3, 4, 5)
	wantErr(t, err, storage.ErrGroupFull)
	_, err = s.Members(g2)
	wantErr(t, err, storage.ErrNoGroup)

	// Who may do what, in order: group, membership, admin.
	_, _, err = change(1, storage.GroupAdd, 999, 4)
	wantErr(t, err, storage.ErrNoGroup)
	_, _, err = change(9, storage.GroupAdd, g, 4)
	wantErr(t, err, storage.ErrNotMember)
	_, _, err = change(2, storage.GroupAdd, g, 4)
	wantErr(t, err, storage.ErrForbidden)
	ev, dup, err = change(1, storage.GroupPromote, g, 2, 7)
	changed(ev, dup, err, []uint64{2}, []uint64{1, 2, 3})
	promoteID := msgID
	// Role answers from the committed memberships: the owner, the promoted
	// admin, a member, and ErrNotMember for someone outside the group or
	// for a group that does not exist.
	role := func(group, id uint64, want storage.Role, wantErr error) {
		t.Helper()
		if r, err := s.Role(group, id); r != want || !errors.Is(err, wantErr) {
			t.Fatalf("Role(%d, %d) = %v %v, want %v %v", group, id, r, err, want, wantErr)
		}
	}
	role(g, 1, owner, nil)
	role(g, 2, admin, nil)
	role(g, 3, member, nil)
	role(g, 7, 0, storage.ErrNotMember)
	role(999, 1, 0, storage.ErrNotMember)
	// Re-adding an admin keeps them an admin, and changes nothing.
	if ev, dup, err := change(1, storage.GroupAdd, g, 2); err != nil || dup || ev != nil {
		t.Fatalf("re-adding an admin = %+v %v %v, want no event", ev, dup, err)
	}
	// An add past the cap adds nobody.
	_, _, err = change(2, storage.GroupAdd, g, 4, 5)
	wantErr(t, err, storage.ErrGroupFull)
	members(g, storage.Member{ID: 1, Role: owner}, storage.Member{ID: 2, Role: admin}, storage.Member{ID: 3, Role: member})
	// Nobody removes or demotes the owner; the request changes nothing.
	_, _, err = change(2, storage.GroupRemove, g, 3, 1)
	wantErr(t, err, storage.ErrForbidden)
	_, _, err = change(2, storage.GroupDemote, g, 1)
	wantErr(t, err, storage.ErrForbidden)
	members(g, storage.Member{ID: 1, Role: owner}, storage.Member{ID: 2, Role: admin}, storage.Member{ID: 3, Role: member})

	// A removal is heard by the removed member too; its retry is a dup.
	ev, dup, err = change(2, storage.GroupRemove, g, 3, 8)
	changed(ev, dup, err, []uint64{3}, []uint64{1, 2, 3})
	s.SettleGroupEvent(2, msgID, nil)
	if ev, dup, err := s.ChangeGroup(storage.GroupChange{Group: g, Actor: 2, MsgID: msgID, Op: storage.GroupRemove, Members: []uint64{3}}); err != nil || !dup || ev != nil {
		t.Fatalf("retried removal after settling = %+v %v %v, want a dup without event", ev, dup, err)
	}
	if gs, err := s.Groups(3); err != nil || len(gs) != 0 {
		t.Fatalf("Groups(3) after removal = %v %v", gs, err)
	}
	role(g, 3, 0, storage.ErrNotMember)
	// The owner may leave; the group goes on without one, its admins rule.
	ev, dup, err = change(1, storage.GroupLeave, g)
	changed(ev, dup, err, []uint64{1}, []uint64{1, 2})
	ev, dup, err = change(2, storage.GroupAdd, g, 4, 5, 6)
	changed(ev, dup, err, []uint64{4, 5, 6}, []uint64{2, 4, 5, 6})
	members(g, storage.Member{ID: 2, Role: admin}, storage.Member{ID: 4, Role: member}, storage.Member{ID: 5, Role: member}, storage.Member{ID: 6, Role: member})
	if gs, err := s.Groups(5); err != nil || !slices.Equal(gs, []uint64{g}) {
		t.Fatalf("Groups(5) = %v %v", gs, err)
	}

	if h.Reopen != nil {
		s = h.Reopen(t, s, storage.Config{MaxGroupMembers: 4, HousekeepingInterval: -1})
		t.Cleanup(func() { _ = s.Close() })
	}
	// Every event not settled is still pending, in (actor, msgID) order.
	var pending []uint64
	err = s.PendingGroupEvents(func(ev storage.GroupEvent) bool {
		pending = append(pending, ev.Actor<<32|ev.MsgID)
		return true
	})
	want := []uint64{1<<32 | createID, 1<<32 | promoteID, 1<<32 | msgID - 1, 2<<32 | msgID}
	if err != nil || !slices.Equal(pending, want) {
		t.Fatalf("pending events = %x %v, want %x", pending, err, want)
	}
	members(g, storage.Member{ID: 2, Role: admin}, storage.Member{ID: 4, Role: member}, storage.Member{ID: 5, Role: member}, storage.Member{ID: 6, Role: member})
	if err := s.DeleteGroup(g); err != nil {
		t.Fatal(err)
	}
	_, err = s.Members(g)
	wantErr(t, err, storage.ErrNoGroup)
	wantErr(t, s.DeleteGroup(g), storage.ErrNoGroup)
	if gs, _ := s.Groups(2); len(gs) != 0 {
		t.Fatalf("Groups(2) after delete = %v", gs)
	}
	role(g, 2, 0, storage.ErrNotMember)

	// Groups lists a member's groups in group order, whatever order they
	// were made in.
	made := []uint64{905, 903, 908, 901, 907, 902, 906, 904}
	for _, group := range made {
		if _, _, err := change(9, storage.GroupCreate, group); err != nil {
			t.Fatalf("create %d: %v", group, err)
		}
	}
	if gs, err := s.Groups(9); err != nil || !slices.Equal(gs, slices.Sorted(slices.Values(made))) {
		t.Fatalf("Groups(9) = %v %v, want %v in order", gs, err, made)
	}
}

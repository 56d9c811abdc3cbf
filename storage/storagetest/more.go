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

func testDedupeWindow(t *testing.T, h Harness) {
	clock := NewClock(epoch)
	s := open(t, h, storage.Config{Now: clock.Now, DedupeWindow: time.Hour})
	e := storage.Entry{Recipient: 1, Seq: 1, Kind: storage.KindMessage, Sender: 7, MsgID: 42}
	mustAppend(t, s, e)
	clock.Advance(59 * time.Minute)
	e.Seq, e.Retry = 2, true
	wantErr(t, storage.AppendWait(s, e), storage.ErrDuplicate)
	clock.Advance(2 * time.Minute)
	if _, ok, _ := s.Lookup(7, 42, 1); ok {
		t.Fatal("Lookup found a record older than the window")
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
	wantErr(t, s.CreateGroup(1, 1), storage.ErrClosed)
}

func testGroups(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{MaxGroupMembers: 4})
	const g, g2 = 100, 200
	if err := s.CreateGroup(g, 1); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.CreateGroup(g, 2), storage.ErrGroupExists)
	wantErr(t, s.AddMember(999, 2, storage.RoleMember), storage.ErrNoGroup)
	wantErr(t, s.AddMember(g, 2, 0), storage.ErrInvalidEntry)
	for _, m := range []uint64{5, 3, 2} {
		if err := s.AddMember(g, m, storage.RoleMember); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, s.AddMember(g, 6, storage.RoleMember), storage.ErrGroupFull)
	if err := s.AddMember(g, 3, storage.RoleAdmin); err != nil { // role change: not a new member
		t.Fatal(err)
	}
	want := []storage.Member{{ID: 1, Role: storage.RoleOwner}, {ID: 2, Role: storage.RoleMember}, {ID: 3, Role: storage.RoleAdmin}, {ID: 5, Role: storage.RoleMember}}
	if ms, err := s.Members(g); err != nil || !slices.Equal(ms, want) {
		t.Fatalf("Members = %v %v, want %v", ms, err, want)
	}
	if r, err := s.Role(g, 3); err != nil || r != storage.RoleAdmin {
		t.Fatalf("Role = %v %v", r, err)
	}
	_, err := s.Role(g, 4)
	wantErr(t, err, storage.ErrNotMember)
	if err := s.CreateGroup(g2, 3); err != nil {
		t.Fatal(err)
	}
	if gs, err := s.Groups(3); err != nil || !slices.Equal(gs, []uint64{g, g2}) {
		t.Fatalf("Groups(3) = %v %v", gs, err)
	}
	if err := s.RemoveMember(g, 3); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.RemoveMember(g, 3), storage.ErrNotMember)
	if err := s.AddMember(g, 6, storage.RoleMember); err != nil { // room again
		t.Fatal(err)
	}
	if gs, _ := s.Groups(3); !slices.Equal(gs, []uint64{g2}) {
		t.Fatalf("Groups(3) after removal = %v", gs)
	}
	if err := s.DeleteGroup(g); err != nil {
		t.Fatal(err)
	}
	_, err = s.Members(g)
	wantErr(t, err, storage.ErrNoGroup)
	wantErr(t, s.DeleteGroup(g), storage.ErrNoGroup)
	if gs, _ := s.Groups(1); len(gs) != 0 {
		t.Fatalf("Groups(1) after delete = %v", gs)
	}
	if h.Reopen != nil {
		s = h.Reopen(t, s, storage.Config{MaxGroupMembers: 4, HousekeepingInterval: -1})
		t.Cleanup(func() { _ = s.Close() })
	}
	if ms, err := s.Members(g2); err != nil || !slices.Equal(ms, []storage.Member{{ID: 3, Role: storage.RoleOwner}}) {
		t.Fatalf("Members(g2) = %v %v", ms, err)
	}
}

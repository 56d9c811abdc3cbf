package delivery_test

import (
	"errors"
	"sync"
	"testing"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// gappyStore refuses the append of one seq at once (a gap) and holds back
// the completion of another after storing it, as a slow committer callback
// would.
type gappyStore struct {
	storage.Store
	refuse, hold uint64

	mu   sync.Mutex
	held func(error)
}

func (s *gappyStore) Append(e storage.Entry, done func(error)) {
	switch e.Seq {
	case s.refuse:
		done(errors.New("refused"))
	case s.hold:
		s.Store.Append(e, func(err error) {
			s.mu.Lock()
			s.held = func(override error) {
				if override != nil {
					err = override // the commit after storage made it readable failed
				}
				done(err)
			}
			s.mu.Unlock()
		})
	default:
		s.Store.Append(e, done)
	}
}

func (s *gappyStore) release() bool { return s.releaseWith(nil) }

// releaseWith hands the held completion over with err instead of the
// append's own outcome (nil: its own).
func (s *gappyStore) releaseWith(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == nil {
		return false
	}
	s.held(err)
	s.held = nil
	return true
}

// TestPumpPastAGapBeforeAPendingCompletion: with seq 2 a gap and seq 3
// stored but its completion not yet seen, an ACK that opens the window must
// not make the shard read seq 3 again and again (it used to spin forever,
// which also hung shutdown), nor push seq 3 before its completion: storage
// made it readable before its commit was reported. Seq 3 arrives once its
// completion does.
func TestPumpPastAGapBeforeAPendingCompletion(t *testing.T) {
	r, store, _, recipient := pumpPastAGap(t)

	store.release()
	waitFor(t, "seq 3 after its completion", func() bool { return len(recipient.items(delivery.OutEntry)) == 2 })
	if got := recipient.items(delivery.OutEntry)[1].Seq; got != 3 {
		t.Fatalf("second entry has seq %d, want 3", got)
	}
	if code := recipient.closeCode(); code != 0 {
		t.Fatalf("recipient closed with %v", protocol.Code(code))
	}
	settle(t, r, recipient, 2)
	if n := len(recipient.items(delivery.OutEntry)); n != 2 {
		t.Fatalf("recipient was pushed %d entries, want 2", n)
	}
}

// TestPumpHoldsAnEntryWhoseCommitFails: as above, but seq 3's commit then
// fails (ErrCommit) after storage made it readable: the recipient never
// gets seq 3, and the sender is refused.
func TestPumpHoldsAnEntryWhoseCommitFails(t *testing.T) {
	r, store, sender, recipient := pumpPastAGap(t)

	store.releaseWith(storage.ErrCommit)
	waitFor(t, "the refusal of msg 3", func() bool { return len(sender.items(delivery.OutRefuse)) == 2 })
	if o := sender.items(delivery.OutRefuse)[1]; o.MsgID != 3 || o.Code != protocol.CodeStorage {
		t.Fatalf("second refusal %+v, want msg 3 refused with STORAGE", o)
	}
	if n := len(sender.items(delivery.OutAccept)); n != 1 {
		t.Fatalf("sender got %d ACCEPTs, want 1 (msg 1)", n)
	}
	// The refusal's completion also decided seq 3's push; a settle makes
	// sure nothing of it is still on the way.
	settle(t, r, recipient, 2)
	for _, o := range recipient.items(delivery.OutEntry) {
		if o.Seq == 3 {
			t.Fatalf("recipient was pushed seq 3, whose commit failed: %+v", recipient.items(delivery.OutEntry))
		}
	}
	if code := recipient.closeCode(); code != 0 {
		t.Fatalf("recipient closed with %v", protocol.Code(code))
	}
	// The recipient's next entry comes live, after the failed seq.
	send(t, r, sender, 1, 4, 2)
	waitFor(t, "seq 4", func() bool { return len(recipient.items(delivery.OutEntry)) == 2 })
	if got := recipient.items(delivery.OutEntry)[1].Seq; got != 4 {
		t.Fatalf("second entry has seq %d, want 4", got)
	}
}

// pumpPastAGap sets up seq 2 of user 2's mailbox as a gap and seq 3 as
// stored with its completion held, has user 2 (Window 1) ack seq 1, and
// returns once the ACK's pump has surely run, having checked that it did
// not push seq 3.
func pumpPastAGap(t *testing.T) (r *delivery.Router, store *gappyStore, sender, recipient *fakeConn) {
	t.Helper()
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store = &gappyStore{Store: mem, refuse: 2, hold: 3}
	r = startOver(t, delivery.Config{Window: 1, Shards: 1}, store, mem, func() { store.release() })

	sender, recipient = &fakeConn{}, &fakeConn{}
	login(t, r, recipient, 2, 0)
	send(t, r, sender, 1, 1, 2) // seq 1: pushed, fills the window of 1
	waitFor(t, "seq 1", func() bool { return len(recipient.items(delivery.OutEntry)) == 1 })
	send(t, r, sender, 1, 2, 2) // seq 2: refused, a gap
	waitFor(t, "the refusal", func() bool { return len(sender.items(delivery.OutRefuse)) == 1 })
	send(t, r, sender, 1, 3, 2) // seq 3: stored, completion held
	waitFor(t, "seq 3 stored", func() bool {
		store.mu.Lock()
		defer store.mu.Unlock()
		return store.held != nil
	})
	if !r.Ack(recipient.s(), delivery.To(2), 1) {
		t.Fatal("Ack busy")
	}
	// The shard must still be serving: a new message to someone else is
	// accepted (a spinning shard would never answer). The one shard took
	// it after the ACK, so the ACK's pump has run by then.
	other := &fakeConn{}
	send(t, r, other, 5, 1, 3)
	waitFor(t, "the shard to answer after the ack", func() bool { return len(other.items(delivery.OutAccept)) == 1 })
	if es := recipient.items(delivery.OutEntry); len(es) != 1 {
		t.Fatalf("before seq 3's completion the recipient was pushed %+v, want seq 1 only", es)
	}
	return r, store, sender, recipient
}

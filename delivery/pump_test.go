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
			s.held = func(error) { done(err) }
			s.mu.Unlock()
		})
	default:
		s.Store.Append(e, done)
	}
}

func (s *gappyStore) release() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == nil {
		return false
	}
	s.held(nil)
	s.held = nil
	return true
}

// TestPumpPastAGapBeforeAPendingCompletion: with seq 2 a gap and seq 3
// stored but its completion not yet seen, an ACK that opens the window must
// not make the shard read seq 3 again and again (it used to spin forever,
// which also hung shutdown). Seq 3 arrives once its completion does.
func TestPumpPastAGapBeforeAPendingCompletion(t *testing.T) {
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store := &gappyStore{Store: mem, refuse: 2, hold: 3}
	r, err := delivery.New(delivery.Config{Window: 1, Shards: 1}, store)
	if err != nil {
		t.Fatal(err)
	}
	r.Start(sessions)
	t.Cleanup(func() { r.Stop(); mem.Close() })

	sender, recipient := &fakeConn{}, &fakeConn{}
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
	// accepted (a spinning shard would never answer).
	other := &fakeConn{}
	send(t, r, other, 5, 1, 3)
	waitFor(t, "the shard to answer after the ack", func() bool { return len(other.items(delivery.OutAccept)) == 1 })

	store.release()
	waitFor(t, "seq 3 after its completion", func() bool { return len(recipient.items(delivery.OutEntry)) == 2 })
	if got := recipient.items(delivery.OutEntry)[1].Seq; got != 3 {
		t.Fatalf("second entry has seq %d, want 3", got)
	}
	if code := recipient.closeCode(); code != 0 {
		t.Fatalf("recipient closed with %v", protocol.Code(code))
	}
}

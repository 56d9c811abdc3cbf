package delivery_test

import (
	"sync"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/storage"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// slowStore takes each message's commit as costing took on the clock.
type slowStore struct {
	storage.Store
	clock *fakeClock
	took  time.Duration
}

func (s *slowStore) Append(e storage.Entry, done func(error)) {
	if e.Kind == storage.KindMessage {
		s.clock.add(s.took)
	}
	s.Store.Append(e, done)
}

// TestAcceptLatency: each 1:1 send is timed from Send to its ACCEPT, a
// retried duplicate too. With commits taking 3 ms on the clock, every send
// lands in the bucket of 5 ms, none in 2.5 ms, and the sum is 3 ms each.
func TestAcceptLatency(t *testing.T) {
	mem, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	clock := &fakeClock{now: time.Date(2026, 12, 4, 6, 0, 0, 0, time.UTC)}
	r, err := delivery.New(delivery.Config{Now: clock.Now}, &slowStore{Store: mem, clock: clock, took: 3 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r.Start(sessions)
	defer r.Stop()
	sender := newFake()
	// One at a time, so that each send's commit alone moves the clock
	// while it is in flight. Msg id 3 is sent twice: the second is a
	// duplicate, ACCEPTed again.
	for i, id := range []uint64{1, 2, 3, 3} {
		send(t, r, sender, 1, id, 2)
		waitFor(t, "the ACCEPT", func() bool { return len(sender.items(delivery.OutAccept)) == i+1 })
	}
	got := r.AcceptLatency()
	want := []uint64{0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4, 4} // ≤ 0.5, 1, 2.5 ms: none; ≤ 5 ms and up: all
	if len(got.Counts) != len(delivery.AcceptBounds) {
		t.Fatalf("%d buckets for %d bounds", len(got.Counts), len(delivery.AcceptBounds))
	}
	for i, w := range want {
		if got.Counts[i] != w {
			t.Errorf("bucket ≤ %v: %d, want %d", delivery.AcceptBounds[i], got.Counts[i], w)
		}
	}
	if got.Count != 4 || got.Sum != 12*time.Millisecond {
		t.Errorf("count %d, sum %v; want 4, 12ms", got.Count, got.Sum)
	}
}

package storage

import (
	"testing"
	"time"
)

func TestCompanyWait(t *testing.T) {
	const us = int64(time.Microsecond)
	d := 250 * us
	for _, c := range []struct {
		name        string
		d, gap      int64
		ops         int
		oldest, now int64
		want        time.Duration
	}{
		{"a send every 200µs: the first waits out its 250µs", d, 200 * us, 1, 0, 50 * us, 200 * time.Microsecond},
		{"the second it predicted has come", d, 200 * us, 2, 0, 180 * us, 0},
		{"a send every 100µs: two more fit", d, 100 * us, 2, 0, 100 * us, 150 * time.Microsecond},
		{"and the third ends it", d, 100 * us, 3, 0, 200 * us, 0},
		{"sends further apart than the delay", d, 250 * us, 1, 0, 0, 0},
		{"no urgent op: nobody is waiting for a sync", d, 10 * us, 0, 0, 0, 0},
		{"the oldest already waited the delay in the queue", d, 100 * us, 1, 0, 250 * us, 0},
		{"switched off", -1, 10 * us, 1, 0, 0, 0},
	} {
		if got := companyWait(c.d, c.gap, c.ops, c.oldest, c.now); got != c.want {
			t.Errorf("%s: companyWait = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestSyncDelayRate follows the rate estimate: sends every 200µs make a
// 250µs delay wait, and one quiet second stops it at once.
func TestSyncDelayRate(t *testing.T) {
	d := 250 * time.Microsecond
	s := &engine{cfg: Config{SyncDelay: d}, urgentGap: 4 * int64(d)}
	at := int64(time.Second)
	waits := func() bool { return companyWait(int64(d), s.urgentGap, 1, at, at) > 0 }
	if waits() {
		t.Fatalf("a new engine waits (gap %v)", time.Duration(s.urgentGap))
	}
	n := 0
	for ; !waits(); n++ {
		if n == 100 {
			t.Fatalf("still no wait after 100 sends 200µs apart (gap %v)", time.Duration(s.urgentGap))
		}
		at += int64(200 * time.Microsecond)
		s.arrived(at)
	}
	if n < 3 {
		t.Errorf("waits after %d sends: one short burst should not be enough", n)
	}
	at += int64(time.Second)
	s.arrived(at)
	if waits() {
		t.Errorf("still waits after a quiet second (gap %v)", time.Duration(s.urgentGap))
	}
}

// syncDelayStore is a Badger store whose committer waits up to a minute
// for company, as if urgent ops had been coming gap apart: the test, not
// a timer, decides whether company comes.
func syncDelayStore(t *testing.T, gap time.Duration) *engine {
	t.Helper()
	st, err := Open(smallConfig(t.TempDir(), -1))
	if err != nil {
		t.Fatal(err)
	}
	s := st.(*engine)
	s.cfg.SyncDelay = time.Minute // read by the committer only after the first op is queued
	s.urgentGap = int64(gap)
	return s
}

// appendAsync appends a 1:1 message for recipient and returns the channel
// its done reports on.
func appendAsync(s Store, recipient, seq uint64) chan error {
	ch := make(chan error, 1)
	s.Append(Entry{Recipient: recipient, Seq: seq, Kind: KindMessage, Sender: 9, MsgID: seq, Value: []byte("hi")}, func(err error) { ch <- err })
	return ch
}

// waitFor polls cond until it holds, or fails after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func doneWithin(t *testing.T, ch chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not done after 10 s", what)
	}
}

// TestSyncDelayShares: a send waiting for company shares its sync with the
// next one, and is not called back before it.
func TestSyncDelayShares(t *testing.T) {
	s := syncDelayStore(t, 40*time.Second) // one more send due within the minute
	defer s.Close()
	syncs := s.Stats().Syncs
	first := appendAsync(s, 1, 1)
	waitFor(t, "the first send's batch to wait", func() bool { return s.Stats().SyncWaits == 1 })
	select {
	case err := <-first:
		t.Fatalf("the first send was called back (%v) while its batch waited", err)
	default:
	}
	second := appendAsync(s, 2, 1)
	doneWithin(t, first, "first send")
	doneWithin(t, second, "second send")
	st := s.Stats()
	if got := st.Syncs - syncs; got != 1 {
		t.Errorf("%d syncs for two sends that shared a batch, want 1", got)
	}
	if st.SyncWaits != 1 {
		t.Errorf("%d waits, want 1: the second send was the company the rate predicted", st.SyncWaits)
	}
}

// TestSyncDelayNotWhenSparse: sends further apart than the delay each sync
// at once.
func TestSyncDelayNotWhenSparse(t *testing.T) {
	s := syncDelayStore(t, 2*time.Minute)
	defer s.Close()
	syncs := s.Stats().Syncs
	doneWithin(t, appendAsync(s, 1, 1), "a lone send")
	doneWithin(t, appendAsync(s, 2, 1), "the next one")
	if st := s.Stats(); st.SyncWaits != 0 || st.Syncs-syncs != 2 {
		t.Errorf("%d waits and %d syncs, want 0 and 2", st.SyncWaits, st.Syncs-syncs)
	}
}

// TestSyncDelayClose: closing the store while a send waits for company
// commits and syncs it, and it is there after a reopen.
func TestSyncDelayClose(t *testing.T) {
	s := syncDelayStore(t, 40*time.Second)
	dir := s.cfg.Dir
	first := appendAsync(s, 1, 1)
	waitFor(t, "the send's batch to wait", func() bool { return s.Stats().SyncWaits == 1 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	doneWithin(t, first, "the waiting send, at close")
	r, err := Open(smallConfig(dir, -1))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, _, err := r.Read(1, 0, 10, 1<<20, nil)
	if err != nil || len(got) != 1 || string(got[0].Value) != "hi" {
		t.Fatalf("after reopen: %v, %v; want the one entry", got, err)
	}
}

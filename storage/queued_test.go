package storage

import "testing"

// TestStatsQueued: while the committer is held inside one op, the appends
// queued behind it show in Stats.Queued, and the count falls back to zero
// once they are committed.
func TestStatsQueued(t *testing.T) {
	s, err := openBadger(testConfig(t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	release := make(chan struct{})
	held := make(chan struct{})
	hook := func(o *op) {
		if o.kind == opAppend && o.e.Recipient == 1 {
			close(held)
			<-release
		}
	}
	s.panicHook.Store(&hook)
	first := make(chan error, 1)
	s.Append(Entry{Recipient: 1, Seq: 1, Kind: KindMessage, MsgID: 1}, func(err error) { first <- err })
	<-held
	const behind = 5
	done := make(chan error, behind)
	for i := range behind {
		s.Append(Entry{Recipient: 2, Seq: uint64(i + 1), Kind: KindMessage, MsgID: uint64(10 + i)}, func(err error) { done <- err })
	}
	if got := s.Stats().Queued; got != behind {
		t.Fatalf("Queued %d while the committer is held, want %d", got, behind)
	}
	close(release)
	for range behind {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Queued; got != 0 {
		t.Fatalf("Queued %d after every append completed, want 0", got)
	}
}

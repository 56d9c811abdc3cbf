package storage

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// These tests pin down rules of the per-sender quotas that the rest of the
// suite let slip: each fails if its rule is broken.

// TestQuotaBounds: a sender may fill its byte quota exactly, not a byte
// more; entries without a sender count against nobody.
func TestQuotaBounds(t *testing.T) {
	s, err := NewMemory(Config{HousekeepingInterval: -1, MaxSenderPendingMessages: 2, MaxSenderPendingBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustAppend(t, s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 5, MsgID: 1, Value: make([]byte, 100)})
	if err := AppendWait(s, Entry{Recipient: 2, Seq: 1, Kind: KindMessage, Sender: 5, MsgID: 2, Value: make([]byte, 1)}); !errors.Is(err, ErrSenderQuota) {
		t.Errorf("a byte over the quota: %v, want ErrSenderQuota", err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		mustAppend(t, s, Entry{Recipient: 3, Seq: seq, Kind: KindMessage, MsgID: 10 + seq, Value: make([]byte, 60)})
	}
}

// TestQuotaNeverBelowZero: entries stored before their sender's count
// existed are not counted; their deletion leaves the count at zero, not
// below it, so the sender gets no more than its quota afterwards.
func TestQuotaNeverBelowZero(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig(dir, -1)
	cfg.MaxSenderPendingMessages = 2
	storeWith(t, dir, func(s *engine) {
		for seq := uint64(1); seq <= 2; seq++ {
			mustAppend(t, s, Entry{Recipient: 1, Seq: seq, Kind: KindMessage, Sender: 5, MsgID: seq, Value: []byte("x")})
		}
	})
	f := openFolder(t, dir)
	err := f.write(func(wb *badger.WriteBatch) error { return wb.Delete(quotaKey(5)) }) // as before quotas
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := openBadger(cfg.withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustAck(t, s, 1, 2)
	for seq := uint64(1); seq <= 2; seq++ {
		mustAppend(t, s, Entry{Recipient: 2, Seq: seq, Kind: KindMessage, Sender: 5, MsgID: 10 + seq, Value: []byte("y")})
	}
	if err := AppendWait(s, Entry{Recipient: 2, Seq: 3, Kind: KindMessage, Sender: 5, MsgID: 13, Value: []byte("y")}); !errors.Is(err, ErrSenderQuota) {
		t.Errorf("a third entry with a quota of 2: %v, want ErrSenderQuota", err)
	}
}

// TestQuotaAfterFailedCommit: what a failed commit charged is forgotten
// when the store reopens its database: the sender is not refused for an
// entry that was never stored.
func TestQuotaAfterFailedCommit(t *testing.T) {
	cfg := smallConfig(t.TempDir(), -1)
	cfg.MaxSenderPendingMessages = 1
	fail := new(atomic.Bool)
	s, err := openBadger(cfg.withDefaults(), func() error {
		if fail.Load() {
			return errors.New("injected commit failure")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := Entry{Recipient: 2, Seq: 1, Kind: KindMessage, Sender: 5, MsgID: 1, Value: []byte("x")}
	fail.Store(true)
	if err := AppendWait(s, e); !errors.Is(err, ErrCommit) {
		t.Fatalf("append with the commit failing: %v, want ErrCommit", err)
	}
	fail.Store(false)
	appendUntilRecovered(t, s, 3, 1)
	if err := AppendWait(s, e); err != nil {
		t.Errorf("the failed append again, after recovery: %v (its charge must be gone)", err)
	}
}

// TestQuotaOfEverySenderInABatchPersists: a batch that charges several
// senders writes each one's use, so after a restart (the committer's cache
// gone) every one of them is still held to its quota.
func TestQuotaOfEverySenderInABatchPersists(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig(dir, -1)
	cfg.MaxSenderPendingMessages = 1
	storeWith(t, dir, func(s *engine) {
		started, release := make(chan struct{}), make(chan struct{})
		held := make(chan error, 1)
		go func() {
			held <- s.exclusive(func() error { close(started); <-release; return nil })
		}()
		<-started // the committer is held: the appends below queue up as one batch
		errs := make(chan error, 3)
		for sender := uint64(5); sender <= 7; sender++ {
			s.Append(Entry{Recipient: 1, Seq: sender, Kind: KindMessage, Sender: sender, MsgID: 1, Value: []byte("x")}, func(err error) { errs <- err })
		}
		close(release)
		if err := <-held; err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if st := s.Stats(); st.Commits != 1 {
			t.Fatalf("%d commits, want the three appends in one", st.Commits)
		}
	})
	s, err := openBadger(cfg.withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for sender := uint64(5); sender <= 7; sender++ {
		if err := AppendWait(s, Entry{Recipient: 2, Seq: sender, Kind: KindMessage, Sender: sender, MsgID: 2, Value: []byte("y")}); !errors.Is(err, ErrSenderQuota) {
			t.Errorf("sender %d's second entry after a restart, with a quota of 1: %v, want ErrSenderQuota", sender, err)
		}
	}
}

// TestQuotaRecordGoesWithTheLastEntry: once a sender has nothing waiting,
// its count is deleted, not kept at zero: a store does not keep a record
// for every sender it ever held a message of.
func TestQuotaRecordGoesWithTheLastEntry(t *testing.T) {
	s, err := openBadger(smallConfig(t.TempDir(), -1).withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	has := func() bool {
		t.Helper()
		var ok bool
		if err := s.view(func(rd reader) (err error) {
			ok, err = rd.(*badgerTxn).get(quotaKey(5), func([]byte) error { return nil })
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	mustAppend(t, s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 5, MsgID: 1, Value: []byte("x")})
	if !has() {
		t.Fatal("no count for a sender with an entry waiting")
	}
	mustAck(t, s, 1, 1)
	if has() {
		t.Error("the count of a sender with nothing waiting is kept")
	}
}

package storage

import (
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// These tests pin down rules of apply.go that the conformance suite let
// slip: each fails if its rule is broken.

// TestBigAppendExpiresOverBatches: an append that needs more expired
// entries deleted than one batch may take deletes them over several
// batches, a batch's budget at a time, and is stored, whether the mailbox's
// tail is known or scanned.
func TestBigAppendExpiresOverBatches(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tailMax int // 0: no tail is ever known, expiry scans
	}{
		{name: "tail", tailMax: 1024},
		{name: "scan", tailMax: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			st, err := NewMemory(Config{
				Now: clock, MessageTTL: time.Hour, HousekeepingInterval: -1,
				MaxBatch: 4, MaxMailboxBytes: 1000, MaxValueBytes: 1000,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			s := st.(*engine)
			s.tailMax = tc.tailMax // before any op: the committer reads it only to apply one
			for seq := uint64(1); seq <= 10; seq++ {
				if err := AppendWait(s, Entry{Recipient: 1, Seq: seq, Kind: KindMessage, Sender: 2, MsgID: seq, Value: make([]byte, 100)}); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			now = now.Add(2 * time.Hour) // all ten expired, the mailbox full
			mu.Unlock()
			// 900 bytes need nine of them deleted; a batch takes four units.
			if err := AppendWait(s, Entry{Recipient: 1, Seq: 11, Kind: KindMessage, Sender: 2, MsgID: 11, Value: make([]byte, 900)}); err != nil {
				t.Fatalf("append of 900 bytes into a mailbox of expired entries: %v", err)
			}
			page, _, err := s.Read(1, 0, 20, 0, nil)
			if err != nil || len(page) != 1 || page[0].Seq != 11 {
				t.Fatalf("Read = %d entries, %v; want seq 11 alone", len(page), err)
			}
			if st := s.Stats(); st.ExpiredDeleted != 9 || st.StoredBytes != 1000 {
				t.Fatalf("ExpiredDeleted %d StoredBytes %d, want 9 and 1000", st.ExpiredDeleted, st.StoredBytes)
			}
		})
	}
}

// TestDedupeRecordOutlivesItsWindow: Badger drops a dedupe record by its
// own wall clock, in whole seconds; the record must still be there when
// the window closes, or a retry just inside the window is stored again.
func TestDedupeRecordOutlivesItsWindow(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.DedupeWindow = 90 * time.Second
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 2, MsgID: 3}); err != nil {
		t.Fatal(err)
	}
	closes := time.Now().Add(cfg.DedupeWindow) // the window closes before this
	bb := s.be.(*badgerBackend)
	if err := s.exclusiveTidy(bb.spillAll); err != nil {
		t.Fatal(err)
	}
	err = bb.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(dedupeKey(2, 3, 1))
		if err != nil {
			return err
		}
		if got := int64(item.ExpiresAt()); got <= closes.Unix() {
			t.Errorf("Badger drops the dedupe record at %d, the window closes at %v (%d)", got, closes, closes.Unix())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the dedupe record in Badger: %v", err)
	}
}

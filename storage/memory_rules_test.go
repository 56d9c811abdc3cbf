package storage

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestMemoryPrunesDedupes: a housekeeping round of the memory store drops
// the dedupe records older than the window, so that they do not pile up,
// and keeps the younger ones, whose retries are still duplicates.
func TestMemoryPrunesDedupes(t *testing.T) {
	var now atomic.Int64 // unix nanoseconds: the committer reads it
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	advance := func(d time.Duration) { now.Add(int64(d)) }
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	st, err := NewMemory(Config{Now: clock, DedupeWindow: time.Hour, HousekeepingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	s := st.(*engine)
	old := Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 7, MsgID: 41}
	young := Entry{Recipient: 1, Seq: 2, Kind: KindMessage, Sender: 7, MsgID: 42}
	if err := AppendWait(s, old); err != nil {
		t.Fatal(err)
	}
	advance(30 * time.Minute)
	if err := AppendWait(s, young); err != nil {
		t.Fatal(err)
	}
	advance(31 * time.Minute) // old is past the window, young is not
	if err := s.housekeep(); err != nil {
		t.Fatal(err)
	}
	be := s.be.(*memBackend)
	be.mu.RLock()
	_, oldKept := be.st.dedupes[dedupeID{7, 41, 1}]
	_, youngKept := be.st.dedupes[dedupeID{7, 42, 1}]
	be.mu.RUnlock()
	if oldKept || !youngKept {
		t.Fatalf("after housekeeping: record past the window kept %v, record within it kept %v; want false, true", oldKept, youngKept)
	}
	young.Seq, young.Retry = 3, true
	if err := AppendWait(s, young); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("retry within the window after housekeeping: %v, want ErrDuplicate", err)
	}
}

// TestMemoryBackupUnsupported: the memory store keeps nothing on disk, and
// says so rather than writing an empty backup; closed, it says that first.
func TestMemoryBackupUnsupported(t *testing.T) {
	st, err := NewMemory(Config{HousekeepingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.(*engine).Backup(context.Background(), io.Discard); !errors.Is(err, ErrBackupUnsupported) {
		t.Fatalf("Backup of the memory store: %v, want ErrBackupUnsupported", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.(*engine).Backup(context.Background(), io.Discard); !errors.Is(err, ErrClosed) {
		t.Fatalf("Backup of a closed store: %v, want ErrClosed", err)
	}
}

// TestMemoryForgetsWhatEnds: the memory store keeps no record of a sender
// with nothing waiting, nor of a user in no group, so that its maps do not
// grow with every user it ever saw.
func TestMemoryForgetsWhatEnds(t *testing.T) {
	st, err := NewMemory(Config{HousekeepingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	s := st.(*engine)
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 5, MsgID: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := AckWait(s, 1, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ChangeGroup(GroupChange{Group: 9, Actor: 1, MsgID: 2, Op: GroupCreate, Members: []uint64{2}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ChangeGroup(GroupChange{Group: 9, Actor: 1, MsgID: 3, Op: GroupRemove, Members: []uint64{2}}); err != nil {
		t.Fatal(err)
	}
	be := s.be.(*memBackend)
	be.mu.RLock()
	_, sender := be.st.uses[5]
	_, member := be.st.byUser[2]
	be.mu.RUnlock()
	if sender || member {
		t.Fatalf("kept a sender with nothing waiting: %v; a user in no group: %v", sender, member)
	}
}

// TestReopenMemoryRefusesBadConfig: ReopenMemory with an invalid config
// says so and leaves the store open as it was.
func TestReopenMemoryRefusesBadConfig(t *testing.T) {
	st, err := NewMemory(Config{HousekeepingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := ReopenMemory(st, Config{HousekeepingInterval: -1, MaxBatch: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("ReopenMemory with MaxBatch -1: %v, want ErrInvalidConfig", err)
	}
	if err := AppendWait(st, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 5, MsgID: 1}); err != nil {
		t.Fatalf("append after a refused reopen: %v", err)
	}
}

// TestReopenMemoryRefusesABadgerStore: ReopenMemory of a store on Badger
// says so and leaves it open as it was.
func TestReopenMemoryRefusesABadgerStore(t *testing.T) {
	s := backupFixture(t)
	if got, err := ReopenMemory(s, Config{HousekeepingInterval: -1}); err == nil || !strings.Contains(err.Error(), "ReopenMemory of a store on") {
		t.Fatalf("ReopenMemory of a Badger store: %v, %v; want refused", got, err)
	}
	if err := AppendWait(s, Entry{Recipient: 7, Seq: 4, Kind: KindMessage, Sender: 9, MsgID: 104}); err != nil {
		t.Fatalf("append after a refused reopen: %v", err)
	}
}

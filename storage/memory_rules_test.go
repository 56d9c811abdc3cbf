package storage

import (
	"context"
	"errors"
	"io"
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

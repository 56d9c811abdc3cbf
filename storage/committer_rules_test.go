package storage

import (
	"bytes"
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// These tests pin down rules of the committer and of the in-flight tier
// that the rest of the suite let slip: each fails if its rule is broken.

// openSyncFailing opens a Badger store with cfg whose syncs (the engine's
// sync of the in-flight log) fail with injected while the returned switch
// is on; commits go on. The store is closed when the test ends.
func openSyncFailing(t *testing.T, cfg Config, injected error) (*engine, *atomic.Bool) {
	t.Helper()
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	fail := new(atomic.Bool)
	s.be.(*badgerBackend).failSync = func() error {
		if fail.Load() {
			return injected
		}
		return nil
	}
	return s, fail
}

// receiptEntry is a receipt entry (relaxed: its done waits for a sync).
func receiptEntry(recipient, seq uint64) Entry {
	return Entry{Recipient: recipient, Seq: seq, Kind: KindReceipt, Sender: 9, MsgID: 1000 + seq}
}

// recv returns what ch reports, or fails the test after 10 s.
func recv(t *testing.T, ch chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not called back after 10 s", what)
		return nil
	}
}

// TestRelaxedAppendDoneFollowsASync: a receipt entry committed on its own
// is not called back at its commit: its done waits for a sync, here that
// of the next urgent batch (the relaxed delay is an hour), and runs before
// that batch's own callbacks.
func TestRelaxedAppendDoneFollowsASync(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.RelaxedDelay = time.Hour
	s, _ := openSyncFailing(t, cfg, nil) // syncs never fail here
	base := s.Stats()
	order := make(chan string, 2)
	syncsAtReceipt := make(chan uint64, 1)
	receipt := make(chan error, 1)
	s.Append(receiptEntry(1, 1), func(err error) {
		syncsAtReceipt <- s.Stats().Syncs
		order <- "receipt"
		receipt <- err
	})
	// The receipt's batch is committed (and closed) before the message
	// is queued: the two never share a batch.
	waitFor(t, "the receipt's commit", func() bool { return s.Stats().Commits > base.Commits })
	message := make(chan error, 1)
	s.Append(Entry{Recipient: 2, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 1}, func(err error) {
		order <- "message"
		message <- err
	})
	if err := recv(t, message, "the message"); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, receipt, "the receipt entry"); err != nil {
		t.Fatal(err)
	}
	if got := <-syncsAtReceipt; got <= base.Syncs {
		t.Fatalf("the receipt entry was called back after %d syncs, none since its commit (%d before): its done must wait for a sync", got, base.Syncs)
	}
	if first := <-order; first != "receipt" {
		t.Fatalf("%s called back first, want the held receipt entry (the sync covered it first)", first)
	}
}

// TestFailedCommitFailsHeldRelaxedAppends: a receipt entry committed and
// held for a sync is failed with ErrCommit by the failure of the next
// batch's sync, before that batch's own ops; it is never left without a
// callback.
func TestFailedCommitFailsHeldRelaxedAppends(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.RelaxedDelay = time.Hour
	injected := errors.New("injected fsync failure")
	s, fail := openSyncFailing(t, cfg, injected)
	base := s.Stats()
	receipt := make(chan error, 1)
	s.Append(receiptEntry(1, 1), func(err error) { receipt <- err })
	waitFor(t, "the receipt's commit", func() bool { return s.Stats().Commits > base.Commits })
	select {
	case err := <-receipt:
		t.Fatalf("the receipt entry was called back (%v) before any sync", err)
	default:
	}
	fail.Store(true)
	message := make(chan error, 1)
	s.Append(Entry{Recipient: 2, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 1}, func(err error) { message <- err })
	if err := recv(t, message, "the message whose sync failed"); !errors.Is(err, ErrCommit) || !errors.Is(err, injected) {
		t.Fatalf("the message whose sync failed: %v, want ErrCommit wrapping the cause", err)
	}
	// Held ops are failed before the batch's own: by now the receipt's
	// callback has run.
	select {
	case err := <-receipt:
		if !errors.Is(err, ErrCommit) || !errors.Is(err, injected) {
			t.Fatalf("the held receipt entry: %v, want ErrCommit wrapping the cause", err)
		}
	default:
		t.Fatal("the failed commit did not call back the receipt entry held for its sync")
	}
	fail.Store(false)
	appendUntilRecovered(t, s, 3, 1)
}

// TestFailedSyncOfHeldRelaxedAppends: when the sync a held receipt entry
// waits for (the relaxed delay ran out) fails, the entry fails with
// ErrCommit, the failure is counted, and the store reopens and takes
// writes again.
func TestFailedSyncOfHeldRelaxedAppends(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.RelaxedDelay = 20 * time.Millisecond
	injected := errors.New("injected fsync failure")
	s, fail := openSyncFailing(t, cfg, injected)
	fail.Store(true)
	if err := AppendWait(s, receiptEntry(1, 1)); !errors.Is(err, ErrCommit) || !errors.Is(err, injected) {
		t.Fatalf("a receipt entry whose sync failed: %v, want ErrCommit wrapping the cause", err)
	}
	if st := s.Stats(); st.CommitErrors != 1 {
		t.Fatalf("CommitErrors %d, want 1", st.CommitErrors)
	}
	fail.Store(false)
	appendUntilRecovered(t, s, 2, 1)
	if st := s.Stats(); st.Recoveries < 1 || st.CommitErrors != 1 {
		t.Fatalf("Recoveries %d CommitErrors %d, want at least 1 and 1", st.Recoveries, st.CommitErrors)
	}
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 2, Kind: KindReceipt, Sender: 9, MsgID: 2}); err != nil {
		t.Fatalf("a receipt entry after the recovery: %v", err)
	}
}

// TestRetryAfterFailedCommitIsStored: the dedupe keys a failed batch
// wrote are forgotten by the recovery. The retry of a message whose
// commit failed (never stored) is looked up in the first batches after
// the recovery, through the prefetch helper, which checks the previous
// batch's keys: it must be stored, not refused as a duplicate of nothing.
func TestRetryAfterFailedCommitIsStored(t *testing.T) {
	cfg := testConfig(t.TempDir())
	injected := errors.New("injected commit failure")
	var (
		fail    atomic.Bool
		gate    atomic.Bool // the next commit waits in the gate
		entered = make(chan struct{})
		proceed = make(chan struct{})
		s       *engine
	)
	s, err := openBadger(cfg, func() error {
		if fail.Load() {
			return injected
		}
		if gate.CompareAndSwap(true, false) {
			// The batch is built and its prefetch helper runs: let the
			// test queue the retry, and commit once the helper took it.
			close(entered)
			<-proceed
			for end := time.Now().Add(10 * time.Second); len(s.q) > 0; time.Sleep(50 * time.Microsecond) {
				if time.Now().After(end) {
					t.Error("the prefetch helper did not take the retry within 10 s")
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for seq := uint64(1); seq <= 3; seq++ {
		if err := AppendWait(s, Entry{Recipient: 1, Seq: seq, Kind: KindMessage, Sender: 7, MsgID: seq}); err != nil {
			t.Fatal(err)
		}
	}
	// Message 100, itself a retry (so the prefetch helper runs for the
	// batches after it), fails with its batch: it is not stored.
	fail.Store(true)
	x := Entry{Recipient: 1, Seq: 4, Kind: KindMessage, Sender: 7, MsgID: 100, Retry: true, Value: []byte("x")}
	if err := AppendWait(s, x); !errors.Is(err, ErrCommit) {
		t.Fatalf("append in the failed batch: %v, want ErrCommit", err)
	}
	fail.Store(false)
	waitFor(t, "the recovery", func() bool { return s.Stats().Recoveries == 1 })

	// The first batch after the recovery holds another message; its retry
	// of message 100 is queued while that batch commits and taken by the
	// prefetch helper, for the batch after it.
	gate.Store(true)
	other := make(chan error, 1)
	s.Append(Entry{Recipient: 2, Seq: 1, Kind: KindMessage, Sender: 7, MsgID: 200}, func(err error) { other <- err })
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the batch after the recovery did not commit within 10 s")
	}
	retry := make(chan error, 1)
	s.Append(x, func(err error) { retry <- err })
	close(proceed)
	if err := recv(t, other, "the first append after the recovery"); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, retry, "the retry"); err != nil {
		var dup *DuplicateError
		if errors.As(err, &dup) {
			t.Fatalf("the retry of a message whose commit failed was refused as a duplicate of %+v, which was never stored", dup.Original)
		}
		t.Fatalf("the retry of a message whose commit failed: %v, want it stored", err)
	}
	page, _, err := s.Read(1, 0, 100, 0, nil)
	if err != nil || len(page) != 4 || page[3].Seq != 4 || !bytes.Equal(page[3].Value, x.Value) {
		t.Fatalf("recipient 1 holds %d entries (%v), want 4, the retry last", len(page), err)
	}
}

// TestTierLogSyncsFullSegmentBeforeRotating: a full segment is synced
// before the log goes on in the next one, whose syncs never cover it. A
// file that takes writes but whose every sync fails (/dev/null) stands in
// for the full segment: the rotation must try to sync it, and fail.
func TestTierLogSyncsFullSegmentBeforeRotating(t *testing.T) {
	r := newTierRig(t)
	defer func() { _ = r.be.close() }()
	l := r.be.tier.log
	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	if err := syscall.Fdatasync(int(devNull.Fd())); err == nil {
		t.Skip("fdatasync of /dev/null succeeds here: it cannot stand in for a segment")
	}
	seg, f, off, syncedOff := l.current(), l.f, l.off, l.syncedOff
	// The segment is full to within a few bytes, and its last record was
	// not synced: the next record starts the next segment.
	l.f, l.off, l.syncedOff = devNull, tierSegmentBytes-tierEndMark-4, int64(tierHeader)
	var rec tierRecord
	rec.reset()
	rec.set([]byte("xa"), []byte("next"), 0)
	err = l.append(rec.bytes())
	if err == nil {
		t.Fatalf("a record starting segment %d after segment %d was written without a sync of the full segment: its last records would never be durable", l.current(), seg)
	}
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("append across segments: %v, want the full segment's failed sync", err)
	}
	if l.current() != seg || l.f != devNull {
		t.Fatalf("the log went on in segment %d although the full one's sync failed", l.current())
	}
	l.f, l.off, l.syncedOff = f, off, syncedOff
}

// TestSpillOnlyWhatTheLogSynced: the tier spills into Badger only what
// the log has synced. An ack (relaxed: its batch is not synced) spills at
// once (SpillAfter < 0); once it is spilled, the log is synced up to its
// end.
func TestSpillOnlyWhatTheLogSynced(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SpillAfter = -1
	cfg.RelaxedDelay = time.Hour
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	be := s.be.(*badgerBackend)
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 1, Value: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	var spilled int64
	// exclusive runs after the last batch's tidy.
	if err := s.exclusive(func() error { spilled = be.gauges.spilled.Load(); return nil }); err != nil {
		t.Fatal(err)
	}
	if res, err := AckWait(s, 1, 1); err != nil || res.Deleted != 1 {
		t.Fatalf("ack: %+v %v", res, err)
	}
	err = s.exclusive(func() error {
		l := be.tier.log
		if now := be.gauges.spilled.Load(); now <= spilled {
			t.Errorf("the ack's writes were not spilled (Spilled %d, %d before)", now, spilled)
		}
		if l.syncedOff != l.off {
			t.Errorf("the log is synced up to %d of segment %d, written up to %d: Badger holds writes the log could lose", l.syncedOff, l.current(), l.off)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

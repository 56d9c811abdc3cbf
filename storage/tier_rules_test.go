package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests pin down rules of the in-flight log and of the store's
// recovery that the rest of the suite let slip: each fails if its rule
// is broken.

// logSegments returns the segments of s's in-flight log, read on the
// committer between two batches.
func logSegments(t *testing.T, s *engine) []uint64 {
	t.Helper()
	var segs []uint64
	if err := s.exclusive(func() error {
		segs = slices.Clone(s.be.(*badgerBackend).tier.log.segs)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return segs
}

// TestRetireFailureSeenByHousekeeping: a retired segment that could not
// be deleted fails the store like a failed commit when housekeeping is
// the one to hear of it, as when a batch's tidy does: the database is
// reopened and the log replayed, and the segments on disk stay a run
// ending at the newest. A store that went on deleting newer segments
// behind the one left would, at its next replay, apply that segment's
// old writes over what the deleted ones had overwritten.
func TestRetireFailureSeenByHousekeeping(t *testing.T) {
	defer func(rm func(string) error, mv func(string, string) error) {
		removeSegment, recycleSegment = rm, mv
	}(removeSegment, recycleSegment)
	cfg := testConfig(t.TempDir())
	cfg.SpillAfter = -1 // every write leaves the tier with its batch: full segments retire
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	be := s.be.(*badgerBackend)
	logDir := filepath.Join(cfg.Dir, tierLogDir)
	val := bytes.Repeat([]byte{'v'}, DefaultMaxValueBytes)
	seq := uint64(0)
	// fill appends until the log has rotated n times more; an append
	// refused while the store reopens is tried again.
	fill := func(n int) {
		t.Helper()
		last := logSegments(t, s)
		want := last[len(last)-1] + uint64(n)
		for deadline := time.Now().Add(10 * time.Second); ; {
			segs := logSegments(t, s)
			if segs[len(segs)-1] >= want {
				return
			}
			err := AppendWait(s, Entry{Recipient: 1, Seq: seq + 1, Kind: KindMessage, MsgID: seq + 1, Value: val})
			switch {
			case err == nil:
				seq++
			case !errors.Is(err, ErrRecovering) && !errors.Is(err, ErrCommit):
				t.Fatal(err)
			case time.Now().After(deadline):
				t.Fatalf("the store still refuses writes after 10 s: %v", err)
			}
		}
	}
	// Segments retire only once Badger has a single memtable: a second
	// memtable log, as while one is flushed, holds them back.
	held := filepath.Join(cfg.Dir, "999999.mem")
	if err := os.WriteFile(held, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fill(1)
	removeSegment = func(string) error { return errInjected }
	recycleSegment = func(string, string) error { return errInjected }
	if err := os.Remove(held); err != nil {
		t.Fatal(err)
	}
	// Start deleting the full segments now, and let the helper fail.
	err = s.exclusive(func() error {
		be.tier.retryRetire = time.Time{}
		if err := be.tidy(); err != nil {
			return err
		}
		if be.tier.retiring == nil {
			return errors.New("no segment was retired")
		}
		return awaitRemoval(be.tier)
	})
	if !errors.Is(err, errInjected) {
		t.Fatalf("the helper deleting segments: %v, want the injected failure", err)
	}
	if err := s.housekeep(); !errors.Is(err, errInjected) {
		t.Fatalf("housekeeping after the failed deletion: %v, want the injected failure", err)
	}
	removeSegment, recycleSegment = os.Remove, os.Rename
	waitFor(t, "the store to take writes", func() bool { return s.failure() == nil })
	// Writes go on, and fill more segments, which retire in their turn.
	fill(1)
	err = s.exclusive(func() error {
		if err := awaitRemoval(be.tier); err != nil {
			return err
		}
		return be.tidy() // collects the helper's result
	})
	if err != nil {
		t.Fatal(err)
	}
	on, err := listSegments(logDir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(on); i++ {
		if on[i] != on[i-1]+1 {
			t.Fatalf("segments on disk %v: a gap after the segment left by the failed deletion", on)
		}
	}
	if st := s.Stats(); st.CommitErrors != 1 || st.Recoveries != 1 {
		t.Fatalf("CommitErrors %d, Recoveries %d: want the failed deletion handled as one failed commit", st.CommitErrors, st.Recoveries)
	}
	page, _, err := s.Read(1, 0, 1000, 0, nil)
	if err != nil || uint64(len(page)) != seq || page[len(page)-1].Seq != seq {
		t.Fatalf("recipient 1 holds %d entries (%v), want the %d appended", len(page), err, seq)
	}
}

// TestBackupAfterFailedSpill: a spill into Badger that fails before a
// backup fails the store like a failed commit. It reopens, the next
// backup is taken, and a clean close loses nothing: what the failed
// spill had taken from the tier's queues is replayed from the log, where
// before it stayed in the tier with nothing left to spill it, and every
// later backup and the clean close failed. The log's sync, which the
// spill needs for the ack's unsynced writes, fails: a file whose syncs
// fail (/dev/null) stands in for the segment.
func TestBackupAfterFailedSpill(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fdatasync(int(devNull.Fd())); err == nil {
		t.Skip("fdatasync of /dev/null succeeds here: it cannot stand in for a segment")
	}
	cfg := testConfig(t.TempDir())
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if err := AppendWait(s, Entry{Recipient: 5, Seq: seq, Kind: KindMessage, Sender: 6, MsgID: seq, Value: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	// An ack is committed without a sync: spilling it needs one.
	if res, err := AckWait(s, 5, 2); err != nil || res.Deleted != 2 {
		t.Fatalf("ack: %+v %v", res, err)
	}
	be := s.be.(*badgerBackend)
	var segment *os.File
	if err := s.exclusive(func() error {
		l := be.tier.log
		segment, l.f = l.f, devNull
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(context.Background(), io.Discard); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("backup while the log's sync fails: %v, want the failed sync", err)
	}
	// The segment comes back, unless a reopen has dropped the tier.
	err = s.exclusive(func() error {
		if l := be.tier.log; l.f == devNull {
			l.f, segment = segment, nil
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrRecovering) {
		t.Fatal(err)
	}
	if segment != nil {
		_ = segment.Close()
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, err := s.Backup(context.Background(), io.Discard)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrRecovering) || time.Now().After(deadline) {
			t.Fatalf("backup after the failed spill: %v", err)
		}
		time.Sleep(time.Millisecond) // poll: recovery is the store's own
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close after the failed spill: %v", err)
	}
	s, err = openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	page, _, err := s.Read(5, 0, 10, 0, nil)
	if err != nil || len(page) != 1 || page[0].Seq != 3 {
		t.Fatalf("recipient 5 holds %d entries (%v), want seq 3 alone", len(page), err)
	}
	var receipts []PendingReceipt
	if err := s.PendingReceipts(func(p PendingReceipt) bool { receipts = append(receipts, p); return true }); err != nil {
		t.Fatal(err)
	}
	if len(receipts) != 1 || receipts[0].MsgID != 1 || receipts[0].More != 1 {
		t.Fatalf("pending receipts %+v, want one for msgs 1 and 2", receipts)
	}
}

// TestTierSegmentFilesWhole: a segment file is written whole before a
// record goes in (tierSegmentBytes, the magic first), and a record that
// would leave no room for the end mark starts the next segment, so a
// sync writes a record's pages and changes no file's size, and the end
// mark of a full segment lies inside it.
func TestTierSegmentFilesWhole(t *testing.T) {
	r := newTierRig(t)
	defer func() { _ = r.be.close() }()
	l := r.be.tier.log
	size := func(seg uint64) int64 {
		t.Helper()
		fi, err := os.Stat(l.segPath(seg))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	first := l.current()
	if got := size(first); got != tierSegmentBytes {
		t.Fatalf("a new segment file holds %d bytes, want %d", got, tierSegmentBytes)
	}
	if !secondFormat(l.segPath(first)) {
		t.Fatal("a new segment does not start with the magic")
	}
	var rec tierRecord
	rec.reset()
	rec.set([]byte("xa"), []byte("last"), 0)
	b := rec.bytes()
	// One byte more than fits before the end mark.
	l.off = tierSegmentBytes - tierEndMark - int64(len(b)) + 1
	if err := l.append(b); err != nil {
		t.Fatal(err)
	}
	if l.current() == first || l.off != int64(tierHeader+len(b)) {
		t.Fatalf("the record went into segment %d at %d, want the start of the next one", l.current(), l.off-int64(len(b)))
	}
	for _, seg := range []uint64{first, l.current()} {
		if got := size(seg); got != tierSegmentBytes {
			t.Fatalf("segment %d holds %d bytes after the rotation, want %d", seg, got, tierSegmentBytes)
		}
	}
}

// TestTierFullRecycledSegmentEnds: a recycled segment, once full, ends at
// its end mark, not at the bytes left from its earlier life: a replay
// reads it as ended, not torn, with every record of its current life.
func TestTierFullRecycledSegmentEnds(t *testing.T) {
	r := newTierRig(t)
	defer func() { _ = r.be.close() }()
	l := r.be.tier.log
	// A retired segment whose earlier life left no record of any other
	// segment where this one's end: the spare after the one being
	// prepared now is made of it.
	old := bytes.Repeat([]byte{0xa5}, tierSegmentBytes)
	copy(old, tierMagic)
	if err := os.WriteFile(filepath.Join(l.dir, tierRecycled), old, 0o600); err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte{'v'}, 64<<10)
	written := map[uint64]int{} // records written into each segment
	for i := 0; ; i++ {
		if i > 3*tierSegmentBytes/len(val) {
			t.Fatal("no recycled segment was filled")
		}
		recycled, seg := l.inRecycled, l.current()
		w := r.be.begin().(*badgerTxn)
		w.kv.set([]byte{'x', byte(i % 7)}, val, 0, keyAny)
		if err := w.commit(); err != nil {
			t.Fatal(err)
		}
		if l.current() != seg && recycled {
			n := 0
			torn, _, err := readSegment(l.segPath(seg), seg, func([]byte) error { n++; return nil })
			if err != nil || torn || n != written[seg] {
				t.Fatalf("full recycled segment %d: %d records read, torn %v (%v); want %d, ended by its mark", seg, n, torn, err, written[seg])
			}
			return
		}
		written[l.current()]++
	}
}

// TestTierAbandonLeavesTheLog: a tier dropped after a failed commit
// (abandon) stops the helper deleting retired segments, which then
// deletes nothing more, and leaves on disk exactly the log's segments
// and the retired ones not yet deleted, without the spare prepared
// ahead; the replay that follows reads every write.
func TestTierAbandonLeavesTheLog(t *testing.T) {
	r := newTierRig(t)
	model, _ := writeSegments(t, r)
	if err := awaitRemoval(r.be.tier); err != nil {
		t.Fatal(err)
	}
	if err := r.be.tidy(); err != nil { // collects the last result, if any
		t.Fatal(err)
	}
	tr := r.be.tier
	// Hold the helper: a second memtable log, as while one is flushed.
	held := filepath.Join(r.be.db.Opts().Dir, "999999.mem")
	if err := os.WriteFile(held, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(tr.log.segs)
	paths := tr.log.detach(func(seg uint64) bool { return false })
	if len(paths) == 0 {
		t.Fatal("nothing to retire")
	}
	tr.startRemoval(r.be.db, paths)
	helper := tr.retiring
	if _, ok := awaitSpare(tr.log); !ok {
		t.Fatal("no spare was prepared")
	}
	tr.abandon()
	select {
	case <-helper.stop:
	default:
		t.Fatal("the helper deleting retired segments still runs after abandon")
	}
	if on, _ := listSegments(filepath.Join(r.dir, tierLogDir)); !slices.Equal(on, want) {
		t.Fatalf("segments on disk after abandon %v, want %v: the log's and the retired ones, without the spare", on, want)
	}
	if err := os.Remove(held); err != nil {
		t.Fatal(err)
	}
	if err := r.be.db.Close(); err != nil {
		t.Fatal(err)
	}
	r.open()
	defer func() { _ = r.be.close() }()
	if got, want := r.contents(), modelContents(model); !slices.Equal(got, want) {
		t.Fatalf("after replaying an abandoned log: %d keys, want %d", len(got), len(want))
	}
}

// stuckReopening opens a store in cfg.Dir holding seqs 1-3 of recipient
// 1, fails a commit, and returns once the reopen that follows has failed:
// the in-flight log holds a segment that cannot be read (a folder, whose
// path it returns), and the store retries until that is removed.
func stuckReopening(t *testing.T, cfg Config) (*engine, string) {
	t.Helper()
	var (
		mu   sync.Mutex
		msgs []string
	)
	cfg.Logger = slog.New(recordHandler{&mu, &msgs})
	s, fail := openFailing(t, cfg, errInjected) // appends seqs 1-3 to recipient 1
	unreadable := filepath.Join(cfg.Dir, tierLogDir, segName(1<<40))
	if err := os.Mkdir(unreadable, 0o700); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 4, Kind: KindMessage, MsgID: 4}); !errors.Is(err, ErrCommit) {
		t.Fatalf("append with the commit failing: %v, want ErrCommit", err)
	}
	fail.Store(false)
	waitFor(t, "a reopen that fails", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(msgs, "storage: reopening the database failed; will retry")
	})
	return s, unreadable
}

// TestStoreWhileReopeningFails: while the database cannot be reopened,
// reads and backups are refused with ErrRecovering, and the store closes;
// the next open, once the log reads, has every commit before.
func TestStoreWhileReopeningFails(t *testing.T) {
	cfg := testConfig(t.TempDir())
	s, unreadable := stuckReopening(t, cfg)
	if _, _, err := s.Read(1, 0, 10, 0, nil); !errors.Is(err, ErrRecovering) {
		t.Errorf("read while reopening fails: %v, want ErrRecovering", err)
	}
	if _, err := s.Backup(context.Background(), io.Discard); !errors.Is(err, ErrRecovering) {
		t.Errorf("backup while reopening fails: %v, want ErrRecovering", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("close while reopening fails: %v", err)
	}
	if err := os.Remove(unreadable); err != nil {
		t.Fatal(err)
	}
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := values(t, s, 1); len(got) != 3 {
		t.Fatalf("recipient 1 after the open holds %v, want seqs 1-3", got)
	}
}

// TestOpenAfterAFailedReplay: an open or a reopen whose replay of the
// in-flight log fails (here a segment that cannot be read) closes Badger
// again, so that the next attempt can take its folder once the log reads:
// the store then takes writes, with everything committed before.
func TestOpenAfterAFailedReplay(t *testing.T) {
	cfg := testConfig(t.TempDir())
	s, unreadable := stuckReopening(t, cfg)
	if err := os.Remove(unreadable); err != nil {
		t.Fatal(err)
	}
	appendUntilRecovered(t, s, 1, 4)
	// Seqs 1-3, and the first append the recovered store took.
	var want []uint64
	check := func(s Store, when string) {
		t.Helper()
		page, _, err := s.Read(1, 0, 10, 0, nil)
		var got []uint64
		for _, e := range page {
			got = append(got, e.Seq)
		}
		if want == nil {
			want = got
		}
		if err != nil || len(got) != 4 || !slices.Equal(got[:3], []uint64{1, 2, 3}) || !slices.Equal(got, want) {
			t.Fatalf("%s: recipient 1 holds seqs %v (%v), want 1-3 and then one, %v", when, got, err, want)
		}
	}
	check(s, "after the reopen")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(unreadable, 0o700); err != nil {
		t.Fatal(err)
	}
	if s, err := openBadger(cfg, nil); err == nil {
		s.Close()
		t.Fatal("an open whose replay fails succeeded")
	}
	if err := os.Remove(unreadable); err != nil {
		t.Fatal(err)
	}
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatalf("an open after one whose replay failed: %v", err)
	}
	defer s.Close()
	check(s, "after the open")
}

// TestTierCloseDeletesTheRecycledSegment: a clean close deletes the
// retired segment kept to be recycled with the rest of the log, so the
// log's folder is left empty.
func TestTierCloseDeletesTheRecycledSegment(t *testing.T) {
	r := newTierRig(t)
	l := r.be.tier.log
	if _, ok := awaitSpare(l); !ok { // the spare is made: nothing takes the recycled one now
		t.Fatal("no spare was prepared")
	}
	w := r.be.begin().(*badgerTxn)
	w.kv.set([]byte("xa"), []byte("kept"), 0, keyAny)
	if err := w.commit(); err != nil {
		t.Fatal(err)
	}
	old := append([]byte(tierMagic), make([]byte, 64)...)
	if err := os.WriteFile(filepath.Join(l.dir, tierRecycled), old, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.be.close(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(l.dir); len(ents) != 0 {
		t.Fatalf("files left in the log's folder after a clean close: %v", ents)
	}
	r.open()
	defer func() { _ = r.be.close() }()
	if got := r.contents(); !slices.Equal(got, []string{fmt.Sprintf("%x=kept", "xa")}) {
		t.Fatalf("after a clean close and an open: %v", got)
	}
}

// TestTierCloseSpillsEverything: a clean close spills the whole tier into
// Badger, however many rounds of tierSpillChunk that takes, before it
// deletes the log: an open finds every key.
func TestTierCloseSpillsEverything(t *testing.T) {
	r := newTierRig(t)
	w := r.be.begin().(*badgerTxn)
	var want []string
	for i := range 2*tierSpillChunk + 1 {
		k := fmt.Appendf(nil, "x%04d", i)
		w.kv.set(k, []byte("v"), 0, keyAny)
		want = append(want, fmt.Sprintf("%x=v", k))
	}
	if err := w.commit(); err != nil {
		t.Fatal(err)
	}
	if err := r.be.close(); err != nil {
		t.Fatal(err)
	}
	r.open()
	defer func() { _ = r.be.close() }()
	if got := r.contents(); !slices.Equal(got, want) {
		t.Fatalf("after a clean close and an open: %d keys, want %d", len(got), len(want))
	}
}

// TestTierCloseKeepsTheLogWhenASpillFails: a clean close whose spill into
// Badger fails (here the log's sync it needs first: a file whose syncs
// fail, /dev/null, stands in for the segment) keeps the log, and the next
// open replays it.
func TestTierCloseKeepsTheLogWhenASpillFails(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fdatasync(int(devNull.Fd())); err == nil {
		t.Skip("fdatasync of /dev/null succeeds here: it cannot stand in for a segment")
	}
	r := newTierRig(t)
	w := r.be.begin().(*badgerTxn)
	w.kv.set([]byte("xa"), []byte("kept"), 0, keyAny)
	if err := w.commit(); err != nil { // committed, not synced
		t.Fatal(err)
	}
	l := r.be.tier.log
	segment := l.f
	defer segment.Close()
	l.f = devNull // closed by the close below
	if err := r.be.close(); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("close with the log's sync failing: %v, want the failed sync", err)
	}
	r.open()
	defer func() { _ = r.be.close() }()
	if got := r.contents(); !slices.Equal(got, []string{fmt.Sprintf("%x=kept", "xa")}) {
		t.Fatalf("after a close whose spill failed, and an open: %v", got)
	}
}

// TestTierRotationOnAFullDisk: when the disk is too full for the log's
// next segment, the commit that needs it fails (ENOSPC) and is not
// applied, no part of the segment is left to hold the space, and a replay
// gives back every commit before it.
func TestTierRotationOnAFullDisk(t *testing.T) {
	root := mountTmpfs(t, 64<<20)
	r := &tierRig{t: t, dir: filepath.Join(root, "db")}
	r.open()
	l := r.be.tier.log
	awaitSpare(l) // segment 2 is made while there is room
	filler := fillDisk(t, root, tierSegmentBytes/2)
	val := bytes.Repeat([]byte{'v'}, 64<<10)
	model := map[string][]byte{}
	var err error
	for i := 0; err == nil; i++ {
		if i > 3*tierSegmentBytes/len(val) {
			t.Fatal("every commit succeeded on a full disk")
		}
		w := r.be.begin().(*badgerTxn)
		k := []byte{'x', byte(i % 7)}
		v := append(bytes.Clone(val), byte(i))
		w.kv.set(k, v, 0, keyAny)
		if err = w.commit(); err == nil {
			model[string(k)] = v
		}
	}
	if !errors.Is(err, syscall.ENOSPC) || l.current() != 2 {
		t.Fatalf("commit failed in segment %d: %v, want in segment 2 with ENOSPC", l.current(), err)
	}
	if got, want := r.contents(), modelContents(model); !slices.Equal(got, want) {
		t.Fatalf("after the failed commit: %d keys, want %d", len(got), len(want))
	}
	if tmps, _ := filepath.Glob(filepath.Join(r.dir, tierLogDir, "*.tmp")); len(tmps) != 0 {
		t.Fatalf("left in the log's folder: %v", tmps)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r.crash()
	if got, want := r.contents(), modelContents(model); !slices.Equal(got, want) {
		t.Fatalf("after the replay: %d keys, want %d", len(got), len(want))
	}
	_ = r.be.close()
}

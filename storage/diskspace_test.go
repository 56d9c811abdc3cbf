package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// smallConfig is a store that fits a 128 MiB tmpfs: 8 MiB memtables (the least that holds Badger's 1 MiB value threshold) and
// batches to match Badger's transaction cap.
func smallConfig(dir string, floor int64) Config {
	return Config{
		Dir: dir, HousekeepingInterval: -1, RelaxedDelay: -1,
		MemTableSize: 8 << 20, MaxBatch: 64, MaxBatchBytes: 64 << 10,
		MaxValueBytes: 16 << 10, MaxGroupMembers: 16, MinFreeBytes: floor,
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new folder, or skips.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root): %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// fillDisk writes a file into dir until free space is about left bytes.
func fillDisk(t *testing.T, dir string, left int64) string {
	t.Helper()
	return fillDiskAs(t, dir, "filler", left)
}

// fillDiskAs is fillDisk with the file's name; it stops at a full disk.
func fillDiskAs(t *testing.T, dir, name string, left int64) string {
	t.Helper()
	free, err := freeBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for n := free - left; n > 0; n -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), n)]); err != nil {
			if errors.Is(err, unix.ENOSPC) {
				break
			}
			t.Fatalf("filling: %v", err)
		}
	}
	return path
}

// waitAppend appends e until the result is not ErrDiskFull or the deadline.
func waitAppend(t *testing.T, s Store, e Entry) error {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := AppendWait(s, e)
		if !errors.Is(err, ErrDiskFull) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond) // poll: the store reads the free space every 100 ms
	}
}

// TestDiskFloor fills a real (tmpfs) disk below the floor: messages are
// refused with ErrDiskFull while acks and reads go on, the process does not
// die of SIGBUS, a store starts on the full disk, and writes resume by
// themselves once space returns.
func TestDiskFloor(t *testing.T) {
	fs := mountTmpfs(t, 128<<20)
	dir := filepath.Join(fs, "db")
	const floor = 48 << 20
	s, err := Open(smallConfig(dir, floor))
	if err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 1000)
	for seq := uint64(1); seq <= 10; seq++ {
		if err := AppendWait(s, Entry{Recipient: 1, Seq: seq, Kind: KindMessage, Sender: 2, MsgID: seq, Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	filler := fillDisk(t, fs, 36<<20) // below the floor, with room for what Badger still writes
	next := uint64(11)
	err = waitFull(t, s, &next, value)
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("append below the floor: %v, want ErrDiskFull", err)
	}
	if _, _, err := s.ChangeGroup(GroupChange{Group: 7, Actor: 1, MsgID: 1, Op: GroupCreate}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("group create below the floor: %v, want ErrDiskFull", err)
	}
	// Acks free space and go on; reads too.
	if res, err := AckWait(s, 1, 5); err != nil || res.Deleted != 5 || len(res.Pending) != 1 {
		t.Fatalf("ack below the floor: %+v %v", res, err)
	}
	hw, err := s.LastSeq(1) // 10, plus what went in before the store saw the filler
	if err != nil || hw < 10 || hw >= next-1 {
		t.Fatalf("LastSeq below the floor: %d %v (next %d)", hw, err, next)
	}
	if page, _, err := s.Read(1, 6, 100, 0, nil); err != nil || uint64(len(page)) != hw-5 {
		t.Fatalf("read below the floor: %d entries, %v; want %d", len(page), err, hw-5)
	}
	if st := s.Stats(); st.RefusedDiskFull == 0 || st.DiskLow != 1 {
		t.Fatalf("RefusedDiskFull %d DiskLow %d", st.RefusedDiskFull, st.DiskLow)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Something else takes the last byte: starting on the full disk works
	// (the reserve file makes room for Badger), and refuses messages.
	if _, err := os.Stat(dir + ".reserve"); err != nil {
		t.Fatalf("no reserve file: %v", err)
	}
	topUp := fillDiskAs(t, fs, "filler2", 0)
	if free, _ := freeBytes(fs); free != 0 {
		t.Fatalf("free %d after filling, want 0", free)
	}
	s, err = Open(smallConfig(dir, floor))
	if err != nil {
		t.Fatalf("open on a full disk: %v", err)
	}
	defer s.Close()
	if got, err := s.LastSeq(1); err != nil || got != hw {
		t.Fatalf("LastSeq after reopening on a full disk: %d %v, want %d", got, err, hw)
	}
	if err := AppendWait(s, Entry{Recipient: 1, Seq: next, Kind: KindMessage, Sender: 2, MsgID: next, Value: value}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("append after starting on a full disk: %v, want ErrDiskFull", err)
	}
	next++
	if res, err := AckWait(s, 1, 7); err != nil || res.Deleted != 2 {
		t.Fatalf("ack after starting on a full disk: %+v %v", res, err)
	}

	// Space returns: writes resume by themselves.
	for _, f := range []string{filler, topUp} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitAppend(t, s, Entry{Recipient: 1, Seq: next, Kind: KindMessage, Sender: 2, MsgID: next, Value: value}); err != nil {
		t.Fatalf("append once space returned: %v", err)
	}
	if st := s.Stats(); st.DiskLow != 0 {
		t.Fatalf("DiskLow %d after space returned", st.DiskLow)
	}
	if _, err := os.Stat(dir + ".reserve"); err != nil {
		t.Fatalf("the reserve file was not made again: %v", err)
	}
}

// openBelowTheFloor opens a Badger store whose free-space floor is far
// above what its disk has free; it closes when the test ends.
func openBelowTheFloor(t *testing.T) *engine {
	t.Helper()
	free, _, err := DiskSpace(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := openBadger(smallConfig(filepath.Join(t.TempDir(), "db"), free+1<<40).withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestOpenBelowTheFloorIsLow: a store opened on a disk already below the
// floor says so before any write (readiness and the gauge read it).
func TestOpenBelowTheFloorIsLow(t *testing.T) {
	s := openBelowTheFloor(t)
	if st := s.Stats(); st.DiskLow != 1 {
		t.Fatalf("DiskLow %d right after opening below the floor, want 1", st.DiskLow)
	}
}

// TestBelowTheFloorTakesRelaxedWrites: below the floor, a message is
// refused, and a receipt entry and an ack are taken: they are small, and
// acks free space.
func TestBelowTheFloorTakesRelaxedWrites(t *testing.T) {
	s := openBelowTheFloor(t)
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 2, MsgID: 1}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("message below the floor: %v, want ErrDiskFull", err)
	}
	if err := AppendWait(s, receiptEntry(1, 2)); err != nil {
		t.Fatalf("receipt entry below the floor: %v", err)
	}
	if res, err := AckWait(s, 1, 2); err != nil || res.Deleted != 1 {
		t.Fatalf("ack below the floor: %+v %v, want one entry deleted", res, err)
	}
}

// TestIdleStoreFollowsTheDisk: a store nobody writes to still sees its disk
// fill (at the next housekeeping round) and, once it is below the floor,
// sees space return by itself, so the disk_low gauge and readiness clear
// without a message to trigger the check.
func TestIdleStoreFollowsTheDisk(t *testing.T) {
	fs := mountTmpfs(t, 128<<20)
	const floor = 48 << 20
	s, err := openBadger(smallConfig(filepath.Join(fs, "db"), floor).withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 2, MsgID: 1}); err != nil {
		t.Fatal(err)
	}
	filler := fillDisk(t, fs, 36<<20)
	if st := s.Stats(); st.DiskLow != 0 {
		t.Fatalf("DiskLow %d before any check", st.DiskLow)
	}
	if err := s.housekeep(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.DiskLow != 1 {
		t.Fatalf("DiskLow %d after a housekeeping round on a disk below the floor, want 1", st.DiskLow)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "DiskLow to clear with no write", func() bool { return s.Stats().DiskLow == 0 })
	if _, err := os.Stat(filepath.Join(fs, "db.reserve")); err != nil {
		t.Fatalf("the reserve file was not made again: %v", err)
	}
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 2, Kind: KindMessage, Sender: 2, MsgID: 2}); err != nil {
		t.Fatalf("the first append once space returned: %v", err)
	}
}

// waitFull appends until the store refuses with ErrDiskFull (it reads the
// free space every 100 ms) or the deadline, and returns the last error.
func waitFull(t *testing.T, s Store, next *uint64, value []byte) error {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := AppendWait(s, Entry{Recipient: 1, Seq: *next, Kind: KindMessage, Sender: 2, MsgID: *next, Value: value})
		*next++
		if err != nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond) // poll
	}
}

// DiskSpace reports a file system's size and what is free on it: on a
// 64 MiB tmpfs, exactly 64 MiB, all free, then 16 MiB less once a 16 MiB
// file is written.
func TestDiskSpace(t *testing.T) {
	dir := mountTmpfs(t, 64<<20)
	free, size, err := DiskSpace(dir)
	if err != nil || free != 64<<20 || size != 64<<20 {
		t.Fatalf("DiskSpace of an empty 64 MiB tmpfs = %d free, %d size, %v; want 64 MiB both", free, size, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	free, size, err = DiskSpace(dir)
	if err != nil || free != 48<<20 || size != 64<<20 {
		t.Fatalf("after 16 MiB written: %d free, %d size, %v; want 48 MiB free of 64", free, size, err)
	}
	if _, _, err := DiskSpace(filepath.Join(dir, "missing")); !errors.Is(err, unix.ENOENT) {
		t.Errorf("DiskSpace of a missing folder: %v, want ENOENT", err)
	}
}

// TestReserveKeepsTheFloor: a store that opens with free space above the
// floor, but by less than the reserve file would take, does not make the
// reserve file: it would take free space below the floor and refuse
// messages by itself.
func TestReserveKeepsTheFloor(t *testing.T) {
	fs := mountTmpfs(t, 256<<20)
	const floor = 96 << 20 // reserve: 24 MiB
	// Room for the in-flight log's segments (16 MiB: the one written and
	// the spare), not for the reserve as well.
	fillDisk(t, fs, floor+20<<20)
	s, err := openBadger(smallConfig(filepath.Join(fs, "db"), floor).withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(filepath.Join(fs, "db.reserve")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the reserve file was made with too little room for it (%v)", err)
	}
	if st := s.Stats(); st.DiskLow != 0 {
		t.Errorf("DiskLow %d above the floor", st.DiskLow)
	}
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 2, MsgID: 1}); err != nil {
		t.Errorf("append above the floor: %v", err)
	}
}

// TestDiskCheckErrorKeepsVerdict: when the free space cannot be read, the
// store keeps its last verdict rather than refusing messages.
func TestDiskCheckErrorKeepsVerdict(t *testing.T) {
	dir := t.TempDir()
	s, err := openBadger(smallConfig(filepath.Join(dir, "db"), 1<<20).withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.exclusive(func() error {
		s.disk.dir = filepath.Join(dir, "gone") // statfs fails from now on
		s.disk.checked = time.Time{}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 2, MsgID: 1}); err != nil {
		t.Errorf("append while the free space cannot be read: %v", err)
	}
	if st := s.Stats(); st.DiskLow != 0 {
		t.Errorf("DiskLow %d while the free space cannot be read", st.DiskLow)
	}
}

// TestOpenOnADiskTooFullForTheLog: a store opened on a disk without room
// for the first segment of its in-flight log fails with ENOSPC, leaves no
// part of the segment behind to hold the space, and releases its folder:
// once space is freed, it opens.
func TestOpenOnADiskTooFullForTheLog(t *testing.T) {
	root := mountTmpfs(t, 64<<20)
	cfg := smallConfig(filepath.Join(root, "db"), -1).withDefaults()
	filler := fillDisk(t, root, tierSegmentBytes/2)
	if s, err := openBadger(cfg, nil); !errors.Is(err, unix.ENOSPC) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("open with half a segment free: %v, want ENOSPC", err)
	}
	if ents, err := os.ReadDir(filepath.Join(cfg.Dir, tierLogDir)); err != nil || len(ents) != 0 {
		t.Fatalf("the log's folder after the failed open holds %v (%v), want nothing", ents, err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatalf("open once space is freed: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

package storage

import (
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// diskBytes is the space Badger's files under dir occupy on disk
// (allocated blocks: Badger's files are sparse, so their length says
// little). The in-flight log is left out: its segments are zeroed ahead,
// so it takes the same space full or empty.
func diskBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == tierLogDir {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// fill appends per entries of size bytes to each of recipients mailboxes,
// many in flight at once.
func fill(t testing.TB, s Store, recipients, per, size int) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, 512)
	val := make([]byte, size)
	for seq := uint64(1); seq <= uint64(per); seq++ {
		for r := uint64(1); r <= uint64(recipients); r++ {
			sem <- struct{}{}
			wg.Add(1)
			s.Append(Entry{Recipient: r, Seq: seq, Kind: KindMessage, Sender: 9, MsgID: r<<32 | seq, Value: val}, func(err error) {
				if err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
				}
				<-sem
				wg.Done()
			})
		}
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

// TestDiskSpaceComesBack fills mailboxes, drains them, runs housekeeping
// and checks the data folder shrank.
func TestDiskSpaceComesBack(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.SpillAfter = -1 // what is written goes into Badger, as an offline recipient's entries do
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const recipients, per, size = 40, 500, 1000 // 20 MB of values in 20,000 entries: quick under -race
	fill(t, s, recipients, per, size)
	full := diskBytes(t, dir)
	for r := uint64(1); r <= recipients; r++ {
		res, err := AckWait(s, r, per)
		if err != nil || res.Deleted != per {
			t.Fatalf("drain %d: %+v %v", r, res, err)
		}
	}
	drained := diskBytes(t, dir)
	// The first round sees the drain's commits and leaves the tree alone;
	// the next, with the store quiet since, flattens it.
	if err := s.housekeep(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Flattens != 0 {
		t.Fatalf("Flattens %d right after the drain's commits, want 0", st.Flattens)
	}
	if err := s.housekeep(); err != nil {
		t.Fatal(err)
	}
	after := diskBytes(t, dir)
	t.Logf("data folder: %d KiB full, %d KiB drained, %d KiB after housekeeping", full>>10, drained>>10, after>>10)
	if full < recipients*per*size {
		t.Fatalf("full folder %d bytes is smaller than the values written", full)
	}
	if st := s.Stats(); st.Flattens != 1 || st.StoredBytes != 0 {
		t.Fatalf("Flattens %d StoredBytes %d, want 1 and 0", st.Flattens, st.StoredBytes)
	}
	if after > full/4 {
		t.Fatalf("after housekeeping the folder holds %d bytes, more than a quarter of the full %d", after, full)
	}
	// The store still works, and a second round finds nothing to do.
	if err := AppendWait(s, Entry{Recipient: 1, Seq: per + 1, Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := s.housekeep(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Flattens != 1 {
		t.Fatalf("Flattens %d after a housekeeping round with no garbage, want still 1", st.Flattens)
	}
}

package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Badger writes its logs through memory mappings of sparse files, so on a
// full disk a write does not fail: the process dies of SIGBUS, and cannot
// start again until space is freed. The store therefore keeps a floor of
// free space (Config.MinFreeBytes) under its data folder. Below it, urgent
// writes (messages, group events, group changes) are refused with
// ErrDiskFull, which a client retries later; acks, receipts and expiry go
// on, because acks free space and receipts are small. Once space is back
// above the floor, writes are taken again, by themselves.
//
// A disk that something else filled to the last byte would not even let
// Badger write its lock file. So the store keeps a reserve file beside its
// folder (Dir + ".reserve", a quarter of the floor): Open deletes it when
// free space is below the floor, which gives Badger room to start and
// replay, and the store makes it again once space is back.

// diskCheckEvery is how often the committer reads the free space: a statfs
// costs a microsecond or two, and at 50,000 messages a second 100 ms of
// writes is a few MiB, far below the default floor.
const diskCheckEvery = 100 * time.Millisecond

// diskGuard is the committer's view of the free space. Owned by the
// committer goroutine.
type diskGuard struct {
	dir     string // "" or a floor <= 0: no guard
	floor   int64
	reserve string // the reserve file's path
	checked time.Time
	free    int64
	low     bool
}

func newDiskGuard(cfg Config) diskGuard {
	return diskGuard{dir: cfg.Dir, floor: cfg.MinFreeBytes, reserve: filepath.Clean(cfg.Dir) + ".reserve"}
}

// freeBytes returns the bytes available to an unprivileged writer on the
// file system holding dir.
func freeBytes(dir string) (int64, error) {
	free, _, err := DiskSpace(dir)
	return free, err
}

// DiskSpace returns the bytes available to an unprivileged writer on the
// file system holding dir (what the floor, Config.MinFreeBytes, is compared
// with) and that file system's size, for metrics. It costs one statfs and
// may be called from any goroutine.
func DiskSpace(dir string) (free, size int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("storage: statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

// diskLow reports whether urgent writes must be refused now, reading the
// free space when the last reading is older than diskCheckEvery.
func (s *engine) diskLow() bool {
	g := &s.disk
	if g.dir == "" || g.floor <= 0 {
		return false
	}
	if time.Since(g.checked) >= diskCheckEvery {
		s.checkDisk()
	}
	return g.low
}

// checkDisk reads the free space now and updates the verdict, the gauge
// and the reserve file. Committer goroutine only.
func (s *engine) checkDisk() {
	g := &s.disk
	if g.dir == "" || g.floor <= 0 {
		return
	}
	g.checked = time.Now()
	free, err := freeBytes(g.dir)
	if err != nil {
		s.log.Warn("storage: reading free disk space", "err", err)
		return // keep the last verdict
	}
	g.free = free
	switch low := free < g.floor; {
	case low && !g.low:
		s.log.Error("storage: free disk space below the floor; refusing new messages until space returns", "free", free, "floor", g.floor, "dir", g.dir)
	case !low && g.low:
		s.log.Warn("storage: free disk space back above the floor; taking messages again", "free", free, "floor", g.floor)
		g.ensureReserve(s.log.Warn)
	}
	g.low = free < g.floor
	if g.low {
		s.stats.diskLow.Store(1)
	} else {
		s.stats.diskLow.Store(0)
	}
}

// reserveSize is the reserve file's size for a floor.
func reserveSize(floor int64) int64 { return floor / 4 }

// releaseReserve deletes the reserve file when free space is below the
// floor, before Badger opens.
func (g *diskGuard) releaseReserve(warn func(string, ...any)) {
	if g.dir == "" || g.floor <= 0 {
		return
	}
	if free, err := freeBytes(g.parent()); err == nil && free >= g.floor {
		return
	}
	if err := os.Remove(g.reserve); err == nil {
		warn("storage: free disk space below the floor at start; released the reserve file to open", "file", g.reserve)
	}
}

// ensureReserve makes the reserve file if it is missing and the space it
// takes leaves free space above the floor.
func (g *diskGuard) ensureReserve(warn func(string, ...any)) {
	if g.dir == "" || g.floor <= 0 {
		return
	}
	if _, err := os.Stat(g.reserve); !errors.Is(err, os.ErrNotExist) {
		return
	}
	size := reserveSize(g.floor)
	if free, err := freeBytes(g.parent()); err != nil || free-size < g.floor {
		return
	}
	f, err := os.OpenFile(g.reserve, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		warn("storage: making the reserve file", "err", err)
		return
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(g.reserve)
		warn("storage: making the reserve file", "err", err)
	}
}

// parent is the folder that holds dir and the reserve file: statfs works
// before dir exists.
func (g *diskGuard) parent() string { return filepath.Dir(filepath.Clean(g.dir)) }

package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// The connection cap under the open-file limit.
//
// gnet stops its whole engine when accept fails with EMFILE, dropping every
// connection, so OnOpen refuses a connection (SERVER_FULL) unless
//
//	open connections <= open-file limit - reserve
//	reserve = other + FDHeadroom + other/4
//
// where other is every descriptor the process holds besides the gateway's
// connections: the store's tables, value-log and memtable files, the loops'
// listeners and pollers, the metrics endpoint. The store opens more of them
// as it grows, so other is counted again every second (on gnet's ticker
// goroutine, never per accept) as the process's open descriptors minus the
// open connections, and the cap follows. The headroom is what the process
// may open before the next count:
//
//   - FDHeadroom, 64 by default, covers a small store: a compaction of a
//     stalled L0 (20 tables) writes its output tables before it deletes its
//     inputs, a flush adds a table and a memtable file, the value log rolls
//     over to a new file; beside that, each loop holds at most one accepted
//     connection that OnOpen has not yet seen or has just refused, and the
//     metrics endpoint takes a few connections while it is scraped.
//   - other/4 grows with the store: the bigger it is, the more tables one
//     compaction takes in and writes out at once (every table of the level
//     below that overlaps), and the more a count a second old can lag. A
//     quarter costs one connection per four files, little next to an
//     engine stop.
//
// The counted connections and the counted descriptors are read a moment
// apart, so a connection opening or closing in between moves other by one;
// the headroom absorbs that.

// defaultFDHeadroom is Config.FDHeadroom's default; see above for why.
const defaultFDHeadroom = 64

// engineFiles is what the engine will hold once Run starts, counted into
// other by New, which runs before it: a listener, an epoll and an eventfd
// per loop, plus the socket that holds a port 0 and the one that checks the
// address is free. From the first tick on, they are counted.
func engineFiles(loops int) int { return 3*loops + 2 }

// ErrFileLimit means the open-file limit cannot hold the connections asked
// for beside the reserve for other files.
var ErrFileLimit = errors.New("gateway: connection cap above what the open-file limit allows")

// fileReserve returns the descriptors kept for everything but connections
// when other are open besides them.
func fileReserve(other, headroom int) int { return other + headroom + other/4 }

// fileCap returns the connection cap in force: the open-file limit minus the
// reserve, or maxConns when that is lower and not 0. It is never negative.
func fileCap(limit, reserve, maxConns int) int {
	c := max(limit-reserve, 0)
	if maxConns > 0 && maxConns < c {
		c = maxConns
	}
	return c
}

// checkFileLimit reports, with ErrFileLimit, a limit that leaves no room
// for connections or less than cfg.MaxConns. other counts the descriptors
// open besides connections.
func checkFileLimit(cfg *Config, limit, other int) error {
	reserve := fileReserve(other, cfg.FDHeadroom)
	room := limit - reserve
	switch {
	case room < 1:
		return fmt.Errorf("%w: open-file limit %d leaves no room for connections beside a reserve of %d "+
			"(%d files open besides connections, + %d headroom, + a quarter of those %d); raise the limit (ulimit -n)",
			ErrFileLimit, limit, reserve, other, cfg.FDHeadroom, other)
	case cfg.MaxConns > room:
		return fmt.Errorf("%w: MaxConns %d is over open-file limit %d minus a reserve of %d "+
			"(%d files open besides connections, + %d headroom, + a quarter of those %d), which allows at most %d; "+
			"raise the limit (ulimit -n) or lower MaxConns",
			ErrFileLimit, cfg.MaxConns, limit, reserve, other, cfg.FDHeadroom, other, room)
	}
	return nil
}

// openFileLimit returns the process's soft open-file limit.
func openFileLimit() (int, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("gateway: reading the open-file limit: %w", err)
	}
	if lim.Cur > 1<<30 {
		return 1 << 30, nil // unlimited, in effect
	}
	return int(lim.Cur), nil
}

// updateCap counts the descriptors open besides connections and sets the
// reserve and the cap from them. It runs on gnet's ticker goroutine (OnTick);
// a failed count keeps the last cap.
func (s *Server) updateCap() {
	open, err := s.cfg.OpenFiles()
	if err != nil {
		if !s.countFailed.Swap(true) {
			s.cfg.Logger.Error("gateway: counting open files failed; the connection cap stays where it was", "err", err)
		}
		return
	}
	other := max(open-int(s.conns.Load()), 0)
	reserve := fileReserve(other, s.cfg.FDHeadroom)
	s.stats.FDReserve.Store(int64(reserve))
	s.stats.ConnCap.Store(int64(fileCap(s.fileLimit, reserve, s.cfg.MaxConns)))
}

// countOpenFiles returns how many descriptors the process has open: the
// size Linux (6.2 on) reports for /proc/self/fd, or on older kernels the
// entries read from it. It is Config.OpenFiles' default.
func countOpenFiles() (int, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/fd", &st); err != nil {
		return 0, fmt.Errorf("stat /proc/self/fd: %w", err)
	}
	if st.Size > 0 {
		return int(st.Size), nil
	}
	return readOpenFiles()
}

// readOpenFiles counts the entries of /proc/self/fd, without allocating a
// name for each (there may be tens of thousands).
func readOpenFiles() (int, error) {
	fd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open /proc/self/fd: %w", err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 16<<10) // 512 entries of 32 bytes a call: 40 calls at 20,000 files
	n := 0
	for {
		k, err := unix.Getdents(fd, buf)
		if err != nil {
			return 0, fmt.Errorf("reading /proc/self/fd: %w", err)
		}
		if k <= 0 {
			break
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		for off := 0; off+19 < k; {
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			if reclen == 0 {
				break
			}
			if name := buf[off+19 : off+reclen]; name[0] != '.' {
				n++ // every entry but "." and ".." is a number
			}
			off += reclen
		}
	}
	return n - 1, nil // less the descriptor reading the folder
}

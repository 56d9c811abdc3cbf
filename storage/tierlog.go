package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The in-flight log: the sequential, group-synced log that makes the
// in-flight tier (tier.go) durable. One record per committed batch:
//
//	record:  length(4, big-endian) crc32c(4) payload(length bytes)
//	payload: op...
//	op:      1 keylen(uvarint) key vallen(uvarint) value expires(uvarint)   set
//	         2 keylen(uvarint) key                                          delete
//
// Records are written with pwrite into segment files of tierSegmentBytes,
// zeroed in advance, so a sync (fdatasync) writes the record's pages and
// changes no metadata but the mtime: about half the CPU of Badger's
// transaction and msync for one small durable write (sync_bench_test.go).
// A zero length ends a segment's records; so does a record whose checksum
// does not match (a write torn by a crash of the machine, which was never
// synced and so never acknowledged). Segments are named by a number that
// only grows, and live in the folder "inflight" of the store's folder.

// tierSegmentBytes is the size of one segment file. A record never spans
// two: one that does not fit starts the next segment (a batch's record is
// at most about MaxBatchBytes). At 5,000 messages a second the log grows by
// about 3 MB/s, so a segment lasts a few seconds; the log takes two of
// them on disk at rest (the one written, and the next, zeroed ahead).
const tierSegmentBytes = 8 << 20

// tierLogDir is the log's folder inside the store's folder.
const tierLogDir = "inflight"

const (
	tierOpSet = 1
	tierOpDel = 2
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// tierLog appends records to the newest segment. Committer goroutine only,
// except spare, which a helper goroutine fills.
type tierLog struct {
	dir  string
	log  *slog.Logger
	segs []uint64 // live segments, oldest first; the last is written
	f    *os.File // the last segment
	off  int64    // where the next record goes in f
	// synced: every record before off was synced when syncedOff == off
	// (and the segment did not change since).
	syncedOff int64
	// spare is the next segment file, zeroed by a helper goroutine ahead of
	// need; nil until one was asked for.
	spare chan spareSegment
}

type spareSegment struct {
	n   uint64
	f   *os.File
	err error
}

// segPath is the file of segment n.
func (l *tierLog) segPath(n uint64) string { return segFile(l.dir, n) }

// segFile is the file of segment n in the log's folder dir.
func segFile(dir string, n uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x.log", n))
}

// listSegments returns the segments in dir, oldest first. A missing folder
// holds none.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("storage: in-flight log: %w", err)
	}
	var segs []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok {
			continue // a segment being zeroed (.tmp), or not ours
		}
		n, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		segs = append(segs, n)
	}
	slices.Sort(segs)
	return segs, nil
}

// openTierLog creates the log's folder if needed and starts a segment
// after old, the segments already there (replayed, kept until retire
// deletes them).
func openTierLog(storeDir string, old []uint64, log *slog.Logger) (*tierLog, error) {
	l := &tierLog{dir: filepath.Join(storeDir, tierLogDir), log: log}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("storage: in-flight log: %w", err)
	}
	next := uint64(1)
	if len(old) > 0 {
		next = old[len(old)-1] + 1
	}
	f, err := l.zeroed(next)
	if err != nil {
		return nil, err
	}
	l.segs = append(slices.Clone(old), next)
	l.f = f
	l.askSpare()
	return l, nil
}

// zeroed creates segment n, tierSegmentBytes of zeros, synced, with the
// folder synced too: written under a temporary name and renamed, so a
// segment file is either whole or absent.
func (l *tierLog) zeroed(n uint64) (*os.File, error) {
	tmp := l.segPath(n) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("storage: in-flight log: %w", err)
	}
	fail := func(err error) (*os.File, error) {
		_ = f.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("storage: in-flight log: segment %d: %w", n, err)
	}
	if err := writeZeros(f, tierSegmentBytes, tierZeroChunk); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, l.segPath(n)); err != nil {
		return fail(err)
	}
	if err := syncDir(l.dir); err != nil {
		return fail(err)
	}
	return f, nil
}

// tierZeroChunk is how much of a spare segment is written out at a time.
// The committer's syncs share the disk with the zeroing. Written whole and
// then synced, a segment's 8 MiB held concurrent fdatasyncs of small
// records for 3.0-3.7 ms at the 99th percentile and 8.6-10.5 ms at most;
// written out 256 KiB at a time (sync_file_range, no cache flush) and
// synced once at the end, 0.7-0.8 ms and 4.4-5.2 ms, in no more time
// (BenchmarkSyncWhileZeroing, docs/BENCHMARKS.md). Syncing each chunk with
// fdatasync instead gave the benchmark the same gain, but each is a cache
// flush of the whole disk, and the server's own tail at 5,000 msg/s was no
// better for it.
const tierZeroChunk = 256 << 10

// writeZeros writes size zero bytes to f from its start, writing each
// chunk out to the disk before the next (without a cache flush: the
// caller syncs once at the end).
func writeZeros(f *os.File, size, chunk int) error {
	zero := make([]byte, chunk)
	for w := 0; w < size; w += chunk {
		n := min(chunk, size-w)
		if _, err := f.WriteAt(zero[:n], int64(w)); err != nil {
			return err
		}
		if err := unix.SyncFileRange(int(f.Fd()), int64(w), int64(n), unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil {
			return err
		}
	}
	return nil
}

// askSpare starts zeroing the segment after the last one.
func (l *tierLog) askSpare() {
	n := l.segs[len(l.segs)-1] + 1
	ch := make(chan spareSegment, 1)
	l.spare = ch
	go func() {
		f, err := l.zeroed(n)
		ch <- spareSegment{n, f, err}
	}()
}

// append writes rec (a whole record) at the end of the log, starting a
// new segment when it does not fit: the full one is synced first, so that
// a later sync, which syncs only the last segment, covers every record.
func (l *tierLog) append(rec []byte) error {
	if l.off+int64(len(rec)) > tierSegmentBytes {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	if _, err := l.f.WriteAt(rec, l.off); err != nil {
		return fmt.Errorf("storage: in-flight log: %w", err)
	}
	l.off += int64(len(rec))
	return nil
}

func (l *tierLog) rotate() error {
	if err := l.sync(); err != nil {
		return err
	}
	sp := <-l.spare
	l.spare = nil
	if sp.err != nil {
		return sp.err
	}
	if err := l.f.Close(); err != nil {
		l.log.Warn("storage: in-flight log: closing a full segment", "err", err)
	}
	l.segs = append(l.segs, l.segs[len(l.segs)-1]+1)
	l.f, l.off, l.syncedOff = sp.f, 0, 0
	l.askSpare()
	return nil
}

// sync makes every appended record durable against a crash of the machine.
func (l *tierLog) sync() error {
	if l.syncedOff == l.off {
		return nil
	}
	if err := unix.Fdatasync(int(l.f.Fd())); err != nil {
		return fmt.Errorf("storage: in-flight log: sync: %w", err)
	}
	l.syncedOff = l.off
	return nil
}

// current is the segment being written.
func (l *tierLog) current() uint64 { return l.segs[len(l.segs)-1] }

// detach drops the oldest segments while keep says they are not needed,
// never the one being written, and returns their files, oldest first, for
// the caller to delete in that order.
func (l *tierLog) detach(keep func(seg uint64) bool) []string {
	var paths []string
	for len(l.segs) > 1 && !keep(l.segs[0]) {
		paths = append(paths, l.segPath(l.segs[0]))
		l.segs = l.segs[1:]
	}
	return paths
}

// close closes the segment being written and the spare, and deletes the
// spare (empty) so that the folder holds only segments with records.
func (l *tierLog) close() error {
	if l.spare != nil {
		if sp := <-l.spare; sp.err == nil {
			_ = sp.f.Close()
			_ = os.Remove(l.segPath(sp.n))
		}
		l.spare = nil
	}
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// tierRecord builds one record; add ops, then bytes.
type tierRecord struct{ b []byte }

func (r *tierRecord) reset() { r.b = append(r.b[:0], make([]byte, 8)...) }

func (r *tierRecord) empty() bool { return len(r.b) <= 8 }

func (r *tierRecord) set(k, v []byte, expires uint64) {
	r.b = append(r.b, tierOpSet)
	r.b = binary.AppendUvarint(r.b, uint64(len(k)))
	r.b = append(r.b, k...)
	r.b = binary.AppendUvarint(r.b, uint64(len(v)))
	r.b = append(r.b, v...)
	r.b = binary.AppendUvarint(r.b, expires)
}

func (r *tierRecord) del(k []byte) {
	r.b = append(r.b, tierOpDel)
	r.b = binary.AppendUvarint(r.b, uint64(len(k)))
	r.b = append(r.b, k...)
}

// bytes finishes the record: its length and checksum.
func (r *tierRecord) bytes() []byte {
	binary.BigEndian.PutUint32(r.b[0:], uint32(len(r.b)-8))
	binary.BigEndian.PutUint32(r.b[4:], crc32.Checksum(r.b[8:], crcTable))
	return r.b
}

// errTierRecord marks a payload that does not decode although its checksum
// matched: written by something else, never by tierRecord.
var errTierRecord = errors.New("storage: in-flight log: malformed record")

// decodeTierOps calls fn for each op of a record's payload. v is nil for a
// delete. k and v alias payload.
func decodeTierOps(payload []byte, fn func(k, v []byte, expires uint64, del bool)) error {
	for len(payload) > 0 {
		tag := payload[0]
		payload = payload[1:]
		k, rest, ok := uvarintBytes(payload)
		if !ok {
			return errTierRecord
		}
		payload = rest
		switch tag {
		case tierOpDel:
			fn(k, nil, 0, true)
		case tierOpSet:
			v, rest, ok := uvarintBytes(payload)
			if !ok {
				return errTierRecord
			}
			exp, n := binary.Uvarint(rest)
			if n <= 0 {
				return errTierRecord
			}
			payload = rest[n:]
			fn(k, v, exp, false)
		default:
			return errTierRecord
		}
	}
	return nil
}

// uvarintBytes reads a length and that many bytes.
func uvarintBytes(b []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	return b[w : w+int(n)], b[w+int(n):], true
}

// readSegment calls fn with the payload of each valid record of a segment
// file, in order, and stops at the first zero length or bad checksum. torn
// reports a stop at something other than zeros.
func readSegment(path string, fn func(payload []byte) error) (torn bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("storage: in-flight log: %w", err)
	}
	for off := 0; off+8 <= len(data); {
		n := int(binary.BigEndian.Uint32(data[off:]))
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n == 0 && sum == 0 {
			return false, nil
		}
		if n > len(data)-off-8 || crc32.Checksum(data[off+8:off+8+n], crcTable) != sum {
			return true, nil
		}
		if err := fn(data[off+8 : off+8+n]); err != nil {
			return false, err
		}
		off += 8 + n
	}
	return false, nil
}

// syncDir syncs a folder, so that files created or renamed in it stay.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

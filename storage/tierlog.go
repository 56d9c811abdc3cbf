package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The in-flight log: the sequential, group-synced log that makes the
// in-flight tier (tier.go) durable. One record per committed batch:
//
//	segment: magic("SBTLOG2\x00") record... [end]
//	record:  length(4, big-endian) crc32c(4) payload(length bytes)
//	end:     0(4) crc32c(4) of nothing
//	payload: op...
//	op:      1 keylen(uvarint) key vallen(uvarint) value expires(uvarint)   set
//	         2 keylen(uvarint) key                                          delete
//
// A record's checksum covers the segment's number (8 bytes, big-endian)
// and then its payload, so a record left from a segment's earlier life
// never passes for one of this segment.
//
// Records are written with pwrite into segment files of tierSegmentBytes
// whose blocks were all written before, so a sync (fdatasync) writes the
// record's pages and changes no metadata but the mtime: about half the CPU
// of Badger's transaction and msync for one small durable write
// (sync_bench_test.go). A new segment is a retired one renamed (recycled)
// when one is at hand, or else a file of zeros written beside the
// committer: recycling spares the disk that writing, which held the
// committer's syncs back (docs/BENCHMARKS.md, "Log segments recycled").
//
// A segment's records end at zeros, at the end mark a full segment gets
// when the next one starts, or at a record whose checksum does not match:
// a write torn by a crash of the machine (never synced, so never
// acknowledged), or the first record left from the segment's earlier life.
// Segments are named by a number that only grows, and live in the folder
// "inflight" of the store's folder. A segment without the magic is of the
// first format (no end mark, checksums of the payload alone), read the
// same way.

// tierSegmentBytes is the size of one segment file. A record never spans
// two: one that does not fit starts the next segment (a batch's record is
// at most about MaxBatchBytes). At 5,000 messages a second the log grows by
// about 3 MB/s, so a segment lasts a few seconds; the log takes two or
// three of them on disk at rest (the one written, the spare prepared
// ahead, and a retired one waiting to be recycled).
const tierSegmentBytes = 8 << 20

// tierMagic opens every segment of the second format; tierHeader is where
// its first record starts. tierEndMark is the size of the end mark, kept
// free at the end of every segment.
const (
	tierMagic   = "SBTLOG2\x00"
	tierHeader  = len(tierMagic)
	tierEndMark = 8
)

// tierRecycled is the retired segment kept to become the next spare, in
// the log's folder. Its name ends in .tmp: an open deletes it.
const tierRecycled = "recycled.tmp"

// recordSum is the checksum of a record of segment seg.
func recordSum(seg uint64, payload []byte) uint32 {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], seg)
	return crc32.Update(crc32.Checksum(n[:], crcTable), crcTable, payload)
}

// endMark is segment seg's end mark: a length of 0 and the checksum of
// nothing.
func endMark(seg uint64) []byte {
	m := make([]byte, tierEndMark)
	binary.BigEndian.PutUint32(m[4:], recordSum(seg, nil))
	return m
}

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
	// spare is the next segment file, recycled or zeroed by a helper
	// goroutine ahead of need; nil until one was asked for.
	spare chan spareSegment
	// recycles counts the spares that were recycled segments, and
	// inRecycled says the segment being written is one (for tests).
	recycles   atomic.Uint64
	inRecycled bool
}

type spareSegment struct {
	n        uint64
	f        *os.File
	recycled bool
	err      error
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
	l.f, l.off, l.syncedOff = f, int64(tierHeader), int64(tierHeader)
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
	if _, err := f.WriteAt([]byte(tierMagic), 0); err != nil {
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

// askSpare starts preparing the segment after the last one: the recycled
// segment if there is one, else a file of zeros.
func (l *tierLog) askSpare() {
	n := l.segs[len(l.segs)-1] + 1
	ch := make(chan spareSegment, 1)
	l.spare = ch
	go func() {
		f, err := l.recycled(n)
		recycled := f != nil
		if f == nil && err == nil {
			f, err = l.zeroed(n)
		}
		ch <- spareSegment{n, f, recycled, err}
	}()
}

// recycled makes the recycled segment, if there is one, segment n: renamed,
// and the folder synced. Its old records stay until overwritten; their
// checksums name another segment (only segments of the second format are
// recycled: removeSegments). It returns nil and no error when there is
// none.
func (l *tierLog) recycled(n uint64) (*os.File, error) {
	path := l.segPath(n)
	if err := os.Rename(filepath.Join(l.dir, tierRecycled), path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("storage: in-flight log: recycling a segment: %w", err)
	}
	fail := func(err error) (*os.File, error) {
		_ = os.Remove(path)
		return nil, fmt.Errorf("storage: in-flight log: recycling a segment as %d: %w", n, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return fail(err)
	}
	if err := syncDir(l.dir); err != nil {
		_ = f.Close()
		return fail(err)
	}
	l.recycles.Add(1)
	return f, nil
}

// append writes rec (a whole record) at the end of the log, starting a
// new segment when it does not fit: the full one is synced first, so that
// a later sync, which syncs only the last segment, covers every record.
func (l *tierLog) append(rec []byte) error {
	if l.off+int64(len(rec)) > tierSegmentBytes-tierEndMark {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	binary.BigEndian.PutUint32(rec[4:], recordSum(l.current(), rec[8:]))
	if _, err := l.f.WriteAt(rec, l.off); err != nil {
		return fmt.Errorf("storage: in-flight log: %w", err)
	}
	l.off += int64(len(rec))
	return nil
}

// rotate ends the segment being written with its end mark, syncs it, and
// goes on in the spare.
func (l *tierLog) rotate() error {
	if _, err := l.f.WriteAt(endMark(l.current()), l.off); err != nil {
		return fmt.Errorf("storage: in-flight log: %w", err)
	}
	l.off += tierEndMark
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
	l.f, l.off, l.syncedOff = sp.f, int64(tierHeader), int64(tierHeader)
	l.inRecycled = sp.recycled
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

// bytes finishes the record but for its checksum, which names the segment
// it goes into (tierLog.append).
func (r *tierRecord) bytes() []byte {
	binary.BigEndian.PutUint32(r.b[0:], uint32(len(r.b)-8))
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

// readSegment calls fn with the payload of each valid record of segment
// seg's file, in order, and stops at zeros, at the end mark, or at a bad
// checksum. torn reports a stop at a bad checksum: a torn write, or in a
// recycled segment the first record left from its earlier life. end is
// where the valid records end.
func readSegment(path string, seg uint64, fn func(payload []byte) error) (torn bool, end int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, 0, fmt.Errorf("storage: in-flight log: %w", err)
	}
	// The first format: no magic, checksums of the payload alone.
	sumOf := func(payload []byte) uint32 { return crc32.Checksum(payload, crcTable) }
	off := 0
	if len(data) >= tierHeader && string(data[:tierHeader]) == tierMagic {
		sumOf = func(payload []byte) uint32 { return recordSum(seg, payload) }
		off = tierHeader
	}
	mark := sumOf(nil)
	for off+8 <= len(data) {
		n := int(binary.BigEndian.Uint32(data[off:]))
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n == 0 && (sum == 0 || sum == mark) {
			return false, off, nil
		}
		if n > len(data)-off-8 || sumOf(data[off+8:off+8+n]) != sum {
			return true, off, nil
		}
		if err := fn(data[off+8 : off+8+n]); err != nil {
			return false, off, err
		}
		off += 8 + n
	}
	return false, off, nil
}

// sealSegment writes segment seg's end mark at end, where its valid records
// end, and syncs it: the last segment of a replay, which ended at a torn
// write or at its earlier life's records, becomes an older one once a new
// segment starts, and older ones end at their mark. Only for a segment of
// the second format (its records end tierEndMark bytes before its end at
// the latest).
func sealSegment(path string, seg uint64, end int) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("storage: in-flight log: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(endMark(seg), int64(end)); err != nil {
		return fmt.Errorf("storage: in-flight log: sealing segment %d: %w", seg, err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("storage: in-flight log: sealing segment %d: %w", seg, err)
	}
	return nil
}

// secondFormat reports whether the segment file at path starts with the
// magic. A segment of the first format is never recycled: its records'
// checksums name no segment, so they would pass for the new one's.
func secondFormat(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [tierHeader]byte
	_, err = io.ReadFull(f, b[:])
	return err == nil && string(b[:]) == tierMagic
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

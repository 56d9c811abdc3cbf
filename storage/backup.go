package storage

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// A backup is Badger's own backup stream (DB.Backup: every key of one
// snapshot, as length-prefixed protobuf lists) inside a frame of ours, so
// that a backup cut short is told from a whole one. Badger's stream alone
// ends at any list boundary, and DB.Load would take the first half of a
// truncated file without a word.
//
//	header   "SWBACKUP" (8 bytes) | version uint32 = 1
//	chunk    length uint32 (1..backupMaxChunk) | length bytes of the stream
//	...
//	end      uint32 0 | since uint64 | stream bytes uint64 | CRC-32C of the stream uint32
//
// Integers are big-endian. since is the highest Badger version in the
// backup. The stream is written as it is read, so the end, and with it the
// proof that the backup is whole, comes last.

const (
	backupMagic   = "SWBACKUP"
	backupVersion = 1
	// backupMaxChunk bounds what a reader must hold of one chunk; the
	// writer's buffer makes chunks of this size.
	backupMaxChunk = 256 << 10
	// backupStreams is how many goroutines read the snapshot: two keep a
	// backup from taking more than two cores from the server, and a
	// backup of a few GiB is still bound by the disk or the network.
	backupStreams = 2
	// restorePendingWrites is how many batches DB.Load may have in flight.
	restorePendingWrites = 16
)

var (
	// ErrBackupBusy means another backup of the store is running; one at a
	// time keeps a backup's cost on the server bounded.
	ErrBackupBusy = errors.New("storage: a backup is already running")
	// ErrBackupUnsupported is returned by Backup on a store that keeps
	// nothing on disk (NewMemory).
	ErrBackupUnsupported = errors.New("storage: the in-memory store has no backup")
	// ErrBackupAborted means the store was closed, or reopened after a
	// failed commit, while a backup ran; the backup is incomplete.
	ErrBackupAborted = errors.New("storage: backup aborted: the store closed or reopened its database")
	// ErrBackupTruncated means a backup ended before its end record: it
	// was cut short (a copy, a transfer or a disk that failed), and is not
	// restored.
	ErrBackupTruncated = errors.New("storage: backup truncated: it ends before its end record")
	// ErrBackupCorrupt means a backup is not one, or its bytes changed
	// since it was written (its checksum or length does not match).
	ErrBackupCorrupt = errors.New("storage: not a valid backup")
	// ErrRestoreNotEmpty means Restore was asked to load a backup into a
	// folder that already holds files: a restore only ever fills an empty
	// one, so that it never mixes two databases.
	ErrRestoreNotEmpty = errors.New("storage: restore: the folder is not empty")
)

// Backup writes a consistent backup of every committed write to w, while
// the store serves: it reads a snapshot, so commits go on meanwhile and
// the backup holds none made after it started. It returns since, the
// highest Badger version in the backup. One backup runs at a time
// (ErrBackupBusy). A backup whose ctx is already done (its reader went
// away) is ending: a new one waits up to backupEndWait for it to return
// rather than being refused. A backup stops when ctx is done or w fails,
// and with ErrBackupAborted when the store closes or recovers from a
// failed commit (a reopen waits for the backup to return, which it does at
// its next write). Badger's stream reads ahead of w, into a queue of 32
// batches of up to 16 MiB each, plus the batches being built and sent: a
// slow w costs memory, up to about half a GiB for a large database. Any
// goroutine may call it. The store owns nothing of w after Backup returns.
func (s *engine) Backup(ctx context.Context, w io.Writer) (since uint64, err error) {
	// Badger's snapshot holds what the in-flight tier spilled: all of it,
	// committed before this point.
	if bb, ok := s.be.(*badgerBackend); ok {
		if err := s.exclusiveTidy(bb.spillAll); err != nil {
			return 0, fmt.Errorf("storage: backup: %w", err)
		}
	}
	if err := s.awaitEndingBackup(ctx); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	bb, ok := s.be.(*badgerBackend)
	if !ok {
		return 0, ErrBackupUnsupported
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	run := &runningBackup{ctx: ctx, cancel: cancel, done: make(chan struct{})}
	if !s.backup.CompareAndSwap(nil, run) {
		return 0, ErrBackupBusy
	}
	defer func() {
		s.backup.Store(nil)
		close(run.done)
	}()
	select {
	case <-s.hkStop: // Close has begun
		return 0, ErrBackupAborted
	default:
	}
	return bb.backup(ctx, w)
}

// backupEndWait bounds how long a new backup waits for one whose reader
// has gone: that one returns at its next write, normally at once, since
// its writes fail or see its done ctx.
const backupEndWait = 10 * time.Second

// runningBackup is the backup in progress.
type runningBackup struct {
	ctx    context.Context         // done once its reader has gone or it was aborted
	cancel context.CancelCauseFunc // aborts it at its next write
	done   chan struct{}           // closed after it has returned and let the slot go
}

// awaitEndingBackup waits for the running backup to return if it is
// ending (its ctx done), up to backupEndWait or until ctx is done. A
// backup still being read is left alone: the caller then finds the slot
// taken and answers ErrBackupBusy.
func (s *engine) awaitEndingBackup(ctx context.Context) error {
	run := s.backup.Load()
	if run == nil || run.ctx.Err() == nil {
		return nil
	}
	if h := s.backupWaitHook.Load(); h != nil {
		(*h)()
	}
	t := time.NewTimer(backupEndWait)
	defer t.Stop()
	select {
	case <-run.done:
		return nil
	case <-t.C:
		return ErrBackupBusy
	case <-ctx.Done():
		return fmt.Errorf("storage: backup: %w", context.Cause(ctx))
	}
}

// abortBackup stops the running backup, if any, at its next write: Close
// and recover call it before they close the database under it.
func (s *engine) abortBackup() {
	if run := s.backup.Load(); run != nil {
		run.cancel(ErrBackupAborted)
	}
}

// backup streams the snapshot into w in the frame described above. It
// holds mu for reading, so the database is not reopened under it.
func (b *badgerBackend) backup(ctx context.Context, w io.Writer) (uint64, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return 0, ErrRecovering
	}
	if _, err := w.Write(binary.BigEndian.AppendUint32([]byte(backupMagic), backupVersion)); err != nil {
		return 0, fmt.Errorf("storage: backup: %w", err)
	}
	cw := &chunkWriter{ctx: ctx, w: w, crc: crc32.New(crc32.MakeTable(crc32.Castagnoli))}
	bw := bufio.NewWriterSize(cw, backupMaxChunk)
	stream := b.db.NewStream()
	stream.LogPrefix = "storage backup"
	stream.NumGo = backupStreams
	since, err := stream.Backup(bw, 0)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		return 0, fmt.Errorf("storage: backup: %w", err)
	}
	end := binary.BigEndian.AppendUint32(nil, 0)
	end = binary.BigEndian.AppendUint64(end, since)
	end = binary.BigEndian.AppendUint64(end, cw.n)
	end = binary.BigEndian.AppendUint32(end, cw.crc.Sum32())
	if _, err := w.Write(end); err != nil {
		return 0, fmt.Errorf("storage: backup: %w", err)
	}
	return since, nil
}

// chunkWriter frames what Badger's stream writes into chunks, and sums it.
type chunkWriter struct {
	ctx context.Context
	w   io.Writer
	crc hash.Hash32
	n   uint64 // stream bytes written
	hdr [4]byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	if err := context.Cause(c.ctx); err != nil {
		return 0, err
	}
	done := 0
	for len(p) > 0 {
		n := min(len(p), backupMaxChunk)
		binary.BigEndian.PutUint32(c.hdr[:], uint32(n))
		if _, err := c.w.Write(c.hdr[:]); err != nil {
			return done, err
		}
		if _, err := c.w.Write(p[:n]); err != nil {
			return done, err
		}
		c.crc.Write(p[:n])
		c.n += uint64(n)
		done += n
		p = p[n:]
	}
	return done, nil
}

// chunkReader undoes chunkWriter: it returns the stream's bytes, checks
// the end record when it reaches it, and then returns io.EOF. An input
// that ends before the end record gives ErrBackupTruncated.
type chunkReader struct {
	r      *bufio.Reader
	left   uint32 // bytes left in the current chunk
	crc    hash.Hash32
	n      uint64
	since  uint64
	ended  bool  // the end record was read and matched
	failed error // sticky
}

func newChunkReader(r io.Reader) (*chunkReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var hdr [len(backupMagic) + 4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w (the header is incomplete)", ErrBackupTruncated)
		}
		return nil, fmt.Errorf("storage: reading the backup: %w", err)
	}
	if string(hdr[:len(backupMagic)]) != backupMagic {
		return nil, fmt.Errorf("%w: it does not start with %q", ErrBackupCorrupt, backupMagic)
	}
	if v := binary.BigEndian.Uint32(hdr[len(backupMagic):]); v != backupVersion {
		return nil, fmt.Errorf("%w: format version %d, this build reads %d", ErrBackupCorrupt, v, backupVersion)
	}
	return &chunkReader{r: br, crc: crc32.New(crc32.MakeTable(crc32.Castagnoli))}, nil
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.failed != nil {
		return 0, c.failed
	}
	if c.ended {
		return 0, io.EOF
	}
	for c.left == 0 {
		var hdr [4]byte
		if err := c.full(hdr[:]); err != nil {
			return 0, err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			return 0, c.end()
		}
		if n > backupMaxChunk {
			return 0, c.fail(fmt.Errorf("%w: a chunk of %d bytes, at most %d are written", ErrBackupCorrupt, n, backupMaxChunk))
		}
		c.left = n
	}
	if len(p) > int(c.left) {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	c.n += uint64(n)
	c.left -= uint32(n)
	if err != nil {
		return n, c.eof(err)
	}
	return n, nil
}

// end reads and checks the end record and returns io.EOF, or why not.
func (c *chunkReader) end() error {
	var rec [8 + 8 + 4]byte
	if err := c.full(rec[:]); err != nil {
		return err
	}
	since := binary.BigEndian.Uint64(rec[:8])
	n := binary.BigEndian.Uint64(rec[8:16])
	sum := binary.BigEndian.Uint32(rec[16:])
	switch {
	case n != c.n:
		return c.fail(fmt.Errorf("%w: the end record counts %d bytes, the file holds %d", ErrBackupCorrupt, n, c.n))
	case sum != c.crc.Sum32():
		return c.fail(fmt.Errorf("%w: checksum mismatch (the file changed since it was written)", ErrBackupCorrupt))
	}
	if _, err := c.r.ReadByte(); err != io.EOF {
		return c.fail(fmt.Errorf("%w: bytes after the end record", ErrBackupCorrupt))
	}
	c.since, c.ended = since, true
	return io.EOF
}

// full reads exactly len(p) framing bytes.
func (c *chunkReader) full(p []byte) error {
	if _, err := io.ReadFull(c.r, p); err != nil {
		return c.eof(err)
	}
	return nil
}

// eof turns the end of the input before the end record into
// ErrBackupTruncated, and keeps any error.
func (c *chunkReader) eof(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("%w (after %d bytes of data)", ErrBackupTruncated, c.n)
	} else {
		err = fmt.Errorf("storage: reading the backup: %w", err)
	}
	return c.fail(err)
}

func (c *chunkReader) fail(err error) error {
	c.failed = err
	return err
}

// DefaultRestoreSeqGap is the gap Restore is usually given: a restored
// mailbox's next seq is this far above the last one in the backup, so that
// no seq a client saw after the backup was taken is given again to a
// different entry. A million is more entries than a user receives between
// a backup and its restore (a month at 30,000 a day), and costs at most one
// byte more per seq on the wire (a seq below 2^21 is a 3-byte varint).
const DefaultRestoreSeqGap = 1_000_000

// Restored is what Restore loaded.
type Restored struct {
	Since     uint64 // the highest Badger version in the backup
	Mailboxes int    // mailboxes whose high-water mark was raised by the gap
}

// Restore loads the backup read from r (written by Backup) into cfg.Dir,
// which must be empty or absent (ErrRestoreNotEmpty otherwise). It is an
// offline operation: no store may have cfg.Dir open.
//
// A backup is older than what clients have seen: entries stored after it
// are gone, and their seqs with them. Were those seqs given again, a
// client that received seq 9 after the backup and logs in with LOGIN.ack
// 9 would be refused (ERROR BAD_ACK) until the mailbox's mark reached 9,
// and would then delete, unseen, the new entries up to 9. So Restore
// raises every mailbox's high-water mark by seqGap (the next seq is the
// last one in the backup + seqGap + 1); such a client's ack then falls in
// the gap, is taken, and deletes only entries it has. A seqGap of 0 keeps
// the marks: only for a backup taken after the server stopped taking
// messages (moving a stopped server to another host).
//
// A backup that is cut short (ErrBackupTruncated) or damaged
// (ErrBackupCorrupt) leaves cfg.Dir empty again, so the restore can be run
// again with a good file. When r can seek (a file), the whole frame is
// checked before anything is loaded, and r is read twice. Opening cfg.Dir
// with Open afterwards gives the store as it was when the backup began,
// with the raised marks.
func Restore(cfg Config, r io.Reader, seqGap uint64) (res Restored, err error) {
	if cfg.Dir == "" {
		return res, fmt.Errorf("%w: Dir is required", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	cfg = cfg.withDefaults()
	made, err := emptyDir(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			clearDir(cfg.Dir, made)
		}
	}()
	if err := checkFirst(r); err != nil {
		return res, err
	}
	cr, err := newChunkReader(r)
	if err != nil {
		return res, err
	}
	db, err := badger.Open(badgerOptions(cfg))
	if err != nil {
		return res, fmt.Errorf("storage: restore: open %s: %w", cfg.Dir, err)
	}
	err = load(db, cr)
	if err != nil && cr.failed == nil && !cr.ended {
		// Badger refused the data. If the file is damaged, say that
		// rather than what Badger made of the damage.
		if _, rerr := io.Copy(io.Discard, cr); rerr != nil {
			err = rerr
		}
	}
	if err == nil && !cr.ended {
		// Load stops at io.EOF only at a list boundary; the reader says
		// io.EOF only after the end record matched.
		err = fmt.Errorf("%w: the data ended without an end record", ErrBackupTruncated)
	}
	if err == nil && seqGap > 0 {
		res.Mailboxes, err = raiseMarks(db, seqGap)
	}
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("storage: restore: closing %s: %w", cfg.Dir, cerr)
	}
	if err != nil {
		if cr.failed != nil && !errors.Is(err, cr.failed) {
			err = cr.failed // Badger's wrapping of it, or what it did with a short read
		}
		return Restored{}, fmt.Errorf("storage: restore into %s: %w", cfg.Dir, err)
	}
	res.Since = cr.since
	return res, nil
}

// checkFirst checks the whole frame of a backup that r can read twice (a
// file), and rewinds r, before Badger reads any of it: DB.Load takes the
// length of each list in the stream on trust and allocates it, so a bit
// flipped in one would panic (or exhaust the memory) before the checksum,
// at the end, is reached. A reader that cannot seek (a pipe) is read once,
// and only the frame checks Restore makes as it loads guard it.
func checkFirst(r io.Reader) error {
	rs, ok := r.(io.ReadSeeker)
	if !ok {
		return nil
	}
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil // an *os.File on a pipe
	}
	if _, _, err := CheckBackup(rs); err != nil {
		return err
	}
	if _, err := rs.Seek(start, io.SeekStart); err != nil {
		return fmt.Errorf("storage: restore: rewinding the backup: %w", err)
	}
	return nil
}

// load is db.Load of a backup's stream, with a panic of Badger's decoder
// (a list length it took on trust, from a stream checkFirst could not
// check) reported as a corrupt backup. A length that asks for gigabytes
// rather than the impossible is allocated, and fails later or not at all:
// restore from a file, which is checked first, not from a pipe.
func load(db *badger.DB, r io.Reader) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: the stream does not decode (%v)", ErrBackupCorrupt, p)
		}
	}()
	return db.Load(r, restorePendingWrites)
}

// raiseMarks adds gap to every mailbox's high-water mark, and returns how
// many mailboxes it changed. Each meta is first brought up to date the way
// the committer loads it (loadMeta: the entries written since the meta was
// last rewritten count), because with the raised mark nothing would look
// past it again.
func raiseMarks(db *badger.DB, gap uint64) (int, error) {
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	n := 0
	err := db.View(func(txn *badger.Txn) error {
		t := badgerReader(txn)
		rd := reader(t)
		var inner error
		err := t.each([]byte{prefixMeta}, func(k, _ []byte) bool {
			if len(k) != metaKeyLen {
				inner = errCorrupt
				return false
			}
			r := be64(k[1:])
			m, _, err := loadMeta(rd, r)
			if err == nil && m.hw > math.MaxUint64-gap {
				err = fmt.Errorf("storage: restore: recipient %d's mark %d leaves no room for a gap of %d", r, m.hw, gap)
			}
			if err == nil {
				m.hw += gap
				err = wb.Set(metaKey(r), putMeta(make([]byte, metaValLen), m))
			}
			if err != nil {
				inner = err
				return false
			}
			n++
			return true
		})
		return errors.Join(err, inner)
	})
	if err != nil {
		return 0, err
	}
	if err := wb.Flush(); err != nil {
		return 0, fmt.Errorf("storage: restore: raising the marks: %w", err)
	}
	return n, nil
}

// emptyDir makes sure dir exists and is empty, creating it and any
// missing parents if absent; made is then the outermost folder it made.
func emptyDir(dir string) (made string, err error) {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		made = dir // the outermost folder that did not exist: the data folder too, often
		for parent := filepath.Dir(made); parent != made; parent = filepath.Dir(made) {
			if _, err := os.Stat(parent); !errors.Is(err, os.ErrNotExist) {
				break
			}
			made = parent
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("storage: restore: %w", err)
		}
		return made, nil
	case err != nil:
		return "", fmt.Errorf("storage: restore: %w", err)
	case len(ents) > 0:
		return "", fmt.Errorf("%w: %s holds %d entries (%s, ...); restore into a new folder, or move these away first", ErrRestoreNotEmpty, dir, len(ents), ents[0].Name())
	}
	return "", nil
}

// clearDir removes what a failed restore wrote into dir, which was empty
// before it, and the folders it made for dir (made, from emptyDir; "" if
// dir was there).
func clearDir(dir, made string) {
	if made != "" {
		os.RemoveAll(made)
		return
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// CheckBackup reads a backup to its end and checks its frame: the header,
// every chunk, the length and checksum in the end record, and that
// nothing follows it. It returns since and the bytes of Badger's stream.
// It does not decode the stream (Restore does), so it needs no folder and
// costs one read of the file: the check to make on a backup just written.
func CheckBackup(r io.Reader) (since, n uint64, err error) {
	cr, err := newChunkReader(r)
	if err != nil {
		return 0, 0, err
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return 0, 0, err
	}
	return cr.since, cr.n, nil
}

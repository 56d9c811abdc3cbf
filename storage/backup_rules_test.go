package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// These tests pin down rules of backup and restore that the rest of the
// suite let slip: each fails if its rule is broken.

// pipeReader hides every method of its reader but Read: a backup read from
// a pipe, which Restore cannot read twice.
type pipeReader struct{ io.Reader }

// restoreNoPanic is Restore, with a panic reported as the test's failure.
func restoreNoPanic(t *testing.T, dir string, r io.Reader, gap uint64) (res Restored, err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("restore panicked: %v", p)
		}
	}()
	return Restore(smallConfig(dir, -1), r, gap)
}

// emptyFolder fails the test unless dir exists and holds nothing.
func emptyFolder(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 0 {
		t.Errorf("%s after a failed restore: %d entries, %v; want it there and empty", dir, len(ents), err)
	}
}

// backupStream is where the first chunk's data (Badger's stream) starts.
const backupStream = len(backupMagic) + 4 + 4

// TestRestoreChecksTheFileFirst: a bit flipped in the length of the first
// list of Badger's stream is refused as corrupt, with the folder left as
// it was, like any other change. Badger's DB.Load allocates that length
// before our checksum, at the end, is reached: given a length of 2^56 it
// panicked (makeslice: len out of range) and left its files in the folder.
func TestRestoreChecksTheFileFirst(t *testing.T) {
	b := backupBytes(t, backupFixture(t))
	for _, flip := range []byte{0x01, 0x80} {
		t.Run(fmt.Sprintf("%#x", flip), func(t *testing.T) {
			c := bytes.Clone(b)
			c[backupStream+7] ^= flip // the top byte of a little-endian uint64
			dir := t.TempDir()
			if _, err := restoreNoPanic(t, dir, bytes.NewReader(c), DefaultRestoreSeqGap); !errors.Is(err, ErrBackupCorrupt) {
				t.Fatalf("restore: %v, want ErrBackupCorrupt", err)
			}
			emptyFolder(t, dir)
			// From a pipe nothing is checked first: Badger's decoder
			// panics on the length, and that is a corrupt backup too.
			if _, err := restoreNoPanic(t, dir, pipeReader{bytes.NewReader(c)}, DefaultRestoreSeqGap); !errors.Is(err, ErrBackupCorrupt) {
				t.Fatalf("restore from a pipe: %v, want ErrBackupCorrupt", err)
			}
			emptyFolder(t, dir)
		})
	}
}

// TestRestoreFromAPipe: read once, from a reader that cannot seek, a
// backup that Badger refuses (a byte of its first list's protobuf made an
// invalid field) is still reported as corrupt, not with what Badger made
// of it; and one cut short leaves the folder it was given there, empty.
func TestRestoreFromAPipe(t *testing.T) {
	b := backupBytes(t, backupFixture(t))
	bad := bytes.Clone(b)
	bad[backupStream+8] = 0xff // the first list's first tag: wire type 7
	dir := t.TempDir()
	if _, err := restoreNoPanic(t, dir, pipeReader{bytes.NewReader(bad)}, DefaultRestoreSeqGap); !errors.Is(err, ErrBackupCorrupt) {
		t.Errorf("restore of a list Badger cannot decode: %v, want ErrBackupCorrupt", err)
	}
	emptyFolder(t, dir)
	if _, err := restoreNoPanic(t, dir, pipeReader{bytes.NewReader(b[:len(b)-1])}, DefaultRestoreSeqGap); !errors.Is(err, ErrBackupTruncated) {
		t.Errorf("restore of a cut backup: %v, want ErrBackupTruncated", err)
	}
	emptyFolder(t, dir)
	if _, err := restoreNoPanic(t, dir, pipeReader{bytes.NewReader(b)}, DefaultRestoreSeqGap); err != nil {
		t.Fatalf("restore of the whole backup from a pipe, after the failed ones: %v", err)
	}
}

// TestRestoreFromWhereTheReaderIs: a backup that starts past the
// beginning of its file (after a header of the caller's) is checked and
// then restored from there, not from the file's first byte.
func TestRestoreFromWhereTheReaderIs(t *testing.T) {
	header := []byte("the caller's own header\n")
	r := bytes.NewReader(append(header, backupBytes(t, backupFixture(t))...))
	if _, err := r.Seek(int64(len(header)), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	restoresFixture(t, r, "after a header")
}

// restoresFixture restores backupFixture's backup from r into a new
// folder, and checks what recipient 7 holds there.
func restoresFixture(t *testing.T, r io.Reader, what string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := restoreNoPanic(t, dir, r, 0); err != nil {
		t.Fatalf("restore %s: %v", what, err)
	}
	s, err := Open(smallConfig(dir, -1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := fmt.Sprint(values(t, s, 7)), "[1:to 7, #1 2:to 7, #2 3:to 7, #3]"; got != want {
		t.Errorf("recipient 7 after restore %s: %s, want %s", what, got, want)
	}
}

// TestBackupOnceCloseBegan: a backup that starts after Close has begun,
// while Close waits for a housekeeping round, is aborted: it does not
// report success for a backup it never wrote.
func TestBackupOnceCloseBegan(t *testing.T) {
	cfg := smallConfig(t.TempDir(), -1)
	cfg.HousekeepingInterval = time.Millisecond
	s, err := openBadger(cfg.withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.hkMu.Lock() // the next housekeeping round waits for it, and so does Close
	locked := true
	defer func() {
		if locked {
			s.hkMu.Unlock()
		}
	}()
	waitFor(t, "a housekeeping round to wait", func() bool {
		buf := make([]byte, 1<<20)
		return bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("storage.(*engine).housekeep("))
	})
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	<-s.hkStop // Close has begun
	var buf bytes.Buffer
	if _, err := s.Backup(context.Background(), &buf); !errors.Is(err, ErrBackupAborted) {
		t.Errorf("backup once Close began: %v (%d bytes written), want ErrBackupAborted", err, buf.Len())
	}
	s.hkMu.Unlock()
	locked = false
	if err := recv(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
}

// TestCheckBackupFrame: the frame's version, its chunk bound and the
// length in its end record are checked, not only the checksum.
func TestCheckBackupFrame(t *testing.T) {
	b := backupBytes(t, backupFixture(t))
	edit := func(fn func(c []byte)) []byte {
		c := bytes.Clone(b)
		fn(c)
		return c
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"version 2", edit(func(c []byte) { binary.BigEndian.PutUint32(c[len(backupMagic):], 2) })},
		{"a chunk over the bound", edit(func(c []byte) { binary.BigEndian.PutUint32(c[backupStream-4:], backupMaxChunk+1) })},
		{"end record's length +1", edit(func(c []byte) {
			n := c[len(c)-12 : len(c)-4]
			binary.BigEndian.PutUint64(n, binary.BigEndian.Uint64(n)+1)
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := CheckBackup(bytes.NewReader(tc.data)); !errors.Is(err, ErrBackupCorrupt) {
				t.Errorf("CheckBackup: %v, want ErrBackupCorrupt", err)
			}
			if _, err := restoreNoPanic(t, filepath.Join(t.TempDir(), "r"), bytes.NewReader(tc.data), 0); !errors.Is(err, ErrBackupCorrupt) {
				t.Errorf("Restore: %v, want ErrBackupCorrupt", err)
			}
		})
	}
}

// TestBackupOverOneChunk: a backup of more than one chunk of stream, which
// Badger writes in lists larger than a chunk, is written in chunks of at
// most backupMaxChunk bytes, and restored whole.
func TestBackupOverOneChunk(t *testing.T) {
	s := backupFixture(t)
	const n = 48 // 48 values of 16 KiB: 768 KiB, three chunks
	val := make([]byte, 16<<10)
	for i := uint64(1); i <= n; i++ {
		for j := range val {
			val[j] = byte(i*31 + uint64(j)*7 + uint64(j>>8))
		}
		if err := AppendWait(s, Entry{Recipient: 50, Seq: i, Kind: KindMessage, Sender: 9, MsgID: 5000 + i, Value: val}); err != nil {
			t.Fatal(err)
		}
	}
	b := backupBytes(t, s)
	chunks, largest := 0, uint32(0)
	for off := backupStream - 4; ; {
		size := binary.BigEndian.Uint32(b[off:])
		if size == 0 {
			break
		}
		chunks++
		largest = max(largest, size)
		off += 4 + int(size)
	}
	if chunks < 3 || largest != backupMaxChunk {
		t.Errorf("%d chunks, the largest %d bytes; want 3 or more, of at most and some exactly %d", chunks, largest, backupMaxChunk)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(smallConfig(dir, -1), bytes.NewReader(b), 0); err != nil {
		t.Fatal(err)
	}
	r, err := Open(smallConfig(dir, -1))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	es, _, err := r.Read(50, 0, 100, 0, nil)
	if err != nil || len(es) != n {
		t.Fatalf("restored mailbox: %d entries, %v; want %d", len(es), err, n)
	}
	for j := range val {
		val[j] = byte(n*31 + uint64(j)*7 + uint64(j>>8))
	}
	if !bytes.Equal(es[n-1].Value, val) {
		t.Errorf("the last restored value differs from the one stored")
	}
}

// TestBackupStops: a backup stops at its next write when its context is
// done, or when the store aborts it (Close, a reopen), with that reason;
// what it wrote is not a backup, and the next backup runs.
func TestBackupStops(t *testing.T) {
	s := backupFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if _, err := s.Backup(ctx, &buf); !errors.Is(err, context.Canceled) {
		t.Errorf("backup with its context done: %v, want context.Canceled", err)
	}
	if _, _, err := CheckBackup(&buf); err == nil {
		t.Error("what a cancelled backup wrote passes CheckBackup")
	}

	w := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1) // one send by the backup
	go func() { _, err := s.Backup(context.Background(), w); done <- err }()
	<-w.entered // the header is being written; the stream comes next
	s.abortBackup()
	close(w.release)
	if err := <-done; !errors.Is(err, ErrBackupAborted) {
		t.Errorf("aborted backup: %v, want ErrBackupAborted", err)
	}
	if _, _, err := CheckBackup(&w.buf); err == nil {
		t.Error("what an aborted backup wrote passes CheckBackup")
	}
	if b := backupBytes(t, s); len(b) == 0 {
		t.Error("no backup after the aborted one")
	}
}

// TestRestoreGaps: Restore reports the backup's version, and raises every
// mark by exactly the gap, 1 included; a gap that would take a mark past
// 2^64-1 is refused, and the folder left empty.
func TestRestoreGaps(t *testing.T) {
	s := backupFixture(t)
	var buf bytes.Buffer
	since, err := s.Backup(context.Background(), &buf)
	if err != nil || since == 0 {
		t.Fatalf("backup: since %d, %v", since, err)
	}
	b := buf.Bytes()
	if got, _, err := CheckBackup(bytes.NewReader(b)); err != nil || got != since {
		t.Errorf("CheckBackup: since %d, %v; want %d", got, err, since)
	}
	dir := filepath.Join(t.TempDir(), "gap1")
	res, err := Restore(smallConfig(dir, -1), bytes.NewReader(b), 1)
	if err != nil || res.Since != since || res.Mailboxes != 2 {
		t.Fatalf("restore with a gap of 1: %+v, %v; want since %d, 2 mailboxes", res, err, since)
	}
	r, err := Open(smallConfig(dir, -1))
	if err != nil {
		t.Fatal(err)
	}
	for rc, hw := range map[uint64]uint64{7: 3 + 1, 8: 2 + 1} {
		if got, err := r.LastSeq(rc); err != nil || got != hw {
			t.Errorf("LastSeq(%d) after a restore with a gap of 1 = %d, %v; want %d", rc, got, err, hw)
		}
	}
	r.Close()

	// A gap of 0 keeps the marks, and says it raised none.
	dir = filepath.Join(t.TempDir(), "gap0")
	res, err = Restore(smallConfig(dir, -1), bytes.NewReader(b), 0)
	if err != nil || res.Since != since || res.Mailboxes != 0 {
		t.Fatalf("restore with a gap of 0: %+v, %v; want since %d, no mailbox raised", res, err, since)
	}
	if r, err = Open(smallConfig(dir, -1)); err != nil {
		t.Fatal(err)
	}
	for rc, hw := range map[uint64]uint64{7: 3, 8: 2} {
		if got, err := r.LastSeq(rc); err != nil || got != hw {
			t.Errorf("LastSeq(%d) after a restore with a gap of 0 = %d, %v; want %d", rc, got, err, hw)
		}
	}
	r.Close()

	dir = filepath.Join(t.TempDir(), "overflow")
	_, err = Restore(smallConfig(dir, -1), bytes.NewReader(b), math.MaxUint64-2)
	if err == nil || !strings.Contains(err.Error(), "no room for a gap") {
		t.Fatalf("restore with a gap past 2^64-1: %v, want a refusal", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the folder a refused restore created is still there (%v)", err)
	}
}

// shortWriter takes left bytes, then fails every write that goes past
// them with errInjected (a full disk, a dropped connection).
type shortWriter struct{ left int }

func (w *shortWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		return 0, errInjected
	}
	w.left -= len(p)
	return len(p), nil
}

// endFailWriter fails the write of a backup's end record: 24 bytes that
// begin with a chunk length of 0, and do not follow a chunk's header (the
// stream's own bytes do). A backup's length varies from one to the next,
// so a byte count cannot find the end record.
type endFailWriter struct{ afterHeader bool }

func (w *endFailWriter) Write(p []byte) (int, error) {
	if len(p) == 24 && binary.BigEndian.Uint32(p) == 0 && !w.afterHeader {
		return 0, errInjected
	}
	w.afterHeader = len(p) == 4 && !w.afterHeader
	return len(p), nil
}

// TestBackupWriterFails: a backup whose writer fails, in the header, in
// the stream or in the end record, fails with the writer's error (never
// reported done), and the next backup runs.
func TestBackupWriterFails(t *testing.T) {
	s := backupFixture(t)
	for _, left := range []int{0, len(backupMagic) + 4} {
		if since, err := s.Backup(context.Background(), &shortWriter{left}); !errors.Is(err, errInjected) {
			t.Errorf("backup into a writer that fails after %d bytes: since %d, %v; want errInjected", left, since, err)
		}
	}
	if since, err := s.Backup(context.Background(), &endFailWriter{}); !errors.Is(err, errInjected) {
		t.Errorf("backup into a writer that fails at the end record: since %d, %v; want errInjected", since, err)
	}
	if _, _, err := CheckBackup(bytes.NewReader(backupBytes(t, s))); err != nil {
		t.Errorf("the backup after the failed ones: %v", err)
	}
}

// TestBackupWaitEndsWithItsContext: a backup asked for while a cut-off one
// has not yet returned stops waiting for it when its own context is done,
// with that cause, rather than holding its caller for backupEndWait.
func TestBackupWaitEndsWithItsContext(t *testing.T) {
	s := backupFixture(t)
	release, first := cutOffBackup(s)
	defer func() { release(); <-first }()
	gone, stop := context.WithCancelCause(context.Background())
	stop(errInjected)
	start := time.Now()
	if _, err := s.Backup(gone, &bytes.Buffer{}); !errors.Is(err, errInjected) || time.Since(start) >= backupEndWait {
		t.Fatalf("a backup whose context is done, after %v: %v; want errInjected at once", time.Since(start), err)
	}
}

// TestRestoreFromAFilePipe: a backup read from a pipe that is an *os.File
// (a restore's standard input, fed by another command), which has Seek
// but cannot seek, is read once and restored.
func TestRestoreFromAFilePipe(t *testing.T) {
	b := backupBytes(t, backupFixture(t))
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() { _, _ = w.Write(b); w.Close() }()
	restoresFixture(t, r, "from an *os.File pipe")
}

// TestBackupReadFails: a backup whose reader fails (an I/O error), in the
// header, the stream or the end record, is reported with that error, not
// as truncated (the file may well be whole), by CheckBackup and by a
// restore reading it once, which leaves its folder empty.
func TestBackupReadFails(t *testing.T) {
	b := backupBytes(t, backupFixture(t))
	dir := t.TempDir()
	for _, n := range []int{4, backupStream + 8, len(b) - 4} {
		failing := func() io.Reader { return io.MultiReader(bytes.NewReader(b[:n]), iotest.ErrReader(errInjected)) }
		_, _, err := CheckBackup(failing())
		if !errors.Is(err, errInjected) || errors.Is(err, ErrBackupTruncated) {
			t.Errorf("check of a read failing after %d of %d bytes: %v, want errInjected and not ErrBackupTruncated", n, len(b), err)
		}
		_, err = restoreNoPanic(t, dir, pipeReader{failing()}, DefaultRestoreSeqGap)
		if !errors.Is(err, errInjected) || errors.Is(err, ErrBackupTruncated) {
			t.Errorf("restore of a read failing after %d of %d bytes: %v, want errInjected and not ErrBackupTruncated", n, len(b), err)
		}
		emptyFolder(t, dir)
	}
}

package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// backupFixture opens a Badger store with mailboxes worth backing up:
// recipient 7 holds three messages, recipient 8 acked the first of two.
func backupFixture(t testing.TB) *engine {
	t.Helper()
	s, err := openBadger(smallConfig(t.TempDir(), -1).withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := uint64(1); i <= 3; i++ {
		if err := AppendWait(s, Entry{Recipient: 7, Seq: i, Kind: KindMessage, Sender: 9, MsgID: 100 + i, Value: fmt.Appendf(nil, "to 7, #%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := uint64(1); i <= 2; i++ {
		if err := AppendWait(s, Entry{Recipient: 8, Seq: i, Kind: KindMessage, Sender: 9, MsgID: 200 + i, Value: fmt.Appendf(nil, "to 8, #%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := AckWait(s, 8, 1); err != nil {
		t.Fatal(err)
	}
	return s
}

func backupBytes(t testing.TB, s *engine) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := s.Backup(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// values reads recipient r's waiting entries as "seq:value" strings.
func values(t *testing.T, s Store, r uint64) []string {
	t.Helper()
	es, _, err := s.Read(r, 0, 100, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, fmt.Sprintf("%d:%s", e.Seq, e.Value))
	}
	return out
}

// TestBackupRestore restores a backup taken while the store serves into a
// new folder: it holds what was committed before the backup, in order,
// with the high-water marks and acks, and nothing committed after.
func TestBackupRestore(t *testing.T) {
	s := backupFixture(t)
	b := backupBytes(t, s)
	if _, n, err := CheckBackup(bytes.NewReader(b)); err != nil || n == 0 {
		t.Fatalf("CheckBackup of a whole backup: %d bytes, %v", n, err)
	}
	// Committed after the backup: not in it.
	if err := AppendWait(s, Entry{Recipient: 7, Seq: 4, Kind: KindMessage, Sender: 9, MsgID: 104, Value: []byte("late")}); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "restored")
	const gap = 1000
	res, err := Restore(smallConfig(dir, -1), bytes.NewReader(b), gap)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mailboxes != 2 {
		t.Errorf("Restore raised %d marks, want 2 (recipients 7 and 8)", res.Mailboxes)
	}
	r, err := Open(smallConfig(dir, -1))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, want := fmt.Sprint(values(t, r, 7)), "[1:to 7, #1 2:to 7, #2 3:to 7, #3]"; got != want {
		t.Errorf("recipient 7 after restore: %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(values(t, r, 8)), "[2:to 8, #2]"; got != want {
		t.Errorf("recipient 8 after restore: %s, want %s", got, want)
	}
	if st := r.Stats(); st.StoredMessages != 4 {
		t.Errorf("StoredMessages after restore = %d, want 4", st.StoredMessages)
	}
	// The marks came along, raised by the gap: no seq up to 3+gap is
	// given again (a client may have seen 4 before the disaster).
	for rc, hw := range map[uint64]uint64{7: 3 + gap, 8: 2 + gap} {
		if got, err := r.LastSeq(rc); err != nil || got != hw {
			t.Errorf("LastSeq(%d) after restore = %d, %v; want %d", rc, got, err, hw)
		}
	}
	if err := AppendWait(r, Entry{Recipient: 7, Seq: 4, Kind: KindMessage, Sender: 9, MsgID: 999, Value: []byte("x")}); !errors.Is(err, ErrSeqOrder) {
		t.Errorf("append of seq 4 after restore: %v, want ErrSeqOrder", err)
	}
	if err := AppendWait(r, Entry{Recipient: 7, Seq: 4 + gap, Kind: KindMessage, Sender: 9, MsgID: 103, Value: []byte("again"), Retry: true}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("retry of a message in the backup: %v, want ErrDuplicate (the dedupe records came along)", err)
	}
	if err := AppendWait(r, Entry{Recipient: 7, Seq: 4 + gap, Kind: KindMessage, Sender: 9, MsgID: 104, Value: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(values(t, r, 7)), fmt.Sprintf("[1:to 7, #1 2:to 7, #2 3:to 7, #3 %d:new]", 4+gap); got != want {
		t.Errorf("recipient 7 after an append: %s, want %s", got, want)
	}
	// A client that had seen seq 1+gap/2 (after the backup) acks it: taken,
	// and it deletes what it had, not the new entry.
	if _, err := AckWait(r, 7, 1+gap/2); err != nil {
		t.Fatalf("ack inside the gap: %v", err)
	}
	if got, want := fmt.Sprint(values(t, r, 7)), fmt.Sprintf("[%d:new]", 4+gap); got != want {
		t.Errorf("recipient 7 after an ack inside the gap: %s, want %s", got, want)
	}
}

// TestRestoreRefusesNonEmpty: a restore never writes into a folder that
// holds anything, and leaves what is there alone.
func TestRestoreRefusesNonEmpty(t *testing.T) {
	b := backupBytes(t, backupFixture(t))
	dir := t.TempDir()
	keep := filepath.Join(dir, "MANIFEST")
	if err := os.WriteFile(keep, []byte("someone's database"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Restore(smallConfig(dir, -1), bytes.NewReader(b), DefaultRestoreSeqGap)
	if !errors.Is(err, ErrRestoreNotEmpty) {
		t.Fatalf("restore into a non-empty folder: %v, want ErrRestoreNotEmpty", err)
	}
	if got, _ := os.ReadFile(keep); string(got) != "someone's database" {
		t.Errorf("the folder's file was changed: %q", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the folder holds %d entries after a refused restore, want 1", len(ents))
	}
}

// TestRestoreDamaged: a backup cut anywhere, including exactly where
// Badger's own stream could end (before our end record), or changed, is
// refused with a clear error, and leaves the folder empty for a retry.
func TestRestoreDamaged(t *testing.T) {
	b := backupBytes(t, backupFixture(t))
	const endLen = 4 + 8 + 8 + 4
	flipped := bytes.Clone(b)
	flipped[len(backupMagic)+4+4+10] ^= 0x40 // a byte of the first chunk's data
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrBackupTruncated},
		{"half a header", b[:6], ErrBackupTruncated},
		{"header only", b[:len(backupMagic)+4], ErrBackupTruncated},
		{"mid-chunk", b[:len(b)/2], ErrBackupTruncated},
		{"every chunk, no end record", b[:len(b)-endLen], ErrBackupTruncated},
		{"half the end record", b[:len(b)-endLen/2], ErrBackupTruncated},
		{"last byte missing", b[:len(b)-1], ErrBackupTruncated},
		{"a byte flipped", flipped, ErrBackupCorrupt},
		{"a byte appended", append(bytes.Clone(b), 0), ErrBackupCorrupt},
		{"not a backup", []byte("SQLite format 3\x00 and more bytes"), ErrBackupCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data") // absent, as for `restore --data` into a new folder
			dir := filepath.Join(data, "mailboxes")
			_, err := Restore(smallConfig(dir, -1), bytes.NewReader(tc.data), DefaultRestoreSeqGap)
			if !errors.Is(err, tc.want) {
				t.Fatalf("restore: %v, want %v", err, tc.want)
			}
			if _, _, err := CheckBackup(bytes.NewReader(tc.data)); !errors.Is(err, tc.want) {
				t.Errorf("CheckBackup: %v, want %v", err, tc.want)
			}
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the folders the failed restore created are still there (%v)", err)
			}
		})
	}
}

// blockingWriter blocks its first Write until release is closed.
type blockingWriter struct {
	entered chan struct{}
	release chan struct{}
	first   bool
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	if !w.first {
		w.first = true
		close(w.entered)
		<-w.release
	}
	return w.buf.Write(p)
}

// TestBackupOneAtATime: a second backup while one runs is refused at once,
// and writes go on while a backup is held up by its reader.
func TestBackupOneAtATime(t *testing.T) {
	s := backupFixture(t)
	w := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1) // one send by the backup
	go func() { _, err := s.Backup(context.Background(), w); done <- err }()
	<-w.entered
	if _, err := s.Backup(context.Background(), &bytes.Buffer{}); !errors.Is(err, ErrBackupBusy) {
		t.Errorf("second backup: %v, want ErrBackupBusy", err)
	}
	if err := AppendWait(s, Entry{Recipient: 7, Seq: 4, Kind: KindMessage, Sender: 9, MsgID: 104, Value: []byte("during")}); err != nil {
		t.Errorf("append during a backup: %v", err)
	}
	close(w.release)
	if err := <-done; err != nil {
		t.Fatalf("held-up backup: %v", err)
	}
	if _, err := s.Backup(context.Background(), &bytes.Buffer{}); err != nil {
		t.Errorf("backup after the first finished: %v", err)
	}
}

// TestBackupAfterOneCutOff: a backup asked for while the running one's
// reader has gone (its ctx done, the backup not yet returned) waits for it
// to end and then runs, instead of being refused as busy.
func TestBackupAfterOneCutOff(t *testing.T) {
	s := backupFixture(t)
	waiting := make(chan struct{})
	hook := func() { close(waiting) }
	s.backupWaitHook.Store(&hook)
	release, first := cutOffBackup(s)
	var out bytes.Buffer
	second := make(chan error, 1) // one send by the second backup
	go func() { _, err := s.Backup(context.Background(), &out); second <- err }()
	select {
	case <-waiting:
	case err := <-second:
		release() // so that the store can close
		t.Fatalf("the backup asked for after it returned %v at once, want it to wait for the cut-off one", err)
	}
	release()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("the cut-off backup: %v, want context.Canceled", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("the backup asked for after it: %v", err)
	}
	if _, _, err := CheckBackup(bytes.NewReader(out.Bytes())); err != nil {
		t.Errorf("the second backup's bytes: %v", err)
	}
}

// cutOffBackup starts a backup of s into a writer that blocks, and cuts it
// off (its context done) once it is blocked in a write: it has not
// returned. release lets the writer go; first then has the backup's error.
func cutOffBackup(s *engine) (release func(), first <-chan error) {
	w := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1) // one send by the backup
	go func() { _, err := s.Backup(ctx, w); done <- err }()
	<-w.entered
	cancel() // the backup's reader has gone; it is blocked in a write
	return sync.OnceFunc(func() { close(w.release) }), done
}

// FuzzCheckBackup: a backup file damaged in any way is refused as
// truncated or corrupt by the check made before a restore, never a panic
// and never another error; only the genuine bytes pass.
func FuzzCheckBackup(f *testing.F) {
	good := backupBytes(f, backupFixture(f))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(append(bytes.Clone(good), 0))
	f.Add([]byte(backupMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, err := CheckBackup(bytes.NewReader(b))
		if bytes.Equal(b, good) {
			if err != nil {
				t.Fatalf("the genuine backup: %v", err)
			}
			return
		}
		if err == nil {
			return // another well-formed backup: the fuzzer wrote its frame and checksums
		}
		if !errors.Is(err, ErrBackupTruncated) && !errors.Is(err, ErrBackupCorrupt) {
			t.Fatalf("CheckBackup: %v, want ErrBackupTruncated or ErrBackupCorrupt", err)
		}
	})
}

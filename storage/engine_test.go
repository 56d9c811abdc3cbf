package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/internal/testutil"
)

func testConfig(dir string) Config {
	return Config{Dir: dir, HousekeepingInterval: -1, RelaxedDelay: -1}.withDefaults()
}

// TestCommitFailureFailsEveryCaller holds the committer, queues appends so
// they land in one batch (with a retry of one of them, which apply finds
// as a duplicate of its original in the same batch), makes that commit
// fail, and checks every caller hears of it, nothing of the batch is on
// disk, and the store reopens its database by itself and takes writes
// again.
func TestCommitFailureFailsEveryCaller(t *testing.T) {
	injected := errors.New("injected fsync failure")
	s, fail := openFailing(t, testConfig(t.TempDir()), injected)

	started, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.exclusive(func() error { close(started); <-release; return nil })
	}()
	<-started // the committer is held: what follows queues up as one batch
	const n = 10
	errs := make(chan error, n+1)
	for seq := uint64(4); seq < 4+n; seq++ {
		s.Append(Entry{Recipient: 1, Seq: seq, Kind: KindMessage, MsgID: seq}, func(err error) { errs <- err })
	}
	// A retry of msg 4 (flag B) in the same batch: apply marks it a
	// duplicate of the append above, which the failed commit never stored.
	s.Append(Entry{Recipient: 1, Seq: 4 + n, Kind: KindMessage, MsgID: 4, Retry: true}, func(err error) { errs <- err })
	ackErr := make(chan error, 1)
	s.Ack(1, 2, func(_ AckResult, err error) { ackErr <- err })
	fail.Store(true)
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= n; i++ {
		if err := <-errs; !errors.Is(err, ErrCommit) || !errors.Is(err, injected) {
			t.Fatalf("append %d in the failed batch: %v, want ErrCommit wrapping the cause", i, err)
		}
	}
	if err := <-ackErr; !errors.Is(err, ErrCommit) {
		t.Fatalf("ack in the failed batch: %v", err)
	}
	fail.Store(false) // the disk is back: the store reopens and takes writes
	appendUntilRecovered(t, s, 2, 20)
	if st := s.Stats(); st.CommitErrors != 1 || st.Recoveries != 1 || st.Appends != 4 {
		t.Fatalf("CommitErrors %d Recoveries %d Appends %d, want 1, 1, 4", st.CommitErrors, st.Recoveries, st.Appends)
	}
	if hw, _ := s.LastSeq(1); hw != 3 {
		t.Fatalf("high-water after recovery %d, want 3: the failed batch must not count", hw)
	}
	page, _, err := s.Read(1, 0, 100, 0, nil)
	if err != nil || len(page) != 3 {
		t.Fatalf("after recovery: %d entries, %v; want the 3 committed", len(page), err)
	}
	// The retry is not a duplicate: its original was never stored.
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 4, Kind: KindMessage, MsgID: 4, Retry: true}); err != nil {
		t.Fatalf("retry after recovery: %v (the failed append must not be a duplicate)", err)
	}
	if res, err := AckWait(s, 1, 4); err != nil || res.Deleted != 4 {
		t.Fatalf("ack after recovery: %+v %v", res, err)
	}
}

// openFailing opens a store whose syncs fail with injected while the
// returned switch is on, closed when the test ends, and appends messages 1
// to 3 to recipient 1.
func openFailing(t *testing.T, cfg Config, injected error) (*engine, *atomic.Bool) {
	t.Helper()
	fail := new(atomic.Bool)
	s, err := openBadger(cfg, func() error {
		if fail.Load() {
			return injected
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for seq := uint64(1); seq <= 3; seq++ {
		if err := AppendWait(s, Entry{Recipient: 1, Seq: seq, Kind: KindMessage, MsgID: seq}); err != nil {
			t.Fatal(err)
		}
	}
	return s, fail
}

// appendUntilRecovered appends to recipient from seq on until an append
// succeeds: each refusal meanwhile must be ErrRecovering, and the store
// must take writes again within 10 s.
func appendUntilRecovered(t *testing.T, s Store, recipient, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ; ; seq++ {
		err := AppendWait(s, Entry{Recipient: recipient, Seq: seq, Kind: KindMessage, MsgID: seq})
		if err == nil {
			return
		}
		if !errors.Is(err, ErrRecovering) {
			t.Fatalf("append while recovering: %v, want ErrRecovering", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store still refuses writes after 10 s: %v", err)
		}
		time.Sleep(time.Millisecond) // poll: recovery is the store's own
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	cfg := Config{
		MessageTTL:         -1,
		MaxMailboxMessages: -1,
		MaxMailboxBytes:    -5,
		QueueLen:           -1,
		MaxBatch:           100_000,
		MemTableSize:       1 << 10,
		SyncDelay:          11 * time.Millisecond,
	}
	err := cfg.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
	}
	for _, field := range []string{"MessageTTL", "MaxMailboxMessages", "MaxMailboxBytes", "QueueLen", "MaxBatch", "MemTableSize", "transaction cap", "SyncDelay 11ms is over 10ms"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate error does not name %s:\n%v", field, err)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("the zero Config (all defaults) is invalid: %v", err)
	}
	if _, err := Open(Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Open without Dir = %v, want ErrInvalidConfig", err)
	}
	if _, err := NewMemory(cfg); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("NewMemory(bad) = %v", err)
	}
}

// recordHandler keeps every slog message it receives.
type recordHandler struct {
	mu   *sync.Mutex
	msgs *[]string
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.msgs = append(*h.msgs, r.Message)
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

func TestBadgerLogsGoThroughSlog(t *testing.T) {
	var (
		mu   sync.Mutex
		msgs []string
	)
	cfg := testConfig(t.TempDir())
	cfg.Logger = slog.New(recordHandler{&mu, &msgs})
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, m := range msgs {
		if strings.HasPrefix(m, "badger: ") {
			return
		}
	}
	t.Fatalf("no Badger log reached slog; got %q", msgs)
}

// TestStoredCountZeroMeansEmpty checks the invariant the TTL sweep relies
// on to skip drained mailboxes without seeking into other mailboxes'
// tombstones: although appends rewrite the meta only now and then, a stored
// count is 0 exactly when the mailbox is empty, and never above the truth.
func TestStoredCountZeroMeansEmpty(t *testing.T) {
	s, err := openBadger(testConfig(t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hw := map[uint64]uint64{}
	for step := 0; step < 3000; step++ {
		r := uint64(step%37 + 1)
		if step%7 == 3 { // ack up to a point, sometimes everything
			upto := hw[r] - hw[r]%5
			if _, err := AckWait(s, r, upto); err != nil {
				t.Fatal(err)
			}
			continue
		}
		hw[r]++
		if err := AppendWait(s, Entry{Recipient: r, Seq: hw[r]}); err != nil {
			t.Fatal(err)
		}
	}
	err = s.be.view(func(rd reader) error {
		for r := range hw {
			m, err := rd.meta(r)
			if err != nil {
				return err
			}
			n := 0
			if err := rd.scan(r, m.floor+1, func(*Entry) bool { n++; return true }); err != nil {
				return err
			}
			if (m.count == 0) != (n == 0) || m.count > int64(n) {
				t.Errorf("recipient %d: stored count %d, %d entries", r, m.count, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDuplicatesAcrossPrefetchedBatches queues many appends at once with
// small batches, so that dedupe lookups are prefetched during commits
// (prefetch.go) and checked against the previous batch, the snapshot, and
// (for ops that wait two batches) a fresh lookup. Every repeat must be
// refused, naming the first copy.
func TestDuplicatesAcrossPrefetchedBatches(t *testing.T) {
	// With batches of 4, a repeat 2 ops later is in the same batch, 5 or 6
	// later in the next (checked against the previous batch's keys), 50
	// later long committed (found in the snapshot).
	for _, ids := range []int{2, 5, 6, 50} {
		t.Run(fmt.Sprintf("repeat-every-%d", ids), func(t *testing.T) { testDuplicatesPrefetched(t, ids) })
	}
}

func testDuplicatesPrefetched(t *testing.T, ids int) {
	cfg := testConfig(t.TempDir())
	cfg.MaxBatch = 4
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 400
	errs := make([]chan error, n)
	for i := range errs {
		errs[i] = make(chan error, 1)
		kind := KindMessage
		if i%3 == 0 {
			kind = KindGroupMessage
		}
		e := Entry{Recipient: 1, Seq: uint64(i + 1), Kind: kind, Sender: 7, MsgID: uint64(i % ids), Retry: i >= ids}
		s.Append(e, func(err error) { errs[i] <- err })
	}
	for i := range errs {
		err := <-errs[i]
		if i < ids {
			if err != nil {
				t.Fatalf("first copy %d: %v", i, err)
			}
			continue
		}
		var dup *DuplicateError
		if !errors.As(err, &dup) || dup.Original.Seq != uint64(i%ids+1) {
			t.Fatalf("copy %d of msg %d: %v, want a duplicate of seq %d", i, i%ids, err, i%ids+1)
		}
	}
	page, _, err := s.Read(1, 0, 1000, 0, nil)
	if err != nil || len(page) != ids {
		t.Fatalf("mailbox holds %d entries (%v), want %d", len(page), err, ids)
	}
	if st := s.Stats(); st.Duplicates != uint64(n-ids) || st.Commits < n/4 {
		t.Fatalf("Duplicates %d (want %d), Commits %d", st.Duplicates, n-ids, st.Commits)
	}
}

// TestExpiryFitsTheBatch fills many mailboxes to their cap with entries
// that then expire, and queues one append to each in one batch: each append
// must delete its mailbox's expired entries to fit, and those deletions
// count against the batch, so the batch never outgrows Badger's
// transaction (which used to fail the commit and stop the store).
func TestExpiryFitsTheBatch(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cfg := testConfig(t.TempDir())
	cfg.Now, cfg.MessageTTL, cfg.MaxMailboxMessages = clock, time.Hour, 1024
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const boxes = 48
	value := make([]byte, 100)
	for r := uint64(1); r <= boxes; r++ {
		for seq := uint64(1); seq <= 1024; seq++ {
			s.Append(Entry{Recipient: r, Seq: seq, Kind: KindMessage, Sender: 9, MsgID: r<<20 | seq, Value: value}, func(error) {})
		}
	}
	if err := AppendWait(s, Entry{Recipient: boxes + 1, Seq: 1}); err != nil { // behind them all
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(2 * time.Hour) // every entry is expired
	mu.Unlock()

	started, release := make(chan struct{}), make(chan struct{})
	go func() { _ = s.exclusive(func() error { close(started); <-release; return nil }) }()
	<-started // what follows queues up as one batch
	errs := make(chan error, boxes)
	for r := uint64(1); r <= boxes; r++ {
		s.Append(Entry{Recipient: r, Seq: 1025, Kind: KindMessage, Sender: 9, MsgID: r<<20 | 1025, Value: value}, func(err error) { errs <- err })
	}
	close(release)
	for range boxes {
		if err := <-errs; err != nil {
			t.Fatalf("append to a full mailbox of expired entries: %v", err)
		}
	}
	st := s.Stats()
	// Each append deletes at least what it needs, and at most the whole
	// expired head of its mailbox.
	if st.CommitErrors != 0 || st.ExpiredDeleted < boxes || st.ExpiredDeleted > boxes*1024 {
		t.Fatalf("CommitErrors %d ExpiredDeleted %d, want 0 and %d..%d", st.CommitErrors, st.ExpiredDeleted, boxes, boxes*1024)
	}
	if err := AppendWait(s, Entry{Recipient: boxes + 2, Seq: 1}); err != nil {
		t.Fatalf("the store stopped taking writes: %v", err)
	}
}

// TestSyncFailureFailsWhatItCovered makes a sync fail: the appends it
// covered fail with ErrCommit (an ack committed with them is not undone
// by it, but the store reopens), writes are refused with ErrRecovering
// until the database is reopened, and then taken again, with nothing of
// what failed counted as stored unless it is on disk.
func TestSyncFailureFailsWhatItCovered(t *testing.T) {
	dir := t.TempDir()
	var fail atomic.Bool
	injected := errors.New("injected msync failure")
	s, err := openBadger(testConfig(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.be.(*badgerBackend).failSync = func() error {
		if fail.Load() {
			return injected
		}
		return nil
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if err := AppendWait(s, Entry{Recipient: 1, Seq: seq, Kind: KindMessage, MsgID: seq}); err != nil {
			t.Fatal(err)
		}
	}
	fail.Store(true)
	err = AppendWait(s, Entry{Recipient: 1, Seq: 4, Kind: KindMessage, MsgID: 4})
	if !errors.Is(err, ErrCommit) || !errors.Is(err, injected) {
		t.Fatalf("append whose sync failed: %v, want ErrCommit wrapping the cause", err)
	}
	fail.Store(false)
	appendUntilRecovered(t, s, 2, 100)
	if st := s.Stats(); st.CommitErrors != 1 || st.Recoveries != 1 {
		t.Fatalf("CommitErrors %d Recoveries %d, want 1 and 1", st.CommitErrors, st.Recoveries)
	}
	// The failed append was committed (only its sync failed), so after the
	// reopen it may be there: a retry is then a duplicate, never a second
	// copy; the next seq must follow whatever is there.
	hw, err := s.LastSeq(1)
	if err != nil || hw < 3 || hw > 4 {
		t.Fatalf("high-water after recovery %d %v, want 3 or 4", hw, err)
	}
	err = AppendWait(s, Entry{Recipient: 1, Seq: hw + 1, Kind: KindMessage, MsgID: 4, Retry: true})
	var dup *DuplicateError
	switch {
	case hw == 4 && !errors.As(err, &dup):
		t.Fatalf("retry of a message that is on disk: %v, want a duplicate", err)
	case hw == 3 && err != nil:
		t.Fatalf("retry of a message that is not on disk: %v", err)
	}
}

// TestMemTableFloor: a memtable whose 15% batch cap cannot hold Badger's
// 1 MiB value threshold is refused by Validate, naming the floor, instead
// of by Badger at Open; the floor itself opens.
func TestMemTableFloor(t *testing.T) {
	small := Config{Dir: t.TempDir(), MemTableSize: 6 << 20, MaxBatch: 64, MaxBatchBytes: 64 << 10, MaxValueBytes: 16 << 10, MaxGroupMembers: 16}
	if err := small.Validate(); err == nil || !strings.Contains(err.Error(), "MemTableSize") {
		t.Fatalf("a 6 MiB memtable: %v, want it refused", err)
	}
	floor := small
	floor.MemTableSize = 7 << 20
	if err := floor.Validate(); err != nil {
		t.Fatalf("a 7 MiB memtable: %v", err)
	}
	s, err := Open(floor)
	if err != nil {
		t.Fatalf("Open with a 7 MiB memtable: %v", err)
	}
	s.Close()
}

// TestRelaxedOpsDoNotWaitForNobody: writers that all block on their acks
// (relaxed) get them committed as soon as they are all in, not after the
// relaxed delay, which here is an hour: the urgent write an ack waits for
// cannot come while every writer waits on its ack.
func TestRelaxedOpsDoNotWaitForNobody(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.RelaxedDelay = time.Hour
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const writers, rounds = 8, 20
	done := make(chan error, writers)
	for w := range writers {
		go func() {
			r := uint64(w + 1)
			for seq := uint64(1); seq <= rounds; seq++ {
				if err := AppendWait(s, Entry{Recipient: r, Seq: seq, Kind: KindMessage, Sender: 99, MsgID: r<<32 | seq, Value: []byte("m")}); err != nil {
					done <- err
					return
				}
				if _, err := AckWait(s, r, seq); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	deadline := time.After(30 * time.Second)
	for range writers {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatalf("writers blocked on their acks still waiting after 30 s: the acks wait for the relaxed delay (%v)", cfg.RelaxedDelay)
		}
	}
}

// TestSpilledCountsOnAfterARecovery: the count of spilled writes is a
// counter, so the tier a reopen builds adds to it instead of starting it
// again from zero.
func TestSpilledCountsOnAfterARecovery(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SpillAfter = -1 // every write goes into Badger with the next batch
	s, fail := openFailing(t, cfg, errors.New("injected fsync failure"))
	waitFor(t, "the first writes spilled", func() bool { return s.Stats().Spilled > 0 })
	before := s.Stats().Spilled
	fail.Store(true)
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 4, Kind: KindMessage, MsgID: 4}); !errors.Is(err, ErrCommit) {
		t.Fatalf("append with the sync failing: %v, want ErrCommit", err)
	}
	fail.Store(false)
	appendUntilRecovered(t, s, 1, 4)
	if st := s.Stats(); st.Recoveries != 1 || st.Spilled < before {
		t.Fatalf("after a recovery: Recoveries %d, Spilled %d, want 1 and at least the %d before it", st.Recoveries, st.Spilled, before)
	}
	waitFor(t, "the write after the recovery spilled", func() bool { return s.Stats().Spilled > before })
}

// TestRecoveryClosesTheOldLog: a store that recovers from a failed commit
// drops its in-flight tier and closes that tier's log: after the recovery
// the process holds open one segment of the log and at most one spare,
// the new tier's, not the old one's besides (a store that recovers at
// every disk hiccup must not run out of files).
func TestRecoveryClosesTheOldLog(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, tierLogDir) + string(filepath.Separator)
	openSegments := func() (segs, spares []string) {
		for _, p := range testutil.OpenFiles(t) {
			if !strings.HasPrefix(p, logDir) {
				continue
			}
			if strings.HasSuffix(p, ".tmp") {
				spares = append(spares, p)
			} else {
				segs = append(segs, p)
			}
		}
		return segs, spares
	}
	injected := errors.New("injected fsync failure")
	s, fail := openFailing(t, testConfig(dir), injected)
	fail.Store(true)
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 4, Kind: KindMessage, MsgID: 4}); !errors.Is(err, ErrCommit) {
		t.Fatalf("append during the failure: %v, want ErrCommit", err)
	}
	fail.Store(false)
	appendUntilRecovered(t, s, 2, 1)
	if st := s.Stats(); st.Recoveries != 1 {
		t.Fatalf("Recoveries %d, want 1", st.Recoveries)
	}
	var segs, spares []string
	waitFor(t, "one open segment and at most one spare", func() bool {
		segs, spares = openSegments()
		return len(segs) == 1 && len(spares) <= 1
	})
}

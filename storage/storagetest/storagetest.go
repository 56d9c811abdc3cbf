// Package storagetest is the conformance suite every storage.Store passes,
// and the fake clock that drives its TTL and dedupe-window tests.
//
// A store implementation's test calls Run with a Harness:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, storagetest.Harness{Open: ..., Reopen: ...})
//	}
package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"switchboard/storage"
)

// Harness opens the stores under test.
type Harness struct {
	// Open returns a new, empty store configured by cfg. The harness closes
	// it at the end of the test (t.Cleanup); closing twice must be safe.
	Open func(t *testing.T, cfg storage.Config) storage.Store
	// Reopen closes s and opens the same data again with cfg. Nil for a
	// store that does not persist; the persistence tests are then skipped.
	Reopen func(t *testing.T, s storage.Store, cfg storage.Config) storage.Store
}

// Clock is a fake clock for Config.Now. The zero value is not usable; call
// NewClock. Safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time // guarded by mu
}

// NewClock returns a clock stopped at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Run runs the whole suite against h.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"OrderAndPaging", testOrderAndPaging},
		{"PagingByBytes", testPagingByBytes},
		{"SeqOrder", testSeqOrder},
		{"CumulativeAck", testCumulativeAck},
		{"AckWithGaps", testAckWithGaps},
		{"AckLargerThanBatch", testAckLargerThanBatch},
		{"HighWaterAcrossReopen", testHighWaterAcrossReopen},
		{"Newest", testNewest},
		{"TTL", testTTL},
		{"TTLHousekeeping", testTTLHousekeeping},
		{"MailboxLimits", testMailboxLimits},
		{"TotalLimit", testTotalLimit},
		{"SenderQuota", testSenderQuota},
		{"FullMailboxDropsExpired", testFullMailboxDropsExpired},
		{"ExpiredReceiptOnAppend", testExpiredReceiptOnAppend},
		{"ExpiredReceiptOnAck", testExpiredReceiptOnAck},
		{"ExpiredReceiptOnSweep", testExpiredReceiptOnSweep},
		{"Idempotency", testIdempotency},
		{"DedupeWindow", testDedupeWindow},
		{"GroupMessageReceipts", testGroupMessageReceipts},
		{"ReceiptRuns", testReceiptRuns},
		{"ConcurrentAppends", testConcurrentAppends},
		{"GroupCommitBatches", testGroupCommitBatches},
		{"Closed", testClosed},
		{"Groups", testGroups},
		{"GroupChangeChecks", testGroupChangeChecks},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

// epoch is where fake clocks start.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func open(t *testing.T, h Harness, cfg storage.Config) storage.Store {
	t.Helper()
	if cfg.HousekeepingInterval == 0 {
		cfg.HousekeepingInterval = -1 // only tests that want it
	}
	s := h.Open(t, cfg)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func value(r, seq uint64, n int) []byte {
	v := bytes.Repeat([]byte{byte(seq)}, n)
	copy(v, fmt.Sprintf("r%d/s%d:", r, seq))
	return v
}

func entry(r, seq uint64, kind storage.Kind) storage.Entry {
	return storage.Entry{
		Recipient: r, Seq: seq, Kind: kind,
		Sender: 1000 + seq, MsgID: 5000 + seq, Value: value(r, seq, 40),
	}
}

func mustAppend(t *testing.T, s storage.Store, e storage.Entry) {
	t.Helper()
	if err := storage.AppendWait(s, e); err != nil {
		t.Fatalf("append r=%d seq=%d: %v", e.Recipient, e.Seq, err)
	}
}

func mustAck(t *testing.T, s storage.Store, r, upto uint64) storage.AckResult {
	t.Helper()
	res, err := storage.AckWait(s, r, upto)
	if err != nil {
		t.Fatalf("ack r=%d upto=%d: %v", r, upto, err)
	}
	return res
}

// readAll pages through r's mailbox from `from`, pageLen entries at a time.
func readAll(t *testing.T, s storage.Store, r, from uint64, pageLen, maxBytes int) []storage.Entry {
	t.Helper()
	var all []storage.Entry
	for {
		page, next, err := s.Read(r, from, pageLen, maxBytes, nil)
		if err != nil {
			t.Fatalf("read r=%d from=%d: %v", r, from, err)
		}
		if len(page) > pageLen {
			t.Fatalf("read returned %d entries, asked for %d", len(page), pageLen)
		}
		if len(page) == 0 {
			return all
		}
		if next <= page[len(page)-1].Seq {
			t.Fatalf("next %d not past last seq %d", next, page[len(page)-1].Seq)
		}
		all = append(all, page...)
		from = next
	}
}

func seqs(es []storage.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkEntries asserts es are the entries appended by entry(r, seq, kind)
// for want, values included.
func checkEntries(t *testing.T, es []storage.Entry, r uint64, want []uint64) {
	t.Helper()
	if got := seqs(es); !equalSeqs(got, want) {
		t.Fatalf("seqs = %v, want %v", got, want)
	}
	for _, e := range es {
		if e.Recipient != r || e.Sender != 1000+e.Seq || e.MsgID != 5000+e.Seq {
			t.Fatalf("entry %d: recipient %d sender %d msgid %d", e.Seq, e.Recipient, e.Sender, e.MsgID)
		}
		if !bytes.Equal(e.Value, value(r, e.Seq, 40)) {
			t.Fatalf("entry %d: value %q", e.Seq, e.Value)
		}
		if e.Time == 0 {
			t.Fatalf("entry %d: zero time, want the store's clock", e.Seq)
		}
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

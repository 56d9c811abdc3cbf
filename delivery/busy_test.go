package delivery_test

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/storage"
)

// TestBusyRetryAfterGrowsWithSustainedRefusals: while a shard's queue stays
// full, the retry_after of its refusals doubles every 250 ms up to the cap,
// jittered; once the refusals stop it falls back to 100 ms. The router is
// not started, so its one queue of one request stays full; the clock is
// the test's.
func TestBusyRetryAfterGrowsWithSustainedRefusals(t *testing.T) {
	store, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var now atomic.Int64
	now.Store(time.Unix(1_700_000_000, 0).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	r, err := delivery.New(delivery.Config{Shards: 1, QueueLen: 1, Now: clock, Logger: slog.New(slog.DiscardHandler)}, store)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	c := &fakeConn{}
	if !r.Send(c.s(), delivery.Message{From: delivery.To(1), To: 2, MsgID: 1, Retry: false, Record: record(1, 1, "fills the queue")}) {
		t.Fatal("the first send found the queue full")
	}
	const period = 250 * time.Millisecond
	// refusals sends n requests in the current period, each refused, and
	// returns the lowest and highest retry_after they would be told.
	refusals := func(n int) (lo, hi uint32) {
		lo = ^uint32(0)
		for i := 0; i < n; i++ {
			if r.Send(c.s(), delivery.Message{From: delivery.To(1), To: 2, MsgID: uint64(100 + i), Retry: true, Record: record(1, 1, "x")}) {
				t.Fatal("a send was taken by a full queue")
			}
			ra := r.BusyRetryAfter()
			lo, hi = min(lo, ra), max(hi, ra)
		}
		return lo, hi
	}
	var his []uint32
	for k := 0; k < 9; k++ {
		lo, hi := refusals(200)
		// Level k (capped at 6): 100 ms << k, drawn from [½, 1] of it.
		v := uint32(100) << min(k, 6)
		if lo < v/2 || hi > v {
			t.Fatalf("period %d: retry_after in [%d, %d] ms, want within [%d, %d]", k, lo, hi, v/2, v)
		}
		if hi-lo < v/4 {
			t.Fatalf("period %d: 200 refusals' retry_after span only [%d, %d] ms: not jittered", k, lo, hi)
		}
		his = append(his, hi)
		now.Add(int64(period))
	}
	if his[8] <= 3200 || his[8] > delivery.MaxBusyRetryAfter {
		t.Fatalf("highest retry_after per period %v: want it to reach (3200, %d] ms under sustained refusals", his, delivery.MaxBusyRetryAfter)
	}
	// The pressure ends: eight quiet periods later a refusal is told 100 ms
	// at most again.
	now.Add(int64(8 * period))
	if lo, hi := refusals(50); lo < 50 || hi > 100 {
		t.Fatalf("after the pressure ended: retry_after in [%d, %d] ms, want within [50, 100]", lo, hi)
	}
}

package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"
)

// TestTailMatchesScan runs one random sequence of appends, acks, expiry and
// cache evictions against a store that keeps tails (small ones, with a small
// total budget, so they are dropped and rebuilt often) and one that always
// scans, and checks both answer every call the same way and hold the same
// mailboxes throughout.
func TestTailMatchesScan(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			var mu sync.Mutex
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			cfg := Config{
				Now: clock, HousekeepingInterval: -1, MessageTTL: time.Hour,
				MaxMailboxMessages: 12, RelaxedDelay: -1,
				// Seeds 1 and 3 cache every recipient; 2 and 4 evict often.
				MetaCacheEntries: int(2 + seed%2*8),
			}
			open := func(tailMax, budget int) *engine {
				st, err := NewMemory(cfg)
				if err != nil {
					t.Fatal(err)
				}
				e := st.(*engine)
				e.tailMax, e.tailBudget = tailMax, budget
				t.Cleanup(func() { e.Close() })
				return e
			}
			tailed, scanning := open(8, 20), open(0, 0)
			stores := []*engine{tailed, scanning}

			rng := rand.New(rand.NewPCG(seed, 0))
			const users = 6
			var last [users + 1]uint64 // highest seq appended per recipient
			var msgID uint64
			for step := 0; step < 8000; step++ {
				// Recipients 1-3 keep up (they ack often, near the end of
				// their mailbox); 4-6 fall behind, fill up and expire.
				r := 1 + rng.Uint64N(users)
				appendShare := 55
				if r <= 3 {
					appendShare = 40
				}
				switch x := rng.IntN(100); {
				case x < appendShare:
					last[r]++
					msgID++
					e := Entry{
						Recipient: r, Seq: last[r], Kind: Kind(1 + rng.IntN(4)),
						Sender: 100 + rng.Uint64N(3), MsgID: msgID, Value: make([]byte, rng.IntN(40)),
					}
					var errs [2]error
					for i, s := range stores {
						errs[i] = AppendWait(s, e)
					}
					if !sameErr(errs[0], errs[1]) {
						t.Fatalf("step %d: append %+v: tailed %v, scanning %v", step, e, errs[0], errs[1])
					}
				case x < 80:
					upto := rng.Uint64N(last[r] + 1)
					if r <= 3 {
						upto = last[r] - min(last[r], rng.Uint64N(3))
					}
					var res [2]AckResult
					var errs [2]error
					for i, s := range stores {
						res[i], errs[i] = AckWait(s, r, upto)
					}
					if !sameErr(errs[0], errs[1]) || !reflect.DeepEqual(res[0], res[1]) {
						t.Fatalf("step %d: ack %d upto %d: tailed %+v %v, scanning %+v %v", step, r, upto, res[0], errs[0], res[1], errs[1])
					}
				case x < 97:
					mu.Lock()
					now = now.Add(time.Duration(rng.IntN(4)) * time.Minute)
					mu.Unlock()
				default:
					for _, s := range stores {
						done := make(chan error, 1)
						if !s.submit(op{kind: opExpire, r: r, done: func(err error) { done <- err }}) {
							t.Fatal("closed")
						}
						if err := <-done; err != nil {
							t.Fatal(err)
						}
					}
				}
				if step%50 == 0 {
					for u := uint64(1); u <= users; u++ {
						a, _, errA := tailed.Read(u, 1, 1000, 0, nil)
						b, _, errB := scanning.Read(u, 1, 1000, 0, nil)
						if errA != nil || errB != nil || !reflect.DeepEqual(a, b) {
							t.Fatalf("step %d: mailbox %d differs: tailed %d entries (%v), scanning %d (%v)", step, u, len(a), errA, len(b), errB)
						}
					}
				}
			}
			a, b := tailed.stats.snapshot(), scanning.stats.snapshot()
			a.BuildTime, a.CommitTime, a.CallbackTime, a.SyncTime = 0, 0, 0, 0
			b.BuildTime, b.CommitTime, b.CallbackTime, b.SyncTime = 0, 0, 0, 0
			if a != b {
				t.Fatalf("counters differ:\ntailed   %+v\nscanning %+v", a, b)
			}
			if a.RefusedFull == 0 || a.ExpiredDeleted == 0 || a.Receipts == 0 || tailed.tailHits < int(5+seed%2*300) || scanning.tailHits != 0 {
				t.Fatalf("the sequence missed a path: %d collects from tails; %+v", tailed.tailHits, a)
			}
		})
	}
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error() || errors.Is(a, errors.Unwrap(b))
}

// TestTailBudget checks that tails never hold more entries than the budget
// and that emptied tails give their room back.
func TestTailBudget(t *testing.T) {
	st, err := NewMemory(Config{HousekeepingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := st.(*engine)
	e.tailMax, e.tailBudget = 4, 10
	for r := uint64(1); r <= 5; r++ {
		for seq := uint64(1); seq <= 3; seq++ {
			if err := AppendWait(e, Entry{Recipient: r, Seq: seq, Kind: KindMessage, Sender: 9, MsgID: r*10 + seq}); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func() (entries, known int) {
		err := e.exclusive(func() error {
			for _, c := range e.cache {
				entries += c.tail.len()
				if c.tail.known {
					known++
				}
			}
			if entries != e.tailEntries {
				t.Errorf("tailEntries %d, tails hold %d", e.tailEntries, entries)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return entries, known
	}
	// Recipients 1-3 take 9 of the 10; recipient 4's first entry takes the
	// last one, its second finds the budget spent and drops its tail (back
	// to 9); recipient 5 does the same.
	if n, known := count(); n != 9 || known != 3 {
		t.Fatalf("tails hold %d entries, %d known; want 9 and 3", n, known)
	}
	for r := uint64(1); r <= 5; r++ {
		res, err := AckWait(e, r, 3)
		if err != nil || res.Deleted != 3 || len(res.Receipts) != 3 {
			t.Fatalf("ack %d: %+v %v", r, res, err)
		}
	}
	if n, known := count(); n != 0 || known != 5 {
		t.Fatalf("after draining: %d entries in tails, %d known, want 0 and 5", n, known)
	}
}

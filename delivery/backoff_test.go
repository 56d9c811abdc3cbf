package delivery

import (
	"sync"
	"testing"
	"time"

	"switchboard/protocol"
	"switchboard/storage"
)

// backoffT0 is the start of a period, so that t0 + k×backoffPeriod is period k's.
var backoffT0 = time.Unix(1_700_000_000, 0)

func periodAt(k int) time.Time { return backoffT0.Add(time.Duration(k) * backoffPeriod) }

// TestBackoffGrowsAndFalls: busy refusals in every period double the delay
// each period up to the cap; periods without one halve it back to the base.
func TestBackoffGrowsAndFalls(t *testing.T) {
	b := &backoff{rand: func() uint64 { return 0 }} // the bottom of the jitter range: half the level's value
	var got []int
	for k := 0; k < 10; k++ {
		for i := 0; i < 50; i++ {
			b.note(periodAt(k).Add(time.Duration(i) * time.Millisecond))
		}
		got = append(got, b.level(periodAt(k).Add(backoffPeriod/2)))
	}
	want := []int{0, 1, 2, 3, 4, 5, 6, 6, 6, 6}
	for k := range want {
		if got[k] != want[k] {
			t.Fatalf("levels under sustained refusals = %v, want %v", got, want)
		}
	}
	if v := b.retryAfter(periodAt(9)); v != MaxBusyRetryAfter/2 {
		t.Fatalf("lowest delay at the cap = %d ms, want %d", v, MaxBusyRetryAfter/2)
	}
	// Pressure ends after period 9: period 10 still carries 9's step up
	// (capped), then each quiet period halves.
	var fall []int
	for k := 10; k < 19; k++ {
		fall = append(fall, b.level(periodAt(k)))
	}
	wantFall := []int{6, 5, 4, 3, 2, 1, 0, 0, 0}
	for k := range wantFall {
		if fall[k] != wantFall[k] {
			t.Fatalf("levels after the pressure ended = %v, want %v", fall, wantFall)
		}
	}
	// A refusal long after: the level it finds is the base, and it starts
	// the climb again only if its period is followed by more.
	b.note(periodAt(100))
	if l := b.level(periodAt(100)); l != 0 {
		t.Fatalf("level after a long quiet = %d, want 0", l)
	}
	if l := b.level(periodAt(101)); l != 1 {
		t.Fatalf("level in the period after one with a refusal = %d, want 1", l)
	}
	if l := b.level(periodAt(103)); l != 0 {
		t.Fatalf("level two quiet periods later = %d, want 0", l)
	}
}

// TestBackoffBoundsAndJitter: every delay is within [½, 1] of its level's
// value and within [50 ms, MaxBusyRetryAfter]; the jitter spreads them over
// that range.
func TestBackoffBoundsAndJitter(t *testing.T) {
	for _, tc := range []struct {
		name string
		rand func() uint64
		lvl  uint64
		want uint32
	}{
		{"lowest draw at the base", func() uint64 { return 0 }, 0, backoffBase / 2},
		{"highest draw at the base", func() uint64 { return backoffBase / 2 }, 0, backoffBase},
		{"lowest draw at the cap", func() uint64 { return 0 }, backoffMaxLevel, MaxBusyRetryAfter / 2},
		{"highest draw at the cap", func() uint64 { return MaxBusyRetryAfter / 2 }, backoffMaxLevel, MaxBusyRetryAfter},
		{"largest draw wraps into range", func() uint64 { return ^uint64(0) }, 3, 800/2 + uint32(^uint64(0)%401)},
	} {
		b := &backoff{rand: tc.rand}
		b.state.Store(packBackoff(periodOf(periodAt(0)), 0, tc.lvl))
		if got := b.retryAfter(periodAt(0)); got != tc.want {
			t.Errorf("%s: retryAfter = %d ms, want %d", tc.name, got, tc.want)
		}
	}

	// With the real source: in range at every level, and spread over it.
	b := &backoff{}
	for lvl := uint64(0); lvl <= backoffMaxLevel; lvl++ {
		b.state.Store(packBackoff(periodOf(periodAt(0)), 0, lvl))
		v := uint32(backoffBase << lvl)
		lo, hi := v, uint32(0)
		seen := map[uint32]bool{}
		for i := 0; i < 2000; i++ {
			d := b.retryAfter(periodAt(0))
			if d < v/2 || d > v || d < backoffBase/2 || d > MaxBusyRetryAfter {
				t.Fatalf("level %d: retryAfter %d ms outside [%d, %d]", lvl, d, v/2, v)
			}
			lo, hi = min(lo, d), max(hi, d)
			seen[d] = true
		}
		if lo > v/2+v/10 || hi < v-v/10 || len(seen) < min(int(v/2), 50) {
			t.Fatalf("level %d: 2000 delays span [%d, %d] with %d distinct values: not spread over [%d, %d]", lvl, lo, hi, len(seen), v/2, v)
		}
	}
}

// TestBackoffConcurrentNotes: notes from many goroutines in one period are
// all counted (up to saturation) and move the level once.
func TestBackoffConcurrentNotes(t *testing.T) {
	b := &backoff{}
	now := periodAt(5)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				b.note(now)
			}
		}()
	}
	wg.Wait()
	if _, n, lvl := unpackBackoff(b.state.Load()); n != 8000 || lvl != 0 {
		t.Fatalf("after 8,000 notes in one period: count %d, level %d; want 8000, 0", n, lvl)
	}
	for i := 0; i < maxCount; i++ {
		b.note(now)
	}
	if _, n, _ := unpackBackoff(b.state.Load()); n != maxCount {
		t.Fatalf("count %d, want it saturated at %d", n, maxCount)
	}
	if l := b.level(periodAt(6)); l != 1 {
		t.Fatalf("level in the next period = %d, want 1", l)
	}
}

// TestBackoffAllocs: the refusal path allocates nothing.
func TestBackoffAllocs(t *testing.T) {
	b := &backoff{}
	now := periodAt(1)
	if n := testing.AllocsPerRun(1000, func() { b.note(now); b.retryAfter(now) }); n != 0 {
		t.Fatalf("note + retryAfter allocate %v times, want 0", n)
	}
}

// TestBusyMemberRefusal: a copy a member's shard was too busy to take (and
// a crashed worker's request, which wraps the same error) is refused with
// RETRY_LATER and the busy delay: drawn in [½, 1] of it, and growing while
// such refusals go on, as the gateway's busy refusals do (PROTOCOL.md 8.5).
func TestBusyMemberRefusal(t *testing.T) {
	now := periodAt(0)
	r := &Router{cfg: Config{Now: func() time.Time { return now }}}
	code, first := r.refusal(errBusy)
	if code != protocol.CodeRetryLater || first < backoffBase/2 || first > backoffBase {
		t.Fatalf("first busy refusal: %v, retry_after %d ms; want RETRY_LATER in [%d, %d]", code, first, backoffBase/2, backoffBase)
	}
	var last uint32
	for k := 1; k <= backoffMaxLevel+2; k++ {
		now = periodAt(k)
		_, last = r.refusal(errCrashed)
	}
	if last < MaxBusyRetryAfter/2 || last > MaxBusyRetryAfter {
		t.Errorf("after %d periods of busy refusals, retry_after %d ms; want the cap's [%d, %d]", backoffMaxLevel+2, last, MaxBusyRetryAfter/2, MaxBusyRetryAfter)
	}
	if code, after := r.refusal(storage.ErrMailboxFull); code != protocol.CodeMailboxFull || after != 5000 {
		t.Errorf("MAILBOX_FULL: %v %d ms, want the fixed 5000", code, after)
	}
}

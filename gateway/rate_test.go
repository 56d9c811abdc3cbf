package gateway

import (
	"math"
	"testing"
)

// TestRateLimit drives the token bucket with a clock in microseconds.
func TestRateLimit(t *testing.T) {
	const second = 1_000_000
	r := newRateLimit(1000, 2000)

	t.Run("900 a second on average, in uneven bursts, is never over", func(t *testing.T) {
		now := uint32(math.MaxUint32 - 3*second) // wraps on the way
		at := now                                // as read sets it on a connection's first bytes
		for s := range 20 {
			n := 1500
			if s%2 == 1 {
				n = 300
			}
			for i := range n {
				if v, _ := r.charge(&at, now); v != rateOK {
					t.Fatalf("second %d, frame %d: verdict %d", s, i, v)
				}
			}
			now += second
		}
	})

	t.Run("a burst is absorbed, then the retry_after is honest", func(t *testing.T) {
		var at uint32
		now := uint32(5 * second)
		for i := range 2000 {
			if v, _ := r.charge(&at, now); v != rateOK {
				t.Fatalf("frame %d of a burst of 2000: verdict %d", i, v)
			}
		}
		v, retry := r.charge(&at, now)
		// A frame costs 1 ms; the refused one an eighth of that: 1.125 ms.
		if v != rateOver || retry != 2 {
			t.Fatalf("frame 2001: verdict %d retry %d ms, want over, 2 ms", v, retry)
		}
		if v, _ := r.charge(&at, now+retry*1000); v != rateOK {
			t.Fatalf("resent after retry_after: verdict %d", v)
		}
	})

	t.Run("a flood is refused, then closed", func(t *testing.T) {
		var at uint32
		now := uint32(7 * second)
		var ok, over int
		for {
			v, _ := r.charge(&at, now)
			if v == rateClose {
				break
			}
			if v == rateOK {
				ok++
			} else {
				over++
			}
			if ok+over > 10_000 {
				t.Fatal("a flood of 10,000 frames at once was not closed")
			}
		}
		if ok != 2000 || over != 2000 {
			t.Fatalf("flood: %d let through and %d over before the close, want 2000 and 2000", ok, over)
		}
	})

	t.Run("a one-in-flight sender that obeys retry_after keeps 8/9 of the rate", func(t *testing.T) {
		var at uint32
		now := uint32(9 * second)
		sent := 0
		for now < 19*second {
			v, retry := r.charge(&at, now)
			switch v {
			case rateClose:
				t.Fatalf("closed after %d frames", sent)
			case rateOver:
				now += retry * 1000
			default:
				sent++
				now += 10 // the round trip
			}
		}
		if perSecond := (sent - 2000) / 10; perSecond < 800 || perSecond > 1000 {
			t.Fatalf("%d frames a second past the burst, want about 900", perSecond)
		}
	})

	t.Run("a stale bucket is freshened before the comparison wraps", func(t *testing.T) {
		at := uint32(3 * second)
		now := at + uint32(30*60*second) // check freshens every 20 minutes
		rateFreshen(&at, now)
		if v, _ := r.charge(&at, now); v != rateOK {
			t.Fatalf("after 40 minutes idle: verdict %d", v)
		}
	})

	if none := newRateLimit(2_000_000, 1); none.cost != 0 {
		t.Fatalf("a rate over a million a second: cost %d, want no limit", none.cost)
	}
}

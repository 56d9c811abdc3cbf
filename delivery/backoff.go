package delivery

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// The retry_after of busy refusals (REFUSE RETRY_LATER because a routing
// queue was full) grows with sustained pressure. A fixed delay makes
// every refused client come back at once, on time, while the server is
// still as busy: the resends add to the overload they were refused for,
// and past twice its capacity the server spends its time refusing. So the
// delay doubles for every period (backoffPeriod) that saw busy refusals,
// from backoffBase up to backoffBase << backoffMaxLevel, and halves for
// every period without one; each refusal gets a delay drawn uniformly from
// [½, 1] × that value, so the resends of one burst spread out instead of
// arriving together.
const (
	// backoffBase is the first delay, in milliseconds: a full shard queue
	// (4,096 requests, Config.QueueLen) is about a tenth of a second of
	// a busy shard's work.
	backoffBase = 100
	// backoffMaxLevel caps the delay at 100 ms × 2^6 = 6.4 s: long enough
	// that the resends of a server refusing twice its capacity arrive
	// more slowly than they are refused, short enough that a refused
	// message waits seconds, not minutes, once the pressure ends.
	backoffMaxLevel = 6
	// backoffPeriod is how often the level moves: longer than the first
	// delays, so the resends they cause fall into the period that judges
	// them, and short enough that the cap is reached within 1.5 s of
	// sustained pressure and left as fast when it ends.
	backoffPeriod = 250 * time.Millisecond
)

// MaxBusyRetryAfter is the longest retry_after a busy refusal carries, in
// milliseconds.
const MaxBusyRetryAfter = backoffBase << backoffMaxLevel

// backoff tracks the pressure behind busy refusals. Its state is one
// atomic word, changed with compare-and-swap: event loops and group
// workers note refusals concurrently, without a lock or an allocation.
type backoff struct {
	// state packs the current period's index (bits 24–63), the busy
	// refusals noted in it (bits 8–23, saturating) and the level in force
	// (bits 0–7).
	state atomic.Uint64
	// rand draws the jitter; nil: math/rand/v2 (safe for concurrent use).
	rand func() uint64
}

const (
	countBits = 16
	levelBits = 8
	maxCount  = 1<<countBits - 1
)

func packBackoff(period, count, level uint64) uint64 {
	return period<<(countBits+levelBits) | count<<levelBits | level
}

func unpackBackoff(s uint64) (period, count, level uint64) {
	return s >> (countBits + levelBits), s >> levelBits & maxCount, s & (1<<levelBits - 1)
}

// periodOf returns the index of the period that holds now.
func periodOf(now time.Time) uint64 {
	return uint64(now.UnixNano()/int64(backoffPeriod)) & (1<<(64-countBits-levelBits) - 1)
}

// levelAt returns the level in force in period p after state s: one more
// if s's period saw a busy refusal and has ended, one less for each whole
// period since without one.
func levelAt(s, p uint64) uint64 {
	sp, n, lvl := unpackBackoff(s)
	if p <= sp { // the same period (or the clock stepped back: stay in it)
		return lvl
	}
	if n > 0 {
		lvl = min(lvl+1, backoffMaxLevel)
	}
	quiet := p - sp - 1
	return lvl - min(quiet, lvl)
}

// note records one busy refusal at now.
func (b *backoff) note(now time.Time) {
	p := periodOf(now)
	for {
		s := b.state.Load()
		sp, n, _ := unpackBackoff(s)
		next := packBackoff(p, 1, levelAt(s, p))
		if p <= sp {
			next = packBackoff(sp, min(n+1, maxCount), levelAt(s, sp))
		}
		if b.state.CompareAndSwap(s, next) {
			return
		}
	}
}

// retryAfter returns the retry_after, in milliseconds, for a busy refusal
// at now: the level's delay, jittered into [½, 1] of it. It does not note
// a refusal (note does).
func (b *backoff) retryAfter(now time.Time) uint32 {
	v := uint64(backoffBase) << levelAt(b.state.Load(), periodOf(now))
	r := b.rand
	if r == nil {
		r = rand.Uint64
	}
	return jitter(v, r)
}

// jitter draws a delay from [½, 1] × v with r: every retry_after the
// router sends is drawn so (PROTOCOL.md 8.5), so that the requests refused
// together come back spread out, not at once.
func jitter(v uint64, r func() uint64) uint32 {
	half := v / 2
	return uint32(v - half + r()%(half+1))
}

// level returns the level in force at now, for metrics and tests.
func (b *backoff) level(now time.Time) int {
	return int(levelAt(b.state.Load(), periodOf(now)))
}

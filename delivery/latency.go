package delivery

import (
	"sync/atomic"
	"time"
)

// AcceptBounds are the upper bounds of the buckets of the send→ACCEPT
// histogram (Router.AcceptLatency): from half a millisecond, below one
// fsync of a fast SSD, to 2.5 s, past which a client has long since begun
// to wonder; about 2 to 2.5 times apart, so that a p99 read from them is
// within a bucket's width of the truth. The slice is shared: do not
// modify it.
var AcceptBounds = acceptBounds[:]

var acceptBounds = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
}

// Latency is a snapshot of a histogram of durations over AcceptBounds.
type Latency struct {
	// Counts[i] is how many durations were at most AcceptBounds[i]
	// (cumulative, as Prometheus' buckets are); Count includes those
	// over the highest bound.
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

// latency counts durations in the buckets of AcceptBounds. Atomic;
// written by the shards, read by AcceptLatency from any goroutine.
type latency struct {
	counts [len(acceptBounds) + 1]atomic.Uint64 // per bucket, not cumulative; the last: over the highest bound
	sum    atomic.Int64                         // nanoseconds
}

func (l *latency) observe(d time.Duration) {
	i := 0
	for i < len(acceptBounds) && d > acceptBounds[i] {
		i++
	}
	l.counts[i].Add(1)
	l.sum.Add(int64(d))
}

func (l *latency) snapshot() Latency {
	s := Latency{Counts: make([]uint64, len(acceptBounds)), Sum: time.Duration(l.sum.Load())}
	for i := range l.counts {
		s.Count += l.counts[i].Load()
		if i < len(acceptBounds) {
			s.Counts[i] = s.Count
		}
	}
	return s
}

// AcceptLatency is the histogram of the time from Send taking a 1:1
// message to the router pushing its ACCEPT (a duplicate's included): the
// wait in the shard's queue, the commit queue, the group commit and its
// sync. Group sends are not in it. It may be called from any goroutine.
func (r *Router) AcceptLatency() Latency { return r.accept.snapshot() }

// stamp is the time now on the router's clock, as a positive offset from
// its epoch: 8 bytes in each queued request where a time.Time takes 24.
func (r *Router) stamp() time.Duration { return r.cfg.Now().Sub(r.epoch) }

// timeAccept records the send→ACCEPT time of c, a completed 1:1 send.
func (r *Router) timeAccept(c completion) {
	if c.at > 0 {
		r.accept.observe(r.stamp() - c.at)
	}
}

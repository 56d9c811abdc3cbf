package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The collector lets garbage grow by GOGC percent of the live heap before
// it collects. Right after start, most of the live heap is Badger's
// memtable arena: tens of MiB allocated at once, most of its pages never
// touched, so they cost no RSS. A fixed GC target would let garbage grow
// by a share of that arena too, and that garbage is resident: hundreds of
// bytes per idle connection on a host holding tens of thousands. The tuner
// instead sizes the headroom from the heap the server grew beyond its start
// (connections, queues, buffers): every second it sets the target so that
// garbage may reach
//
//	max(min(max(percent × (live − base), minHeadroom), percent × live),
//	    min(allocated in the last second × gcSpacing, maxLoadHeadroom))
//
// where base is the live heap before the first connection. The floor keeps
// a lightly loaded server from collecting every few hundred KiB. The last
// term is for a server under load: it allocates a few KiB a message (30 MiB
// a second at 5,000 msg/s), and the first two terms let it collect about
// five times a second, each collection a few milliseconds in which the one
// processor the load needs also marks. That was part of the tail: at 5,000
// msg/s, with about 180 collections a run against 33-35 with this term,
// the p99 from SEND to ACCEPT was 3.5-7.3 ms (median 3.9) against 2.5-5.9
// ms (median 3.2), for 25 MiB more RSS after the traffic
// (docs/BENCHMARKS.md, "The collector's headroom under load"). An idle server allocates next to nothing, so its
// headroom, and the garbage it keeps resident, stay at the floor.
//
// That last term is off while connections log in (rampLogins a second or
// more). A login leaves state that lives as long as its connection, and a
// Noise handshake about 15 KiB of garbage: collected once a second, the
// new connections' state is strewn among a second of garbage, and what is
// left of it after the ramp pins partly empty spans. After a ramp of 19,000
// Noise logins at 1,000 a second that was 1.7 MB more heap in use and 80
// bytes more RSS an idle connection (docs/BENCHMARKS.md, "Idle Noise
// connections after a ramp"). Collecting at the floor's pace during a ramp
// packs them.
//
// The collector's headroom and the pages the runtime keeps for reuse are
// resident, so after a surge (a reconnect storm: tens of MiB of login
// garbage) RSS stays at its peak. When the live heap has grown by
// trimGrowth since the last trim and then held still, with the collector
// nearly idle, for trimSettle seconds, the tuner collects once more and
// returns the free pages to the operating system: one extra collection per
// surge, never under load.

// minHeadroom is the least garbage the tuner lets accumulate between
// collections.
const minHeadroom = 4 << 20

// gcSpacing is how long the garbage of a steady load may accumulate between
// collections, up to maxLoadHeadroom.
const (
	gcSpacing       = time.Second
	maxLoadHeadroom = 64 << 20
)

const (
	trimGrowth   = 0.10    // the live heap must grow by this share of it,
	trimMinBytes = 4 << 20 // and by at least this, for a trim to be worth a collection
	trimSettle   = 3       // seconds the live heap stays within 1%, with at most one collection a second
)

// rampLogins is the logins a second at which the tuner drops its load term:
// connections are being made, and their state is to be packed.
const rampLogins = 100

// tuneGC collects once, takes the live heap as the base, and retunes the
// collector every second until stop is closed. logins returns the logins
// so far.
func tuneGC(percent int, logins func() uint64, stop <-chan struct{}) {
	runtime.GC()
	base, _, allocs := heapStats()
	lastLogins := logins()
	debug.SetGCPercent(gcPercentFor(percent, base, base, 0))
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tr := trimmer{trimmed: base, last: base}
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				live, cycles, total := heapStats()
				l := logins()
				debug.SetGCPercent(gcPercentFor(percent, base, live, loadAllocated(total-allocs, l-lastLogins)))
				allocs, lastLogins = total, l
				if tr.due(live, cycles) {
					debug.FreeOSMemory()
					tr.trimmed, _, _ = heapStats()
				}
			}
		}
	}()
}

// loadAllocated is what the load term of the target counts of allocated
// bytes, allocated in a second with logins logins: nothing during a ramp.
func loadAllocated(allocated, logins uint64) uint64 {
	if logins >= rampLogins {
		return 0
	}
	return allocated
}

// gcPercentFor is the target for a live heap of live bytes, base of them
// there before the first connection, with allocated bytes allocated in the
// last second.
func gcPercentFor(percent int, base, live, allocated uint64) int {
	if live == 0 {
		return percent
	}
	grown := uint64(0)
	if live > base {
		grown = live - base
	}
	headroom := min(max(grown*uint64(percent)/100, minHeadroom), live*uint64(percent)/100)
	headroom = max(headroom, min(uint64(float64(allocated)*gcSpacing.Seconds()), maxLoadHeadroom))
	return max(1, int(headroom*100/live))
}

// trimmer decides when a surge is over and its garbage worth returning.
type trimmer struct {
	trimmed uint64 // live heap after the last trim
	last    uint64 // live heap at the last sample
	cycles  uint64 // collections counted at the last sample
	still   int    // samples in a row within 1% of the one before and at most one collection since
}

// due takes one sample (live heap, collections so far) and reports whether
// to trim now.
func (t *trimmer) due(live, cycles uint64) bool {
	diff := max(live, t.last) - min(live, t.last)
	if diff*100 <= t.last && cycles-t.cycles <= 1 {
		t.still++
	} else {
		t.still = 0
	}
	t.last, t.cycles = live, cycles
	grown := live > t.trimmed && live-t.trimmed >= max(trimMinBytes, uint64(float64(t.trimmed)*trimGrowth))
	if grown && t.still >= trimSettle {
		t.still = 0
		return true
	}
	if live < t.trimmed {
		t.trimmed = live // shrunk: measure the next surge from here
	}
	return false
}

// heapStats returns the heap marked live by the last collection, the
// number of collections so far and the bytes allocated so far.
func heapStats() (live, cycles, allocs uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
}

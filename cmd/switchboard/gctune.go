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
//	max(percent × (live − base), minHeadroom)
//
// where base is the live heap before the first connection. The floor keeps
// a lightly loaded server from collecting every few hundred KiB.
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

const (
	trimGrowth   = 0.10    // the live heap must grow by this share of it,
	trimMinBytes = 4 << 20 // and by at least this, for a trim to be worth a collection
	trimSettle   = 3       // seconds the live heap stays within 1%, with at most one collection a second
)

// tuneGC collects once, takes the live heap as the base, and retunes the
// collector every second until stop is closed.
func tuneGC(percent int, stop <-chan struct{}) {
	runtime.GC()
	base, _ := heapStats()
	debug.SetGCPercent(gcPercentFor(percent, base, base))
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tr := trimmer{trimmed: base, last: base}
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				live, cycles := heapStats()
				debug.SetGCPercent(gcPercentFor(percent, base, live))
				if tr.due(live, cycles) {
					debug.FreeOSMemory()
					tr.trimmed, _ = heapStats()
				}
			}
		}
	}()
}

// gcPercentFor is the target for a live heap of live bytes, base of them
// there before the first connection.
func gcPercentFor(percent int, base, live uint64) int {
	if live == 0 {
		return percent
	}
	grown := uint64(0)
	if live > base {
		grown = live - base
	}
	headroom := max(grown*uint64(percent)/100, minHeadroom)
	return max(1, min(percent, int(headroom*100/live)))
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

// heapStats returns the heap marked live by the last collection and the
// number of collections so far.
func heapStats() (live, cycles uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

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
// instead applies the target to the heap the server grew beyond its start
// (connections, queues, buffers): every second it sets
//
//	percent × (live − base) / live
//
// where base is the live heap before the first connection, so the headroom
// is percent of what connections and traffic hold, never less than
// minGCPercent of the whole.

//
// The collector's headroom and the pages the runtime keeps for reuse are
// resident, so after a surge (a reconnect storm: tens of MiB of login
// garbage) RSS stays at its peak. When the live heap has grown by
// trimGrowth since the last trim and then held still for trimSettle
// seconds, the tuner collects once more and returns the free pages to the
// operating system: one extra collection per surge.

// trimGrowth is how much the live heap must grow (as a share of it, or at
// least trimMinBytes) before a trim is worth a collection.
const (
	trimGrowth   = 0.10
	trimMinBytes = 4 << 20
	trimSettle   = 3 // seconds the live heap stays within 1%
)

// minGCPercent is the smallest target the tuner sets: below it, collections
// of a nearly idle server would come every few hundred KiB of garbage.
const minGCPercent = 5

// tuneGC collects once, takes the live heap as the base, and retunes the
// collector every second until stop is closed.
func tuneGC(percent int, stop <-chan struct{}) {
	runtime.GC()
	base := liveHeap()
	debug.SetGCPercent(gcPercentFor(percent, base, base))
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tr := trimmer{trimmed: base}
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				live := liveHeap()
				debug.SetGCPercent(gcPercentFor(percent, base, live))
				if tr.due(live) {
					debug.FreeOSMemory()
					tr.trimmed = liveHeap()
				}
			}
		}
	}()
}

// trimmer decides when a surge is over and its garbage worth returning.
type trimmer struct {
	trimmed uint64 // live heap after the last trim
	last    uint64 // live heap at the last sample
	still   int    // samples in a row within 1% of the one before
}

// due takes one sample of the live heap and reports whether to trim now.
func (t *trimmer) due(live uint64) bool {
	diff := max(live, t.last) - min(live, t.last)
	if diff*100 <= t.last {
		t.still++
	} else {
		t.still = 0
	}
	t.last = live
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

// gcPercentFor is the target for a live heap of live bytes, base of them
// there before the first connection.
func gcPercentFor(percent int, base, live uint64) int {
	if live <= base || percent <= minGCPercent {
		return min(percent, minGCPercent)
	}
	return max(minGCPercent, int(uint64(percent)*(live-base)/live))
}

// liveHeap returns the heap marked live by the last collection.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

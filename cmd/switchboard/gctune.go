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

// minGCPercent is the smallest target the tuner sets: below it, collections
// of a nearly idle server would come every few hundred KiB of garbage.
const minGCPercent = 5

// tuneGC collects once, takes the live heap as the base, and retunes the
// collector every second until stop is closed.
func tuneGC(percent int, stop <-chan struct{}) {
	runtime.GC()
	base := liveHeap()
	apply := func() { debug.SetGCPercent(gcPercentFor(percent, base, liveHeap())) }
	apply()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				apply()
			}
		}
	}()
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

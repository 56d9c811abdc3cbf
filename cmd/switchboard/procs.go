package main

import (
	"log/slog"
	"runtime"
	"runtime/metrics"
	"syscall"
	"time"
)

// Go runs goroutines on GOMAXPROCS processors (Ps), by default one per
// core. When a goroutine becomes runnable and a P is idle, the runtime
// wakes a sleeping thread to run it there, and the thread sleeps again
// once the P runs dry. A message round hands work between goroutines about
// fourteen times (docs/DESIGN.md), so a server whose load is below what
// its Ps could carry pays a thread wake-up and a context switch for most
// of those hand-offs: measured at 5,000 msg/s, 27,700 context switches a
// second with two Ps against 6,900 with one, and 0.87 cores against 0.60
// for the same work (docs/BENCHMARKS.md, "Processors sized to the load").
// A large host carrying a few thousand messages a second on dozens of
// cores is that case, magnified.
//
// The tuner keeps as few Ps as the load needs, between one and the cores
// (the runtime's default at start). Every second it reads the CPU the
// process used and how long runnable goroutines waited for a P:
//
//   - when the process used more than procsBusy of the Ps' time, or more
//     than procsWaited of the goroutines that ran waited longer than
//     procsWaitLimit for a P, it adds Ps: half as many again, at least one;
//   - after a calm spell (no Ps added for procsCalm seconds at first) it
//     tries one P less. What the load needs with fewer Ps cannot be read
//     from how it runs with more (with two Ps at 5,000 msg/s the process
//     used more CPU than one P has, and one P carried it), so the tuner
//     tries, and watches. If the Ps come back within procsCalm seconds,
//     the try failed: the next calm spell must last twice as long, up to
//     procsCalmMax. Once a try holds for procsCalm seconds, the calm spell
//     is procsCalm again.
//
// Fewer Ps than the event loops and one (the spare: at most the cores) are
// tried only while the process uses at least procsOneFloor cores. Each
// loop holds a P while it waits in epoll_wait; with no P to spare, a
// goroutine made runnable waits for the runtime's monitor to take one back
// (up to 10 ms after a quiet spell), and one that blocks in a system call
// for long (the log's fdatasync, about 250 µs here) has its P handed to a
// newly woken thread. Under load the monitor looks every 20 µs and that
// costs less than the wake-ups of an idle P; at a few hundred messages a
// second it costs more: on 2 cores at 300 msg/s, 705-725 µs of CPU per
// message with one P against 452-460 µs with two, and with two loops on
// two Ps a p99 of 7.5-8.0 ms against 2.1-2.4 ms with one loop
// (gateway.DefaultLoops).
//
// With one P the monitor has two steady states under the same load. At
// 5,000 msg/s it mostly sleeps its longest (10 ms) and no thread is woken
// at all: 88-90 µs of CPU a message. A system call that spans two of its
// looks (a pause in the traffic of a few tens of milliseconds) makes it take
// the P and look every 20 µs, and with one P it then takes the P from
// every blocked epoll_wait or fdatasync, waking a thread that finds no work:
// half as much CPU again, for spells of seconds, until 50 of its looks in
// a row take nothing. Nothing here can end a spell; two Ps cost as much as
// one in it (docs/BENCHMARKS.md, "The phone regime second by second").
//
// The thresholds separate the two cases measured here with one P: at
// 5,000 msg/s (which one P carries) the process used 0.6-0.73 cores and
// 0.7-2% of goroutines waited over 1 ms; under saturation (which needs two)
// 0.97-1.25 cores and 9-28%.
//
// Adding is quick and removing slow: a burst finds its Ps within a second
// or two; a busy server that needs all its Ps loses one for a second at
// most every procsCalmMax.

const (
	procsBusy      = 0.8
	procsWaited    = 0.05
	procsWaitLimit = time.Millisecond
	procsCalm      = 10
	procsCalmMax   = 300
	procsOneFloor  = 0.3
)

// procsSample is what the tuner saw over one interval.
type procsSample struct {
	cpu    float64 // cores the process used: user and system time over wall time
	waited float64 // share of the goroutines run that waited longer than procsWaitLimit for a P
}

// procsPolicy decides the number of Ps from one sample after another.
type procsPolicy struct {
	max   int // the most it may use: the cores
	spare int // the event loops and one, at most max: fewer only under load
	cur   int
	calm  int // intervals in a row without adding Ps
	wait  int // calm intervals before the next try with one P less
	// tried: the last change removed a P, and calm has not reached
	// procsCalm since.
	tried bool
}

func newProcsPolicy(cores, loops int) procsPolicy {
	return procsPolicy{max: cores, spare: min(cores, loops+1), cur: cores, wait: procsCalm}
}

// next returns the number of Ps for the next interval.
func (p *procsPolicy) next(s procsSample) int {
	if p.cur < p.max && (s.cpu > procsBusy*float64(p.cur) || s.waited > procsWaited) {
		p.cur = min(p.max, p.cur+max(1, p.cur/2))
		if p.tried {
			p.wait = min(2*p.wait, procsCalmMax)
		}
		p.calm, p.tried = 0, false
		return p.cur
	}
	p.calm++
	if p.tried && p.calm >= procsCalm {
		p.tried, p.wait = false, procsCalm // the try held
	}
	if p.cur > 1 && p.calm >= p.wait && (p.cur > p.spare || s.cpu >= procsOneFloor) {
		p.cur--
		p.calm, p.tried = 0, true
	}
	return p.cur
}

// tuneProcs runs the tuner every second, from the current GOMAXPROCS as
// its most, until stop is closed; loops is the gateway's event loops.
func tuneProcs(log *slog.Logger, loops int, stop <-chan struct{}) {
	p := newProcsPolicy(runtime.GOMAXPROCS(0), loops)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var m procsMeter
		m.read()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				s := m.read()
				if n := p.next(s); n != runtime.GOMAXPROCS(0) {
					runtime.GOMAXPROCS(n)
					log.Debug("processors retuned", "procs", n, "cpu", s.cpu, "waited", s.waited)
				}
			}
		}
	}()
}

// procsMeter turns the process's cumulative CPU time and the runtime's
// cumulative scheduling latencies into samples of the last interval.
type procsMeter struct {
	at      time.Time
	cpu     time.Duration
	counts  []uint64 // /sched/latencies buckets
	samples []metrics.Sample
}

// read returns what happened since the last read.
func (m *procsMeter) read() procsSample {
	now := time.Now()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if m.samples == nil {
		m.samples = []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	}
	metrics.Read(m.samples)
	var s procsSample
	if h := m.samples[0].Value; h.Kind() == metrics.KindFloat64Histogram {
		hist := h.Float64Histogram()
		if len(m.counts) == len(hist.Counts) && !m.at.IsZero() {
			var all, long uint64
			for i, c := range hist.Counts {
				d := c - m.counts[i]
				all += d
				if hist.Buckets[i] >= procsWaitLimit.Seconds() {
					long += d
				}
			}
			if all > 0 {
				s.waited = float64(long) / float64(all)
			}
		}
		m.counts = append(m.counts[:0], hist.Counts...)
	}
	if !m.at.IsZero() {
		if wall := now.Sub(m.at); wall > 0 {
			s.cpu = float64(cpu-m.cpu) / float64(wall)
		}
	}
	m.at, m.cpu = now, cpu
	return s
}

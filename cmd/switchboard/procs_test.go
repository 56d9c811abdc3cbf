package main

import (
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestProcsPolicy drives the processor tuner's policy through the loads it
// was made for: a busy single P, a failed try with one P less, a held try,
// and a lull too light to leave the event loops no P to spare.
func TestProcsPolicy(t *testing.T) {
	type step struct {
		s    procsSample
		n    int // samples of s
		want int // Ps after them
	}
	busy := procsSample{cpu: 1.2}                 // more than one P carries
	waiting := procsSample{cpu: 0.5, waited: 0.1} // goroutines wait for a P
	steady := procsSample{cpu: 0.7}               // what two or one P carry
	light := procsSample{cpu: 0.1}                // too light to gain from one P
	for _, tc := range []struct {
		name         string
		cores, loops int
		steps        []step
	}{
		{"a steady load settles on one P after a calm spell", 2, 1, []step{
			{steady, procsCalm - 1, 2},
			{steady, 1, 1},
			{steady, 1000, 1},
		}},
		{"a light load keeps two Ps", 2, 1, []step{
			{light, 1000, 2},
		}},
		{"waiting goroutines bring a P back at once", 2, 1, []step{
			{steady, procsCalm, 1},
			{waiting, 1, 2},
		}},
		{"a failed try doubles the next calm spell, up to the most", 2, 1, []step{
			{busy, procsCalm, 1},       // tries one P
			{busy, 1, 2},               // fails
			{busy, 2*procsCalm - 1, 2}, // the next try waits twice as long
			{busy, 1, 1},
			{busy, 1, 2},
			{busy, 4*procsCalm - 1, 2},
			{busy, 1, 1},
			{busy, 1, 2},
			{busy, 8*procsCalm - 1, 2},
			{busy, 1, 1},
			{busy, 1, 2},
			{busy, 16*procsCalm - 1, 2},
			{busy, 1, 1},
			{busy, 1, 2},
			{busy, procsCalmMax - 1, 2}, // 320 capped at procsCalmMax
			{busy, 1, 1},
		}},
		{"a held try resets the calm spell", 2, 1, []step{
			{busy, procsCalm, 1},
			{busy, 1, 2},
			{steady, 2 * procsCalm, 1}, // tried after 20
			{steady, procsCalm, 1},     // held
			{busy, 1, 2},               // a later burst is not a failed try
			{busy, procsCalm - 1, 2},
			{busy, 1, 1},
		}},
		{"many cores shrink one at a time and grow by half", 16, 15, []step{
			{procsSample{cpu: 1.5}, procsCalm, 15},
			{procsSample{cpu: 1.5}, procsCalm * 13, 2}, // each try held, one a calm spell
			{procsSample{cpu: 1.5}, procsCalm, 1},      // one P is tried
			{procsSample{cpu: 1.5}, 1, 2},              // and fails
			{procsSample{cpu: 12}, 1, 3},
			{procsSample{cpu: 12}, 1, 4},
			{procsSample{cpu: 12}, 1, 6},
			{procsSample{cpu: 12}, 1, 9},
			{procsSample{cpu: 12}, 1, 13},
			{procsSample{cpu: 12}, 1, 16},
			{procsSample{cpu: 14}, 5, 16},
		}},
		{"a light load on many cores keeps a P for each loop and one", 16, 15, []step{
			{light, 1000, 16},
		}},
		{"with fewer loops, a light load shrinks to the loops and one", 16, 3, []step{
			{light, 12 * procsCalm, 4},
			{light, 1000, 4},
			{steady, procsCalm, 3}, // under load, fewer
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProcsPolicy(tc.cores, tc.loops)
			for i, st := range tc.steps {
				got := 0
				for range st.n {
					got = p.next(st.s)
				}
				if got != st.want {
					t.Fatalf("step %d (%+v × %d): %d Ps, want %d", i, st.s, st.n, got, st.want)
				}
			}
		})
	}
}

// TestProcsMeter: the meter reports the CPU the process burned over the
// interval, in cores, and counts a goroutine kept waiting for the only P
// as waited.
func TestProcsMeter(t *testing.T) {
	var m procsMeter
	start := time.Now() // before the meter's interval, so wall covers it
	m.read()
	burned := processCPU() + 30*time.Millisecond
	for processCPU() < burned && time.Since(start) < 10*time.Second {
	}
	s := m.read()
	wall := time.Since(start)
	if got := time.Duration(s.cpu * float64(wall)); got < 30*time.Millisecond || s.cpu > float64(runtime.NumCPU())+0.5 {
		t.Fatalf("%.2f cores over %v (%v of CPU); the process burned at least 30ms", s.cpu, wall, got)
	}

	// With one P, goroutines made runnable by one that then keeps the P
	// busy wait until the runtime preempts the busy one (10 ms). The
	// runtime times one scheduling in eight, so many wait.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const waiting = 64
	ready := make(chan struct{})
	var ran sync.WaitGroup
	ran.Add(waiting)
	for range waiting {
		go func() {
			<-ready
			ran.Done()
		}()
	}
	runtime.Gosched() // let them block on ready
	m.read()
	spin := time.Now()
	close(ready)
	for time.Since(spin) < 30*time.Millisecond {
	}
	ran.Wait()
	if s := m.read(); s.waited <= 0 {
		t.Fatalf("waited share %.4f after %d goroutines waited for the busy P", s.waited, waiting)
	}
}

// processCPU is the user and system time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

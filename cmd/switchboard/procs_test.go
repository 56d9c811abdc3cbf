package main

import (
	"runtime"
	"testing"
	"time"
)

// TestProcsPolicy drives the processor tuner's policy through the loads it
// was made for: a busy single P, a failed try with one P less, a held try,
// and a lull too light for one P alone.
func TestProcsPolicy(t *testing.T) {
	type step struct {
		s    procsSample
		n    int // samples of s
		want int // Ps after them
	}
	busy := procsSample{cpu: 1.2}                  // more than one P carries
	waiting := procsSample{cpu: 0.5, waited: 0.05} // goroutines wait for a P
	steady := procsSample{cpu: 0.7}                // what two or one P carry
	light := procsSample{cpu: 0.1}                 // too light to gain from one P
	for _, tc := range []struct {
		name  string
		cores int
		steps []step
	}{
		{"a steady load settles on one P after a calm spell", 2, []step{
			{steady, procsCalm - 1, 2},
			{steady, 1, 1},
			{steady, 1000, 1},
		}},
		{"a light load keeps two Ps", 2, []step{
			{light, 1000, 2},
		}},
		{"waiting goroutines bring a P back at once", 2, []step{
			{steady, procsCalm, 1},
			{waiting, 1, 2},
		}},
		{"a failed try doubles the next calm spell, up to the most", 2, []step{
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
		{"a held try resets the calm spell", 2, []step{
			{busy, procsCalm, 1},
			{busy, 1, 2},
			{steady, 2 * procsCalm, 1}, // tried after 20
			{steady, procsCalm, 1},     // held
			{busy, 1, 2},               // a later burst is not a failed try
			{busy, procsCalm - 1, 2},
			{busy, 1, 1},
		}},
		{"many cores shrink one at a time and grow by half", 16, []step{
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProcsPolicy(tc.cores)
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

// TestProcsMeter: the meter reads the process's own CPU and the runtime's
// scheduling latencies: a second goroutine spinning for a while shows as
// CPU, and goroutines run show up as scheduled.
func TestProcsMeter(t *testing.T) {
	var m procsMeter
	m.read()
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
		runtime.Gosched()
	}
	s := m.read()
	if s.cpu <= 0.2 || s.cpu > float64(runtime.NumCPU())+0.5 {
		t.Fatalf("cpu %.2f cores after spinning on one, want between 0.2 and the cores", s.cpu)
	}
	if s.waited < 0 || s.waited > 1 {
		t.Fatalf("waited share %.3f", s.waited)
	}
}

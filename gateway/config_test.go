package gateway

import (
	"runtime"
	"testing"
)

// TestDefaultLoops: one loop per processor but one, so that a processor
// is left for the rest of the server, and never none.
func TestDefaultLoops(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for procs, want := range map[int]int{1: 1, 2: 1, 4: 3, 16: 15} {
		runtime.GOMAXPROCS(procs)
		if got := DefaultLoops(); got != want {
			t.Errorf("GOMAXPROCS %d: %d loops, want %d", procs, got, want)
		}
		var c Config
		c.setDefaults()
		if c.Loops != want {
			t.Errorf("GOMAXPROCS %d: Config.Loops defaults to %d, want %d", procs, c.Loops, want)
		}
	}
}

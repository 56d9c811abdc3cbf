package gateway

import (
	"testing"
	"time"
)

// TestGoAwayWindow: the window of a stop is the connections over
// GoAwayRate, in whole milliseconds, never below GoAwayAfter nor above
// maxGoAwayWindow (10 minutes).
func TestGoAwayWindow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after time.Duration
		rate  int
		conns int
		want  time.Duration
	}{
		{name: "no connections", after: 2 * time.Second, rate: 10000, conns: 0, want: 2 * time.Second},
		{name: "few: GoAwayAfter", after: 2 * time.Second, rate: 10000, conns: 19999, want: 2 * time.Second},
		{name: "a million at 10,000/s", after: 2 * time.Second, rate: 10000, conns: 1_000_000, want: 100 * time.Second},
		{name: "whole milliseconds", after: time.Millisecond, rate: 3, conns: 1000, want: 333333 * time.Millisecond},
		{name: "capped", after: 2 * time.Second, rate: 10000, conns: 7_000_000, want: 10 * time.Minute},
		{name: "capped at rate 1", after: 2 * time.Second, rate: 1, conns: 1 << 40, want: 10 * time.Minute},
	} {
		cfg := Config{GoAwayAfter: tc.after, GoAwayRate: tc.rate}
		if got := goAwayWindow(&cfg, tc.conns); got != tc.want {
			t.Errorf("%s: %d connections at %d/s: window %v, want %v", tc.name, tc.conns, tc.rate, got, tc.want)
		}
	}
}

package main

import "testing"

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		percent    int
		base, live uint64
		want       int
	}{
		{25, 30 * mib, 30 * mib, 5},   // nothing beyond the start: the floor
		{25, 30 * mib, 20 * mib, 5},   // below the base (arena freed): the floor
		{25, 30 * mib, 40 * mib, 6},   // 10 MiB of connections: 25% of them, 6% of all
		{25, 30 * mib, 300 * mib, 22}, // connections dominate: close to the target
		{25, 0, 100 * mib, 25},        // no base: the target itself
		{3, 30 * mib, 300 * mib, 3},   // a target below the floor is kept
		{100, 30 * mib, 60 * mib, 50},
	} {
		if got := gcPercentFor(c.percent, c.base, c.live); got != c.want {
			t.Errorf("gcPercentFor(%d, %d MiB, %d MiB) = %d, want %d", c.percent, c.base/mib, c.live/mib, got, c.want)
		}
	}
}

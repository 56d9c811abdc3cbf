package main

import (
	"slices"
	"testing"
)

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

// TestTrimmer: a trim comes once the live heap has grown enough and held
// still for trimSettle samples, not while it grows, not for small growth,
// and not twice for one surge.
func TestTrimmer(t *testing.T) {
	const mib = 1 << 20
	tr := trimmer{trimmed: 30 * mib, last: 30 * mib}
	var trims []int
	samples := []uint64{
		30, 30, 31, 30, 30, 30, // small wobble: no trim
		34, 38, 42, 42, 42, 42, // a surge to 42, then still: trim at the third still sample
		42, 42, 42, 42, // still, already trimmed
		41, 41, 41, 41, // shrinking a little: nothing
		60, 61, 61, 61, 61, // another surge
	}
	for i, s := range samples {
		if tr.due(s * mib) {
			trims = append(trims, i)
			tr.trimmed = s * mib
		}
	}
	if want := []int{11, 24}; !slices.Equal(trims, want) {
		t.Fatalf("trims at samples %v, want %v", trims, want)
	}
}

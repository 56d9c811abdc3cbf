package main

import (
	"slices"
	"testing"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		percent               int
		base, live, allocated uint64
		want                  int
	}{
		{25, 30 * mib, 30 * mib, 0, 13},  // nothing beyond the start: the 4 MiB floor (13% of 30 MiB)
		{25, 30 * mib, 20 * mib, 0, 20},  // below the base (arena freed): the floor
		{25, 30 * mib, 60 * mib, 0, 12},  // 30 MiB of connections: 7.5 MiB of headroom
		{25, 30 * mib, 300 * mib, 0, 22}, // connections dominate: close to the target
		{25, 0, 100 * mib, 0, 25},        // no base: the target itself
		{25, 30 * mib, 10 * mib, 0, 25},  // a tiny heap: never above the target
		{100, 30 * mib, 1000 * mib, 0, 97},
		{25, 30 * mib, 60 * mib, 1 * mib, 12},    // light traffic: as without it
		{25, 30 * mib, 50 * mib, 30 * mib, 60},   // 5,000 msg/s: a second of its garbage, above the target
		{25, 30 * mib, 50 * mib, 200 * mib, 128}, // heavier: at most maxLoadHeadroom
	} {
		if got := gcPercentFor(c.percent, c.base, c.live, c.allocated); got != c.want {
			t.Errorf("gcPercentFor(%d, %d MiB, %d MiB, %d MiB) = %d, want %d", c.percent, c.base/mib, c.live/mib, c.allocated/mib, got, c.want)
		}
	}
}

// TestTrimmer: a trim comes once the live heap has grown enough and held
// still for trimSettle samples with the collector nearly idle; not while it
// grows, not for small growth, not under load, and not twice for one surge.
func TestTrimmer(t *testing.T) {
	const mib = 1 << 20
	tr := trimmer{trimmed: 30 * mib, last: 30 * mib}
	var trims []int
	samples := []struct{ live, gcs uint64 }{
		{30, 0}, {30, 0}, {31, 0}, {30, 0}, {30, 0}, {30, 0}, // small wobble: no trim
		{34, 1}, {38, 1}, {42, 1}, {42, 0}, {42, 0}, {42, 0}, // a surge to 42, then still: trim at the third still sample (11)
		{42, 0}, {42, 0}, {42, 0}, {42, 0}, // still, already trimmed
		{41, 0}, {41, 0}, {41, 0}, {41, 0}, // shrinking a little: nothing
		{60, 1}, {61, 1}, {61, 5}, {61, 5}, {61, 5}, {61, 5}, // another surge, but under load (5 collections a second)
		{61, 1}, {61, 0}, {61, 1}, // the load stops: trim (28)
	}
	var cycles uint64
	for i, s := range samples {
		cycles += s.gcs
		if tr.due(s.live*mib, cycles) {
			trims = append(trims, i)
			tr.trimmed = s.live * mib
		}
	}
	if want := []int{11, 28}; !slices.Equal(trims, want) {
		t.Fatalf("trims at samples %v, want %v", trims, want)
	}
}

// TestLoadAllocatedOffDuringARamp: the load term counts a second's
// allocation unless connections were logging in at rampLogins a second or
// more, so a ramp's connections are packed by collections at the floor's
// pace.
func TestLoadAllocatedOffDuringARamp(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct{ allocated, logins, want uint64 }{
		{30 * mib, 0, 30 * mib},              // 5,000 msg/s, nobody logging in
		{30 * mib, rampLogins - 1, 30 * mib}, // reconnects trickling in
		{15 * mib, rampLogins, 0},            // a ramp
		{15 * mib, 1000, 0},                  // 1,000 Noise logins a second
	} {
		if got := loadAllocated(c.allocated, c.logins); got != c.want {
			t.Errorf("loadAllocated(%d MiB, %d logins) = %d, want %d", c.allocated/mib, c.logins, got, c.want)
		}
	}
}

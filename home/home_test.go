package home

import "testing"

// TestOfFixed pins the home of a few ids on nodes 1..3, the same table as
// cluster's TestHomeFixed: a change here moves mailboxes in every running
// cluster.
func TestOfFixed(t *testing.T) {
	for _, tc := range []struct {
		id   uint64
		home uint32
	}{
		{0, 2}, {1, 2}, {2, 2}, {3, 1}, {42, 1}, {1000, 1}, {1 << 40, 1}, {^uint64(0), 3},
	} {
		if got := Of(tc.id, []uint32{1, 2, 3}); got != tc.home {
			t.Errorf("Of(%d) = %d, want %d", tc.id, got, tc.home)
		}
		if got := Of(tc.id, []uint32{3, 1, 2}); got != tc.home {
			t.Errorf("Of(%d) with the list in another order = %d, want %d", tc.id, got, tc.home)
		}
	}
	if got := Of(7, nil); got != 0 {
		t.Errorf("Of with no nodes = %d, want 0", got)
	}
}

package cluster

import "testing"

// TestBurst is the embedded-NATS trap of a burst, on the shipped
// configuration: 500,000 small payloads from one node to another, all
// delivered in order, none cut as a slow consumer (in-process pipe
// connections lost 46% of such a burst). About 5 s with -race here;
// TestBurstSoak, behind the soak tag, sends four times as many.
func TestBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	burst(t, 500_000)
}
